/**
 * The generator: names, renaming, and — the point of it — a generated package that builds with tsc and
 * passes the conformance suite as generated. The end-to-end test writes a uniquely named package into this
 * workspace's backends/ (where authors will put theirs), builds and tests it in child processes started
 * through the ProcessRunner, and deletes it in `finally`.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExecaRunner } from "@weft/kernel";
import { describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs script without type declarations
import { WORKSPACE_ROOT, addRootReference, checkName, createBackend, nameForms, renameText } from "./create-backend.mjs";

const runner = new ExecaRunner();

function listFiles(dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(join(dir, e.name), base) : [join(dir, e.name).slice(base.length + 1)],
  );
}

describe("create-backend", () => {
  it("accepts kebab-case names that are not taken", () => {
    expect(checkName("gre-tunnel")).toBeUndefined();
    expect(checkName("")).toMatch(/a backend name is required/);
    expect(checkName("Gre_Tunnel")).toMatch(/must be kebab-case/);
    expect(checkName("gre--tunnel")).toMatch(/must be kebab-case/);
    expect(checkName("host-gw")).toMatch(/taken by a backend Weft ships/);
    expect(nameForms("gre-tunnel")).toEqual({ kebab: "gre-tunnel", pascal: "GreTunnel", camel: "greTunnel", upper: "GRE_TUNNEL" });
  });

  it("renames the sample's identifiers, type string and package name", () => {
    const text = [
      'import { SAMPLE_TYPE, type SampleConfig, sampleConfigSchema } from "./config.js";',
      'import { SampleBackend } from "./sample-backend.js";',
      'export const SAMPLE_TYPE = "sample";',
      "const sampleModule: BackendModule<SampleConfig> = {};",
      'export default weftProject("backend-sample"); // @weft/backend-sample',
    ].join("\n");
    expect(renameText(text, "gre-tunnel", "@weft/backend-gre-tunnel").split("\n")).toEqual([
      'import { GRE_TUNNEL_TYPE, type GreTunnelConfig, greTunnelConfigSchema } from "./config.js";',
      'import { GreTunnelBackend } from "./gre-tunnel-backend.js";',
      'export const GRE_TUNNEL_TYPE = "gre-tunnel";',
      "const greTunnelModule: BackendModule<GreTunnelConfig> = {};",
      'export default weftProject("backend-gre-tunnel"); // @weft/backend-gre-tunnel',
    ]);
  });

  it("adds the package to the root tsconfig references once", () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-cb-"));
    try {
      const file = join(dir, "tsconfig.json");
      writeFileSync(file, JSON.stringify({ files: [], references: [{ path: "packages/core" }] }));
      expect(addRootReference(file, "backends/gre-tunnel")).toBe(true);
      expect(addRootReference(file, "backends/gre-tunnel")).toBe(false);
      expect(JSON.parse(readFileSync(file, "utf8")).references).toEqual([{ path: "packages/core" }, { path: "backends/gre-tunnel" }]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("outside the workspace, writes standalone configs and file: dependencies on this checkout", () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-cb-"));
    try {
      const target = join(dir, "gre");
      const r = createBackend({ name: "gre-tunnel", dir: target });
      expect(r).toMatchObject({ inside: false, referenced: false, packageName: "weft-backend-gre-tunnel" });
      expect(listFiles(target).sort()).toEqual([
        "README.md",
        "package.json",
        "src/config.ts",
        "src/gre-tunnel-backend.ts",
        "src/gre-tunnel.conformance.netns.spec.ts",
        "src/gre-tunnel.conformance.spec.ts",
        "src/gre-tunnel.spec.ts",
        "src/index.ts",
        "src/sysctl.ts",
        "tsconfig.json",
        "vitest.config.ts",
      ]);
      const pkg = JSON.parse(readFileSync(join(target, "package.json"), "utf8"));
      expect(pkg.name).toBe("weft-backend-gre-tunnel");
      expect(pkg.dependencies["@weft/core"]).toMatch(/^file:(\.\.\/)+.*packages\/core$/);
      expect(existsSync(join(target, pkg.dependencies["@weft/core"].slice(5), "package.json"))).toBe(true);
      // One tsyringe for the backend and the agent/test kit: a second copy would not know @injectable classes.
      expect(pkg.dependencies.tsyringe).toMatch(/^file:.*node_modules\/tsyringe$/);
      expect(existsSync(join(target, pkg.dependencies.tsyringe.slice(5), "package.json"))).toBe(true);
      expect(readFileSync(join(target, "tsconfig.json"), "utf8")).not.toContain("extends");
      expect(readFileSync(join(target, "src/index.ts"), "utf8")).toContain('container.register(BACKEND, { useClass: GreTunnelBackend }');
      expect(() => createBackend({ name: "gre-tunnel", dir: target })).toThrow(/exists and is not empty/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it(
    "generates a package inside backends/ that builds with tsc and passes the conformance suite",
    async () => {
      const name = `zz-gen-${randomBytes(3).toString("hex")}`;
      const target = join(WORKSPACE_ROOT, "backends", name);
      try {
        // rootReference: false keeps the shared root tsconfig.json untouched while other work goes on in this checkout.
        const r = createBackend({ name, rootReference: false });
        expect(r).toMatchObject({ target, inside: true, packageName: `@weft/backend-${name}` });
        const sources = listFiles(join(target, "src")).map((f) => readFileSync(join(target, "src", f), "utf8")).join("\n");
        expect(sources).not.toMatch(/sample/i);

        const tsc = await runner.run(process.execPath, [join(WORKSPACE_ROOT, "node_modules/typescript/bin/tsc"), "-b", target], {
          cwd: WORKSPACE_ROOT,
          reject: false,
          timeoutMs: 240_000,
        });
        expect(tsc.stdout + tsc.stderr).toBe("");
        expect(tsc.exitCode).toBe(0);
        expect(existsSync(join(target, "dist/index.js"))).toBe(true);

        const vitest = await runner.run(process.execPath, [join(WORKSPACE_ROOT, "node_modules/vitest/vitest.mjs"), "run"], {
          cwd: target,
          // A clean unit run: no JSON report into the CI summary, no tier from the parent.
          env: { WEFT_TIER: "unit", WEFT_REPORT_DIR: "", CI: process.env.CI ?? "" },
          reject: false,
          timeoutMs: 240_000,
        });
        const out = vitest.stdout.replace(/\x1b\[[0-9;]*m/g, "");
        expect(vitest.exitCode, out + vitest.stderr).toBe(0);
        expect(out).toContain(`src/${name}.conformance.spec.ts`);
        expect(Number(/Tests\s+(\d+) passed/.exec(out)?.[1])).toBeGreaterThan(20);
        expect(out).not.toMatch(/failed|skipped/);
      } finally {
        rmSync(target, { recursive: true, force: true });
      }
    },
    600_000,
  );
});
