import { mkdtempSync, mkdirSync, readFileSync, rmSync, existsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { buildApiDocs, compareTrees } from "./api-docs.mjs";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "weft-api-docs-spec-"));
  dirs.push(d);
  return d;
}

/** A one-file package with the given source, built with the real typedoc.json (entry point, program and output swapped). */
async function buildFixture(source: string) {
  const dir = tempDir();
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "fixture-contract", version: "1.0.0", type: "module" }));
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({ compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, types: [] }, include: ["*.ts"] }),
  );
  writeFileSync(join(dir, "index.ts"), source);
  const out = join(dir, "out");
  const result = await buildApiDocs({
    quiet: true,
    overrides: {
      entryPoints: [join(dir, "index.ts")],
      tsconfig: join(dir, "tsconfig.json"),
      out,
      packagesRequiringDocumentation: ["fixture-contract"],
    },
  });
  return { ...result, out };
}

const DOCUMENTED = `
/**
 * Adds two lengths.
 * @param a - the first length
 * @param b - the second length
 * @returns the sum of both
 */
export function addLengths(a: number, b: number): number {
  return a + b;
}
`;

describe("api-docs generator (tools/api-docs/typedoc.json)", () => {
  it("documents an export with its signature, doc comment, @param and @returns", async () => {
    const r = await buildFixture(DOCUMENTED);
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    const page = readFileSync(join(r.out, "README.md"), "utf8");
    expect(page).toContain("addLengths(a, b): number;");
    expect(page).toContain("Adds two lengths.");
    expect(page).toMatch(/\| `a` \| `number` \| the first length \|/);
    expect(page).toContain("the sum of both");
  }, 60_000);

  it("fails on an export without a doc comment, names it, and writes nothing", async () => {
    const r = await buildFixture(`${DOCUMENTED}\nexport const UNDOCUMENTED_LIMIT = 3;\n`);
    expect(r.ok).toBe(false);
    expect(r.problems.join("\n")).toMatch(/UNDOCUMENTED_LIMIT \(Variable\).*does not have any documentation/);
    expect(existsSync(r.out)).toBe(false);
  }, 60_000);

  it("fails on a broken {@link}", async () => {
    const r = await buildFixture(`/** Like {@link NoSuchThing}. */\nexport const LINKED = 1;\n`);
    expect(r.ok).toBe(false);
    expect(r.problems.join("\n")).toContain("NoSuchThing");
  }, 60_000);

  it("compareTrees names missing, extra and changed files", async () => {
    const a = tempDir();
    const b = tempDir();
    mkdirSync(join(a, "@weft"));
    mkdirSync(join(b, "@weft"));
    writeFileSync(join(a, "README.md"), "same");
    writeFileSync(join(b, "README.md"), "same");
    writeFileSync(join(a, "@weft", "core.md"), "new text");
    writeFileSync(join(b, "@weft", "core.md"), "old text");
    writeFileSync(join(a, "@weft", "kernel.md"), "x");
    writeFileSync(join(b, "stale.md"), "x");
    expect(await compareTrees(a, b)).toEqual(["differs: @weft/core.md", "missing: @weft/kernel.md", "extra: stale.md"]);
    expect(await compareTrees(a, a)).toEqual([]);
  });
});

describe("the backend contract (docs/api)", () => {
  it("every export of the contract has a doc comment, and the pages cover each package", async () => {
    const out = join(tempDir(), "api");
    const r = await buildApiDocs({ quiet: true, overrides: { out } });
    // On failure this lists each undocumented export: add a TSDoc comment to it, then run `npm run docs:api`.
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    const page = (p: string) => readFileSync(join(out, p), "utf8");
    expect(page("@weft/core.md")).toContain("### BackendModule");
    expect(page("@weft/reconcile.md")).toContain("### RECONCILER\\_CONTRIBUTION");
    expect(page("@weft/kernel.md")).toContain("### KernelPort");
    expect(page("@weft/backend-testkit.md")).toContain("### describeBackendConformance()");
    expect(page("@weft/backend-testkit/netns.md")).toContain("### describeBackendConformanceInNetns()");
    // Only the port types of @weft/kernel are contract; its Linux adapters are not.
    expect(page("@weft/kernel.md")).not.toContain("LinuxKernel(");
  }, 180_000);
});
