import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { codeCachePath, compileWithCodeCache, saveCodeCache } from "./code-cache.js";

const root = mkdtempSync(join(tmpdir(), "weft-code-cache-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// A payload shaped like the real one: a function expression whose inner functions compile lazily when called.
const SOURCE = `(function (out) { function work(n) { let s = 0; for (let i = 0; i < n; i++) s += i; return s; } out.value = work(10); })`;

// V8 keeps compiled scripts in memory per isolate, keyed by source and file name, and would answer a second
// compile from there without looking at the cache file: every compile here gets a file name of its own.
let compiles = 0;

function run(source: string, dir: string | undefined, id = "0123456789abcdef", command = "ADD") {
  const path = dir === undefined ? undefined : codeCachePath(dir, id, command);
  const { script, status } = compileWithCodeCache(source, `payload-${++compiles}.js`, path, dir);
  const out: { value?: number } = {};
  (script.runInThisContext() as (o: object) => void)(out);
  return { script, status, path, value: out.value };
}

describe("V8 code cache of the executable", () => {
  it("names a cache by payload hash, Node version, arch and command", () => {
    expect(codeCachePath("/var/cache/weft/cni", "0123456789abcdef", "DEL")).toBe(
      `/var/cache/weft/cni/weft-cni-0123456789abcdef-${process.version}-${process.arch}-DEL.v8`,
    );
  });

  it("compiles without a cache when off; a missing directory is 'missing', and saving creates it 0700", () => {
    expect(run(SOURCE, undefined)).toMatchObject({ status: "off", value: 45 });
    const dir = join(root, "a", "cache");
    const first = run(SOURCE, dir);
    expect(first).toMatchObject({ status: "missing", value: 45 });
    expect(saveCodeCache(first.script, dir, first.path!, "0123456789abcdef")).toBeUndefined();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(first.path!).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual([`weft-cni-0123456789abcdef-${process.version}-${process.arch}-ADD.v8`]);
    // The next run takes it, and runs the same.
    expect(run(SOURCE, dir)).toMatchObject({ status: "used", value: 45 });
  });

  it("a cache V8 does not accept (another length, garbage) is 'rejected' and the code still runs", () => {
    const dir = join(root, "b");
    const first = run(SOURCE, dir);
    saveCodeCache(first.script, dir, first.path!, "0123456789abcdef");
    // Same id, different source length: V8 refuses the cache by its source check.
    const other = SOURCE.replace("work(10)", "work(100)");
    expect(run(other, dir)).toMatchObject({ status: "rejected", value: 4950 });
    writeFileSync(first.path!, "not a code cache");
    expect(run(SOURCE, dir)).toMatchObject({ status: "rejected", value: 45 });
  });

  it("saving removes caches of other builds and other Node versions, keeps this build's other commands", () => {
    const dir = join(root, "c");
    const old = run(SOURCE, dir, "aaaaaaaaaaaaaaaa");
    saveCodeCache(old.script, dir, old.path!, "aaaaaaaaaaaaaaaa");
    const del = run(SOURCE, dir, "bbbbbbbbbbbbbbbb", "DEL");
    saveCodeCache(del.script, dir, del.path!, "bbbbbbbbbbbbbbbb");
    const add = run(SOURCE, dir, "bbbbbbbbbbbbbbbb", "ADD");
    saveCodeCache(add.script, dir, add.path!, "bbbbbbbbbbbbbbbb");
    writeFileSync(join(dir, "unrelated"), "x");
    writeFileSync(join(dir, `weft-cni-bbbbbbbbbbbbbbbb-v18.0.0-${process.arch}-ADD.v8`), "an older Node's");
    saveCodeCache(add.script, dir, add.path!, "bbbbbbbbbbbbbbbb");
    expect(readdirSync(dir).sort()).toEqual([
      `unrelated`,
      `weft-cni-bbbbbbbbbbbbbbbb-${process.version}-${process.arch}-ADD.v8`,
      `weft-cni-bbbbbbbbbbbbbbbb-${process.version}-${process.arch}-DEL.v8`,
    ]);
  });

  it("never reads or writes bytecode in a directory others can write to", () => {
    const dir = join(root, "d");
    const first = run(SOURCE, dir);
    saveCodeCache(first.script, dir, first.path!, "0123456789abcdef");
    chmodSync(dir, 0o777);
    const open = run(SOURCE, dir);
    expect(open).toMatchObject({ status: "untrusted", value: 45 });
    expect(saveCodeCache(open.script, dir, open.path!, "0123456789abcdef")).toMatch(/is not a directory owned by this user and closed to others/);
    // A file in place of the directory is not a cache directory either.
    const file = join(root, "e");
    writeFileSync(file, "");
    expect(run(SOURCE, file).status).toBe("untrusted");
    expect(saveCodeCache(first.script, file, codeCachePath(file, "0123456789abcdef", "ADD"), "0123456789abcdef")).toBeDefined();
    mkdirSync(join(root, "f"), { mode: 0o755 });
    expect(run(SOURCE, join(root, "f")).status).toBe("missing"); // 0755 root-owned: trusted, just empty
  });
});
