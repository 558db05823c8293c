/**
 * Backend-specific tests: what the conformance suite cannot know. Same tools: startTestAgent on a FakeKernel,
 * then assertions on the kernel's final state (never on which calls the backend made).
 */
import { TEST_TOPOLOGY, type TestAgent, peerLease, startTestAgent, testNetConf } from "@weft/backend-testkit";
import { IPAddress, type MemoryLogger, parseNetworkConfig } from "@weft/core";
import type { FakeKernel } from "@weft/kernel-testing";
import { afterEach, describe, expect, it } from "vitest";
import backend, { sampleConfigSchema } from "./index.js";

const T = TEST_TOPOLOGY;
const agents: TestAgent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.close();
});

async function node(i: number, section: Record<string, unknown> = {}) {
  const n = T.node(i);
  const a = await startTestAgent({
    backends: [backend],
    config: testNetConf({ Type: "sample", ...section }, "v4"),
    iface: { address: n.address },
    leases: { subnet: n.subnet, nodeName: n.nodeName },
  });
  agents.push(a);
  return a;
}

describe("sample backend", () => {
  it("routes a peer's subnet via the gateway it publishes, with the configured metric", async () => {
    const a = await node(1, { Metric: 50 });
    const b = await node(2, { Metric: 50 });
    expect(b.backendData).toEqual({ v4: { Gateway: "198.18.0.2" } });
    expect(await a.addPeer(b.lease)).toEqual({ state: "programmed" });
    expect(await a.kernel.listRoutes({ family: "v4", protocol: 87 })).toEqual([
      expect.objectContaining({ dst: "198.19.2.0/24", gateway: "198.18.0.2", dev: "eth0", metric: 50 }),
    ]);
  });

  it("reports a peer whose gateway is off the underlay segment as unreachable", async () => {
    const a = await node(1);
    const far = peerLease({ subnet: "198.19.9.0/24", publicIP: T.offSegment, backendType: "sample", backendData: { Gateway: T.offSegment } });
    expect(await a.addPeer(far)).toEqual({ state: "unreachable", reason: "peer 198.19.9.0-24 gateway 198.18.5.2 is not on this node's segments (eth0 198.18.0.0/24)" });
  });

  it("skips a joining peer until it has published its data, without logging (the agent logs peer states)", async () => {
    const a = await node(1);
    const b = await node(2);
    const { backendData: _notYet, ...early } = b.lease.attrs;
    expect(await a.addPeer({ ...b.lease, attrs: early })).toEqual({ state: "pending", reason: "peer node-2 (198.19.2.0-24) has not published its backend data yet (no BackendData); it is programmed when it does" });
    expect(await a.kernel.listRoutes({ family: "v4", protocol: 87 })).toEqual([]);
    expect(await a.addPeer(b.lease)).toEqual({ state: "programmed" });
    const logger = a.logger as MemoryLogger;
    expect(logger.records.filter((r) => r.level === "warn" || r.level === "error")).toEqual([]);
  });

  it("refuses, in preflight, an enabled family without an address on the interface", () => {
    const config = sampleConfigSchema.parse({ Type: "sample" }, "Backend");
    const network = parseNetworkConfig(JSON.stringify(testNetConf({ Type: "sample" }, "dual")));
    const iface = { name: "eth0", index: 2, mtu: 1500, ifaceAddr: IPAddress.parse("198.18.0.1") };
    expect(() => backend.preflight!(config, network, iface)).toThrow(
      "sample: EnableIPv6 is on but interface eth0 has no IPv6 address for peers to route through: give it one or turn EnableIPv6 off",
    );
    backend.preflight!(config, { ...network, enableIPv6: false }, iface);
  });

  it("keeps rp_filter loose on the underlay when asked, and repairs it", async () => {
    const a = await node(1, { LooseReversePathFilter: true });
    const kernel = a.kernel as FakeKernel;
    expect(await kernel.getSysctl("net.ipv4.conf.eth0.rp_filter")).toBe("2");
    await kernel.setSysctl("net.ipv4.conf.eth0.rp_filter", "1");
    await a.reconcile();
    expect(await kernel.getSysctl("net.ipv4.conf.eth0.rp_filter")).toBe("2");
  });
});
