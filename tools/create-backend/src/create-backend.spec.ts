/**
 * The generator: names, renaming, and — the point of it — a generated package that builds with tsc, is a
 * member of the workspace and passes the conformance suite as generated. The end-to-end test generates into
 * a temporary copy of this workspace (see tempWorkspace), never into the live backends/ or tsconfig.json,
 * builds and tests the package there in child processes started through the ProcessRunner, and deletes the
 * copy in `finally`.
 */
import { randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
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

/**
 * A temporary copy of the workspace to generate into: its own root package.json (the workspace globs) and
 * tsconfig.json (the generator adds its reference there), and symlinks to everything else — node_modules,
 * packages/, tools/, the shared configs and each existing backend — so the generated package resolves,
 * builds and tests exactly as it would in backends/ of this checkout. rmSync removes the symlinks, never
 * what they point to.
 */
function tempWorkspace(): string {
  const root = mkdtempSync(join(tmpdir(), "weft-cb-ws-"));
  for (const f of ["package.json", "tsconfig.json"]) copyFileSync(join(WORKSPACE_ROOT, f), join(root, f));
  // Symlinked, not copied: a newer copy of tsconfig.base.json would make tsc -b rebuild every referenced project.
  for (const f of ["node_modules", "packages", "tools", "tsconfig.base.json", "vitest.shared.ts"]) symlinkSync(join(WORKSPACE_ROOT, f), join(root, f));
  mkdirSync(join(root, "backends"));
  // The root tsconfig.json references the existing backends (vite reads it to place each source file).
  for (const b of readdirSync(join(WORKSPACE_ROOT, "backends"))) symlinkSync(join(WORKSPACE_ROOT, "backends", b), join(root, "backends", b));
  return root;
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
      "samplePreflight(config, network, iface);",
      'export default weftProject("backend-sample"); // @weft/backend-sample',
    ].join("\n");
    expect(renameText(text, "gre-tunnel", "@weft/backend-gre-tunnel").split("\n")).toEqual([
      'import { GRE_TUNNEL_TYPE, type GreTunnelConfig, greTunnelConfigSchema } from "./config.js";',
      'import { GreTunnelBackend } from "./gre-tunnel-backend.js";',
      'export const GRE_TUNNEL_TYPE = "gre-tunnel";',
      "const greTunnelModule: BackendModule<GreTunnelConfig> = {};",
      "greTunnelPreflight(config, network, iface);",
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
      // Published, it declares the agent's packages as peers (version ranges) and brings none of its own.
      expect(pkg.peerDependencies).toEqual({ "@weft/core": "^0.1.0", "@weft/kernel": "^0.1.0", "@weft/reconcile": "^0.1.0", "reflect-metadata": "^0.2.2", tsyringe: "^4.10.0" });
      expect(pkg.dependencies).toBeUndefined();
      expect(pkg.exports["."]).toEqual({ types: "./dist/index.d.ts", default: "./dist/index.js" });
      // Developed here, it builds and tests against this checkout through file: devDependencies.
      expect(pkg.devDependencies["@weft/core"]).toMatch(/^file:(\.\.\/)+.*packages\/core$/);
      expect(existsSync(join(target, pkg.devDependencies["@weft/core"].slice(5), "package.json"))).toBe(true);
      expect(pkg.devDependencies["@weft/backend-testkit"]).toMatch(/^file:.*packages\/backend-testkit$/);
      // One tsyringe for the backend and the agent/test kit: a second copy would not know @injectable classes.
      expect(pkg.devDependencies.tsyringe).toMatch(/^file:.*node_modules\/tsyringe$/);
      expect(existsSync(join(target, pkg.devDependencies.tsyringe.slice(5), "package.json"))).toBe(true);
      expect(readFileSync(join(target, "tsconfig.json"), "utf8")).not.toContain("extends");
      expect(readFileSync(join(target, "src/index.ts"), "utf8")).toContain('container.register(BACKEND, { useClass: GreTunnelBackend }');
      expect(() => createBackend({ name: "gre-tunnel", dir: target })).toThrow(/exists and is not empty/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it(
    "generates a package inside backends/ that is wired into the workspace, builds with tsc and passes the conformance suite",
    async () => {
      const name = `zz-gen-${randomBytes(3).toString("hex")}`;
      const root = tempWorkspace();
      const target = join(root, "backends", name);
      const liveTsconfig = readFileSync(join(WORKSPACE_ROOT, "tsconfig.json"), "utf8");
      try {
        const r = createBackend({ name, root });
        expect(r).toMatchObject({ target, inside: true, referenced: true, packageName: `@weft/backend-${name}` });
        const sources = listFiles(join(target, "src")).map((f) => readFileSync(join(target, "src", f), "utf8")).join("\n");
        expect(sources).not.toMatch(/sample/i);
        // The template's packaging carries over: the agent's @weft packages and tsyringe are peers, not its own.
        const pkg = JSON.parse(readFileSync(join(target, "package.json"), "utf8"));
        expect(Object.keys(pkg.peerDependencies).sort()).toEqual(["@weft/core", "@weft/kernel", "@weft/reconcile", "reflect-metadata", "tsyringe"]);
        expect(pkg.dependencies).toBeUndefined();

        // Wired in: a project reference in the root tsconfig.json, and a member of the npm workspace.
        expect(JSON.parse(readFileSync(join(root, "tsconfig.json"), "utf8")).references).toContainEqual({ path: `backends/${name}` });
        expect(readFileSync(join(WORKSPACE_ROOT, "tsconfig.json"), "utf8")).toBe(liveTsconfig);
        const ws = await runner.run("npm", ["pkg", "get", "name", "--workspaces", "--offline"], { cwd: root, reject: false, timeoutMs: 60_000 });
        expect(ws.exitCode, ws.stderr).toBe(0);
        expect(Object.keys(JSON.parse(ws.stdout))).toContain(`@weft/backend-${name}`);

        const tsc = await runner.run(process.execPath, [join(WORKSPACE_ROOT, "node_modules/typescript/bin/tsc"), "-b", target], {
          cwd: root,
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
        rmSync(root, { recursive: true, force: true });
      }
    },
    600_000,
  );
});
