/**
 * The boundary check on fixture trees: what it must catch (however the import is spelled) and what it must
 * leave alone (comments, strings, the kernel package, the loaders).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ExecaRunner } from "@weft/kernel";
import { afterEach, describe, expect, it } from "vitest";

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "..", "check-boundaries.mjs");
const runner = new ExecaRunner();
let root: string;
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** A workspace with packages/kernel (scope:kernel) and packages/recon (scope:reconcile), and the given sources. */
async function check(files: Record<string, string>): Promise<{ ok: boolean; lines: string[] }> {
  root = mkdtempSync(join(tmpdir(), "weft-lint-"));
  const pkg = (dir: string, name: string, tags: string[]) =>
    writeFileSync(join(root, dir, "package.json"), JSON.stringify({ name, nx: { tags }, dependencies: { execa: "*" } }));
  for (const [dir, name, tags] of [
    ["packages/kernel", "@weft/kernel", ["scope:kernel"]],
    ["packages/recon", "@weft/recon", ["scope:reconcile"]],
    ["packages/daemon", "@weft/daemon", ["scope:daemon"]],
  ] as const) {
    mkdirSync(join(root, dir, "src"), { recursive: true });
    pkg(dir, name, [...tags]);
  }
  for (const [path, text] of Object.entries(files)) writeFileSync(join(root, path), text);
  const r = await runner.run(process.execPath, [SCRIPT, "--root", root], { reject: false });
  return { ok: r.exitCode === 0, lines: (r.stdout + r.stderr).split("\n").filter((l) => l.startsWith("  ")).map((l) => l.trim()) };
}

describe("check-boundaries", () => {
  it("catches process modules outside the kernel however the import is written", async () => {
    const r = await check({
      "packages/recon/src/a.ts": 'import { execa } from "execa";\n',
      "packages/recon/src/b.ts": "export async function f() { return import(`node:child_process`); }\n",
      "packages/recon/src/c.ts": 'const cp = require("child_process");\n',
      "packages/recon/src/d.ts": 'const m = "node:child" + "_process";\nexport const x = await import(m);\n',
      "packages/recon/src/e.ts": 'import { createRequire } from "node:module";\nexport const cp = createRequire(import.meta.url)("child_process");\n',
    });
    expect(r.ok).toBe(false);
    expect(r.lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^packages\/recon\/src\/a\.ts: imports "execa": only packages\/kernel may start processes/),
        expect.stringMatching(/^packages\/recon\/src\/b\.ts: imports "node:child_process": only packages\/kernel/),
        expect.stringMatching(/^packages\/recon\/src\/c\.ts: imports "child_process": only packages\/kernel/),
        expect.stringMatching(/^packages\/recon\/src\/d\.ts: import\(\) with a computed module name/),
        expect.stringMatching(/^packages\/recon\/src\/e\.ts: imports "node:module"/),
        expect.stringMatching(/^packages\/recon\/src\/e\.ts: createRequire\(\)/),
      ]),
    );
    expect(r.lines).toHaveLength(6);
  });

  it("leaves alone comments, strings, the kernel package and the --backend-module loader", async () => {
    const r = await check({
      "packages/recon/src/a.ts": '// import { execa } from "execa";\n/* require("child_process") */\nexport const s = \'import x from "execa"\';\n',
      "packages/kernel/src/run.ts": 'import { execa } from "execa";\nimport { spawn } from "node:child_process";\nexport { execa, spawn };\n',
      "packages/daemon/src/backend-modules.ts": "export const load = (url: string) => import(url);\n",
    });
    expect(r).toEqual({ ok: true, lines: [] });
  });
});
