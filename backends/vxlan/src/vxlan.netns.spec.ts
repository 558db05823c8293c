/**
 * vxlan on the real kernel, beyond the conformance suite: a device deleted or replaced behind Weft's back is
 * recreated with every peer's neighbour, FDB entry and route in one full reconcile, and
 * DisableTxChecksumOffload is applied with the real ethtool and re-applied to the recreated device.
 */
import { TEST_TOPOLOGY, type TestAgent, diffSnapshots, snapshotKernel, startTestAgent, testNetConf } from "@weft/backend-testkit";
import { type TestNetns, describeReal, linuxKernelInNetns } from "@weft/backend-testkit/netns";
import { ExecaRunner, type ProcessRunner } from "@weft/kernel";
import { afterEach, expect, it } from "vitest";
import vxlan from "./index.js";

const T = TEST_TOPOLOGY;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/** Runs programs inside `netns` (ethtool talks to the namespace it runs in). */
function runnerIn(netns: TestNetns): ProcessRunner {
  const host = new ExecaRunner();
  return {
    run: (file, args, opts) => host.run("ip", ["netns", "exec", netns.name, file, ...args], opts),
    spawn: (file, args, opts) => host.spawn("ip", ["netns", "exec", netns.name, file, ...args], opts),
  };
}

async function node(i: number, backend: Record<string, unknown> = {}): Promise<{ agent: TestAgent; netns: TestNetns }> {
  const { kernel, netns } = await linuxKernelInNetns();
  cleanups.push(() => netns.destroy());
  const n = T.node(i);
  const agent = await startTestAgent({
    backends: [vxlan],
    config: testNetConf({ Type: "vxlan", ...backend }, "dual"),
    iface: { address: n.address, address6: n.address6 },
    leases: { subnet: n.subnet, ipv6Subnet: n.ipv6Subnet, nodeName: n.nodeName },
    kernel,
    processRunner: runnerIn(netns),
  });
  cleanups.push(() => agent.close());
  return { agent, netns };
}

async function txChecksum(netns: TestNetns, dev: string): Promise<string> {
  const r = await netns.run("ethtool", ["--show-features", dev]);
  return /tx-checksum-ip-generic: (on|off)/.exec(r.stdout)?.[1] ?? `unreadable: ${r.stdout}`;
}

describeReal(
  "vxlan on the real kernel",
  () => {
    it("recreates a deleted or replaced device and reprograms every peer in one pass", async () => {
      const { agent, netns } = await node(1);
      for (const i of [2, 3]) await agent.addPeer((await node(i)).agent.lease);
      const before = await snapshotKernel(agent.kernel);
      expect(before.lines.filter((l) => l.startsWith("fdb weft"))).toHaveLength(4);

      await netns.ip(["link", "del", "weft.1"]);
      await agent.reconcile();
      expect(diffSnapshots(before, await snapshotKernel(agent.kernel))).toEqual([]);

      // Replaced by hand with another VNI: incompatible, so recreated (not adopted).
      await netns.ip(["link", "del", "weft-v6.1"]);
      await netns.ip(["link", "add", "weft-v6.1", "type", "vxlan", "id", "42", "dstport", "8472", "local", "2001:2::1", "dev", "eth0"]);
      const r = await agent.reconcile();
      expect(r.kinds.find((k) => k.kind === "links")!.drifts).toEqual([{ key: "weft-v6.1", reason: expect.stringMatching(/^incompatible \(vni 42 != 1, learning true != false\): recreate$/) }]);
      expect(diffSnapshots(before, await snapshotKernel(agent.kernel))).toEqual([]);
      expect((await agent.reconcile()).writes).toBe(0);
    });

    it("turns tx checksum offload off with ethtool, and again on a recreated device", async () => {
      const { agent, netns } = await node(1, { DisableTxChecksumOffload: true });
      expect([await txChecksum(netns, "weft.1"), await txChecksum(netns, "weft-v6.1")]).toEqual(["off", "off"]);
      expect((await agent.reconcile()).writes).toBe(0);
      await netns.ip(["link", "del", "weft.1"]);
      await agent.reconcile();
      expect(await txChecksum(netns, "weft.1")).toBe("off");
      const r = await agent.restart();
      expect([r.writes, r.recreated]).toEqual([0, []]);
    });
  },
  { tools: ["bridge", "ethtool"] },
);
