/**
 * --backend-module loading from real files: paths and package names (an ESM-only package included), and each
 * way it can go wrong gives one error naming the flag's value and the fix.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BackendModule, isWeftError } from "@weft/core";
import { afterEach, describe, expect, it } from "vitest";
import { loadBackendModules } from "./backend-modules.js";

const MODULE = (type: string) =>
  `export default { type: ${JSON.stringify(type)}, configSchema: { parse: (x) => x }, mtuOverhead: () => 0, register() {} };\n`;
const builtin: BackendModule = { type: "vxlan", configSchema: { parse: (x) => x }, mtuOverhead: () => 0, register() {} };

let dir: string;
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function tree(files: Record<string, string>): string {
  dir = mkdtempSync(join(tmpdir(), "weft-modules-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

const load = (thirdParty: string[], cwd: string) => loadBackendModules({ builtins: [builtin], thirdParty, cwd });
const failure = (p: Promise<unknown>) => p.then(() => expect.unreachable("expected a rejection"), (e: unknown) => e as Error);

describe("--backend-module", () => {
  it("loads a package by name from node_modules of cwd or a parent, ESM-only exports included, and a path", async () => {
    const root = tree({
      "node_modules/@acme/weft-esm/package.json": JSON.stringify({ name: "@acme/weft-esm", type: "module", exports: { ".": { import: "./index.js" } } }),
      "node_modules/@acme/weft-esm/index.js": MODULE("esm-only"),
      "local/mod.mjs": MODULE("local"),
      "app/.keep": "",
    });
    const r = await load(["@acme/weft-esm", "../local/mod.mjs"], join(root, "app"));
    expect(r.types()).toEqual(["esm-only", "local", "vxlan"]);
  });

  it("each failure is one line naming the value and the fix", async () => {
    const root = tree({
      "node_modules/no-default/package.json": JSON.stringify({ name: "no-default", type: "module", main: "index.js" }),
      "node_modules/no-default/index.js": "export const x = 1;\n",
      "node_modules/throws/package.json": JSON.stringify({ name: "throws", type: "module", main: "index.js" }),
      "node_modules/throws/index.js": 'throw new Error("boom at import");\n',
      "node_modules/no-entry/package.json": JSON.stringify({ name: "no-entry", main: "dist/index.js" }),
      "node_modules/steals-vxlan/package.json": JSON.stringify({ name: "steals-vxlan", type: "module", main: "index.js" }),
      "node_modules/steals-vxlan/index.js": MODULE("VXLAN"),
    });
    const cases: [string, RegExp][] = [
      ["./nowhere.js", /--backend-module \.\/nowhere\.js: .*nowhere\.js does not exist: build the backend package or fix the path/],
      ["weft-missing", /--backend-module weft-missing: package not found in node_modules from .* up: install it \(npm install weft-missing\) or pass a path/],
      ["no entry here", /--backend-module no entry here: not a package name or a path/],
      ["no-entry", /--backend-module no-entry: .*dist\/index\.js as its entry, which does not exist: build or reinstall the package/],
      ["no-default", /backend module --backend-module no-default is not a Weft backend module: its default export needs type/],
      ["throws", /--backend-module throws: importing .* failed: boom at import/],
      ["steals-vxlan", /declares type "VXLAN", which built-in \(type "vxlan"\) already registered: give the new module another type, or load only one of them/],
    ];
    for (const [spec, message] of cases) {
      const err = await failure(load([spec], root));
      expect(isWeftError(err), spec).toBe(true);
      expect(err.message, spec).toMatch(message);
      expect(err.message.split("\n"), spec).toHaveLength(1);
    }
  });
});
