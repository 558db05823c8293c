import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IPNet, isWeftError } from "@weft/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readSubnetFile, writeSubnetFile } from "./subnet-file.js";

const values = { network: IPNet.parse("198.19.0.0/16"), subnet: IPNet.parse("198.19.3.0/24"), mtu: 1450, ipMasq: true };

describe("subnet.env on disk", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "weft-subnet-file-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("writes the file atomically, creating missing parents, and reads it back", () => {
    const path = join(dir, "run", "weft", "subnet.env");
    writeSubnetFile(path, values);
    expect(readFileSync(path, "utf8")).toContain("FLANNEL_SUBNET=198.19.3.1/24");
    expect(readSubnetFile(path).error).toBeUndefined();
    expect(readdirSync(join(dir, "run", "weft"))).toEqual(["subnet.env"]);
  });

  it("issue 15 #12: --subnet-file=<a directory> is refused before writing and leaves no .tmp file behind", () => {
    const target = join(dir, "is-a-dir");
    mkdirSync(target);
    let err: unknown;
    try {
      writeSubnetFile(target, values);
    } catch (e) {
      err = e;
    }
    expect(isWeftError(err, "CONFIG_INVALID")).toBe(true);
    expect((err as Error).message).toContain("--subnet-file");
    expect((err as Error).message).toContain("is a directory");
    expect(readdirSync(dir)).toEqual(["is-a-dir"]);
    expect(readdirSync(target)).toEqual([]);
  });

  it("issue 15 #2: a path on /proc is refused at once (no spin in a recursive mkdir)", () => {
    expect(() => writeSubnetFile("/proc/weft-x/subnet.env", values)).toThrow(/--subnet-file: "\/proc\/weft-x\/subnet.env" is on \/proc/);
    expect(existsSync("/proc/weft-x")).toBe(false);
  });

  it("a failed write leaves the previous subnet.env intact and no temp file", () => {
    const path = join(dir, "subnet.env");
    writeFileSync(path, "FLANNEL_SUBNET=198.19.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n");
    // A value the formatter refuses: the failure happens before anything is written.
    expect(() => writeSubnetFile(path, { ...values, subnet: { ip: undefined } as never })).toThrow();
    expect(readFileSync(path, "utf8")).toContain("198.19.1.1/24");
    expect(readdirSync(dir)).toEqual(["subnet.env"]);
  });
});
