/**
 * `@weft/netns-lab/vitest`: the test-only entry point (imports vitest, so keep it out of production code).
 */
import { describe, it } from "vitest";
import { realKernelStatus } from "./guards.js";

const warned = new Set<string>();

/**
 * A `describe` for tests that need the real kernel (root, `ip`, and `opts.tools` on PATH).
 * - ok: a plain describe(name, fn);
 * - not ok and CI=true: a describe with one test that FAILS with the reason (CI must not go green by skipping);
 * - not ok locally: describe.skip, with the reason printed once via console.warn.
 */
/** CI is on for any value of CI but unset, "", "0" and "false" (CI=1, CI=yes, CI=true ...). */
export function isCI(env: Readonly<Record<string, string | undefined>> = process.env): boolean {
  const v = (env.CI ?? "").trim().toLowerCase();
  return v !== "" && v !== "0" && v !== "false";
}

export function describeReal(name: string, fn: () => void, opts: { tools?: readonly string[] } = {}): void {
  const status = realKernelStatus(opts.tools ?? []);
  if (status.ok) {
    describe(name, fn);
    return;
  }
  if (isCI()) {
    describe(name, () => {
      it("has the real kernel environment it needs", () => {
        throw new Error(`${name}: cannot run real-kernel tests: ${status.reason}`);
      });
    });
    return;
  }
  if (!warned.has(status.reason)) {
    warned.add(status.reason);
    console.warn(`SKIPPING real-kernel tests (${name}): ${status.reason}. With CI=true these would fail.`);
  }
  describe.skip(`${name} [skipped: ${status.reason}]`, fn);
}
