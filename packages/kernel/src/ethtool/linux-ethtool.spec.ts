import { describe, expect, it } from "vitest";
import type { ChildHandle, ProcessRunner, RunResult } from "../process.js";
import { LinuxEthtool, parseEthtoolFeatures } from "./linux-ethtool.js";

/** Answers every run with one result (the kernel's own tests cannot use kernel-testing, which depends on it). */
class FakeProcessRunnerLite implements ProcessRunner {
  constructor(private readonly result: RunResult) {}
  async run(): Promise<RunResult> {
    return this.result;
  }
  spawn(): ChildHandle {
    throw new Error("not used");
  }
}

describe("LinuxEthtool", () => {
  // Moved here from backends/vxlan/src/vxlan.spec.ts with the parser.
  it("parses ethtool's feature listing", () => {
    expect(parseEthtoolFeatures("Features for weft.1:\ntx-checksumming: on\n\ttx-checksum-ipv4: off [fixed]\n\ttx-checksum-ip-generic: on\n")).toEqual(
      new Map([
        ["tx-checksumming", { enabled: true, fixed: false }],
        ["tx-checksum-ipv4", { enabled: false, fixed: true }],
        ["tx-checksum-ip-generic", { enabled: true, fixed: false }],
      ]),
    );
  });

  it.each([
    [92, "netlink error: bit name not found (offset 52)\nnetlink error: Operation not supported\n", "KERNEL_INVALID"],
    [92, "netlink error: no device matches name (offset 24)\nnetlink error: No such device\n", "KERNEL_NOT_FOUND"],
    [1, "Could not change any device features\n", "KERNEL_UNSUPPORTED"],
  ] as const)("classifies exit %i %j as %s (texts of ethtool 6.1)", async (exitCode, stderr, code) => {
    const eth = new LinuxEthtool(new FakeProcessRunnerLite({ exitCode, stdout: "", stderr }));
    await expect(eth.setFeature("weft.1", "x", false)).rejects.toMatchObject({ code });
  });

  it("is PROCESS_MISSING naming the package when ethtool is missing behind `ip netns exec`", async () => {
    const eth = new LinuxEthtool(new FakeProcessRunnerLite({ exitCode: 255, stdout: "", stderr: 'exec of "ethtool" failed: No such file or directory\n' }));
    await expect(eth.features("weft.1")).rejects.toMatchObject({ code: "PROCESS_MISSING", message: expect.stringContaining("apt-get install -y --no-install-recommends ethtool") });
  });
});
