/**
 * Issue 15 #2 at weftd's entry: a --state-dir or --subnet-file on /proc made weftd spin at 100 % CPU in Node's
 * recursive mkdir (after it had already started the CNI server, taken a lease and made weft.1). main() must
 * refuse such a path with one line and a non-zero exit before anything starts or is created.
 */
import "reflect-metadata";
import { existsSync } from "node:fs";
import { afterEach, describe, expect, it, vi } from "vitest";
import { main } from "./main.js";

describe("weftd refuses unusable paths before it starts anything (issue 15 #2)", () => {
  afterEach(() => vi.restoreAllMocks());

  async function run(argv: string[]): Promise<{ code: number; stderr: string }> {
    let stderr = "";
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      stderr += String(chunk);
      return true;
    });
    // An etcd endpoint nobody listens on: if weftd got as far as the store, the test would notice the hang.
    const code = await main(["--etcd-endpoints=http://127.0.0.1:9", "--cni-socket=off", ...argv], {});
    return { code, stderr };
  }

  it.each([
    [["--state-dir=/proc/weft-x", "--subnet-file=/tmp/weft-paths-never/subnet.env"], /^weftd: --state-dir: "\/proc\/weft-x" is on \/proc, a kernel pseudo filesystem: choose /],
    [["--state-dir=/tmp/weft-paths-never/state", "--subnet-file=/proc/weft-x/subnet.env"], /^weftd: --subnet-file: "\/proc\/weft-x\/subnet.env" is on \/proc/],
    [["--state-dir=/sys/weft-x", "--subnet-file=/tmp/weft-paths-never/subnet.env"], /^weftd: --state-dir: "\/sys\/weft-x" is on \/sys/],
  ])("%j: exit 2 with one line, nothing created", async (argv, line) => {
    const { code, stderr } = await run(argv);
    expect(code).toBe(2);
    expect(stderr).toMatch(line);
    expect(stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(existsSync("/proc/weft-x")).toBe(false);
    expect(existsSync("/sys/weft-x")).toBe(false);
    expect(existsSync("/tmp/weft-paths-never")).toBe(false);
  }, 20_000);
});
