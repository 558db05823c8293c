import { existsSync, mkdtempSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError } from "@weft/core";
import { checkWritableFilePath, ensureDirectory } from "./paths.js";

const oneLine = (fn: () => void): ConfigError => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).not.toContain("\n");
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError");
};

describe("ensureDirectory", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "weft-paths-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("creates missing components one at a time and accepts an existing directory", () => {
    const target = join(dir, "a", "b", "c");
    ensureDirectory(target, "--state-dir");
    expect(statSync(target).isDirectory()).toBe(true);
    ensureDirectory(target, "--state-dir");
  });

  it("refuses /proc and /sys quickly, naming the field and the value, creating nothing", () => {
    const e = oneLine(() => ensureDirectory("/proc/weft-x/y", "--state-dir"));
    expect(e.message).toContain("--state-dir");
    expect(e.message).toContain('"/proc/weft-x/y"');
    expect(e.message).toContain("pseudo filesystem");
    expect(existsSync("/proc/weft-x")).toBe(false);
    oneLine(() => ensureDirectory("/sys/weft-x", "--state-dir"));
    oneLine(() => ensureDirectory("/proc/self/fd/weft", "dataDir"));
  });

  it("refuses a path through a regular file and a path that is a file", () => {
    const file = join(dir, "f");
    writeFileSync(file, "x");
    expect(oneLine(() => ensureDirectory(join(file, "sub"), "--state-dir")).message).toContain("is not a directory");
    expect(oneLine(() => ensureDirectory(file, "--state-dir")).message).toContain("not a directory");
  });

  it("truncates a huge value in the message", () => {
    const e = oneLine(() => ensureDirectory(`/proc/${"x".repeat(5000)}`, "--state-dir"));
    expect(e.message.length).toBeLessThan(400);
  });
});

describe("checkWritableFilePath", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "weft-paths-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("accepts a new file in a missing directory without creating it", () => {
    const target = join(dir, "run", "weft", "subnet.env");
    checkWritableFilePath(target, "--subnet-file");
    expect(existsSync(join(dir, "run"))).toBe(false);
  });

  it("refuses a directory, /proc, and a path through a file", () => {
    mkdirSync(join(dir, "d"));
    expect(oneLine(() => checkWritableFilePath(join(dir, "d"), "--subnet-file")).message).toContain("is a directory");
    expect(oneLine(() => checkWritableFilePath("/proc/x/subnet.env", "--subnet-file")).message).toContain("--subnet-file");
    writeFileSync(join(dir, "f"), "");
    oneLine(() => checkWritableFilePath(join(dir, "f", "subnet.env"), "--subnet-file"));
  });
});
