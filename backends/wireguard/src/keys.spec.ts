import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { PSK_FILE, writePskFile } from "./keys.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("key files", () => {
  it("a failed write leaves no temp file holding part of a secret (issue 15: state dir full)", () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-wg-keys-"));
    dirs.push(dir);
    // The rename cannot replace a non-empty directory: the write fails after the temp file was written.
    mkdirSync(join(dir, PSK_FILE));
    writeFileSync(join(dir, PSK_FILE, "x"), "");
    expect(() => writePskFile(dir, "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=")).toThrow();
    expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });
});
