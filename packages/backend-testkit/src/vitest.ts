/**
 * describeBackendConformance: the conformance suite as vitest tests, one call from a backend's spec file:
 *
 *   import { describeBackendConformance } from "@weft/backend-testkit";
 *   import backend from "./index.js";
 *   describeBackendConformance(backend, { encapsulates: false, families: ["v4", "v6", "dual"] });
 */
import type { BackendModule } from "@weft/core";
import { describe, it } from "vitest";
import { type ConformanceOptions, conformanceChecks } from "./conformance.js";

/**
 * Registers the conformance suite for `module` as vitest tests: one `describe` for the module, one per family
 * mode in `options.families` (default IPv4 only), one `it` per check. Call it at the top level of a spec file.
 */
export function describeBackendConformance(module: BackendModule, options: ConformanceOptions): void {
  describe(`${module.type} backend conformance`, () => {
    const checks = conformanceChecks(module, options);
    for (const c of checks.filter((x) => x.family === undefined)) it(c.name, () => c.run());
    for (const mode of options.families ?? ["v4"]) {
      describe(mode === "dual" ? "dual-stack" : mode === "v4" ? "IPv4" : "IPv6", () => {
        for (const c of checks.filter((x) => x.family === mode)) it(c.name, () => c.run());
      });
    }
  });
}
