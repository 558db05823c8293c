/**
 * host-gw specifics beyond the conformance suite: the exact route per peer and family, the same-L2 rule
 * (a status with the fix; the agent logs it), NAT refusal in preflight, null backend data. FakeKernel, final state.
 */
import { TEST_TOPOLOGY, type FamilyMode, type TestAgent, type TestInterface, peerLease, snapshotKernel, startTestAgent, testNetConf } from "@weft/backend-testkit";
import { type ExternalInterface, IPAddress, IPNet, type Lease, MemoryLogger, encodeLeaseAttrs, isWeftError, parseNetworkConfig } from "@weft/core";
import { FakeKernel } from "@weft/kernel-testing";
import { afterEach, describe, expect, it } from "vitest";
import hostGw, { hostGwConfigSchema } from "./index.js";

const T = TEST_TOPOLOGY;
const agents: TestAgent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.close().catch(() => undefined);
});

async function node(i: number, o: { mode?: FamilyMode; iface?: Partial<TestInterface>; logger?: MemoryLogger; kernel?: FakeKernel; backend?: Record<string, unknown> } = {}) {
  const mode = o.mode ?? "v4";
  const me = T.node(i);
  const a = await startTestAgent({
    backends: [hostGw],
    config: testNetConf({ Type: "host-gw", ...o.backend }, mode),
    iface: { ...(mode !== "v6" ? { address: me.address } : {}), ...(mode !== "v4" ? { address6: me.address6 } : {}), ...o.iface },
    leases: { subnet: me.subnet, ipv6Subnet: me.ipv6Subnet, nodeName: me.nodeName },
    ...(o.logger ? { logger: o.logger } : {}),
    ...(o.kernel ? { kernel: o.kernel } : {}),
  });
  agents.push(a);
  return a;
}

const weftRoutes = async (a: Pick<TestAgent, "kernel">) =>
  [...(await a.kernel.listRoutes({ family: "v4", protocol: 87 })), ...(await a.kernel.listRoutes({ family: "v6", protocol: 87 }))].map(
    (r) => `${r.dst} via ${r.gateway} dev ${r.dev}${r.onlink ? " onlink" : ""}`,
  );

describe("host-gw", () => {
  it("routes each peer subnet via the peer's PublicIP on the underlay interface, per family, without onlink", async () => {
    const a = await node(1, { mode: "dual" });
    await a.addPeer((await node(2, { mode: "dual" })).lease);
    await a.addPeer((await node(3, { mode: "dual" })).lease);
    expect((await weftRoutes(a)).sort()).toEqual([
      "198.19.2.0/24 via 198.18.0.2 dev eth0",
      "198.19.3.0/24 via 198.18.0.3 dev eth0",
      "2001:2:0:102::/64 via 2001:2::2 dev eth0",
      "2001:2:0:103::/64 via 2001:2::3 dev eth0",
    ]);
    // Nothing else: no devices, neighbours or FDB entries of Weft's.
    expect((await snapshotKernel(a.kernel)).lines.filter((l) => /weft/.test(l))).toEqual([]);
  });

  it("publishes no backend data: JSON null, as Flannel does", async () => {
    const a = await node(1, { mode: "dual" });
    expect(a.backendData).toEqual({ v4: null, v6: null });
    expect(JSON.parse(encodeLeaseAttrs(a.lease.attrs))).toEqual({ PublicIP: "198.18.0.1", PublicIPv6: "2001:2::1", BackendType: "host-gw", BackendData: null, BackendV6Data: null });
  });

  it("reports a peer on another L2 segment as unreachable, naming the fix, programs nothing for it and leaves the logging to the agent", async () => {
    const logger = new MemoryLogger();
    const a = await node(1, { logger });
    const far = peerLease({ subnet: "198.19.5.0/24", publicIP: T.offSegment, backendType: "host-gw", backendData: null, nodeName: "X" });
    const expected = {
      state: "unreachable",
      reason: "peer X (198.18.5.2) is not on this node's L2 segment (eth0 198.18.0.0/24): host-gw cannot reach it; use vxlan with DirectRouting: true",
    };
    expect(await a.addPeer(far)).toEqual(expected);
    expect(await a.addPeer(far)).toEqual(expected);
    await a.reconcile();
    expect(await weftRoutes(a)).toEqual([]);
    // The agent's PeerSet logs the state once per change; a second line from the backend would double it.
    expect(logger.records.filter((r) => r.level === "warn" || r.level === "error")).toEqual([]);
  });

  it("routes a peer that publishes no BackendData at all (Flannel's host-gw publishes none)", async () => {
    const a = await node(1);
    const bare = peerLease({ subnet: "198.19.2.0/24", publicIP: "198.18.0.2", backendType: "host-gw", nodeName: "node-2" });
    expect(bare.attrs.backendData).toBeUndefined();
    expect(await a.addPeer(bare)).toEqual({ state: "programmed" });
    expect(await weftRoutes(a)).toEqual(["198.19.2.0/24 via 198.18.0.2 dev eth0"]);
  });

  it("drops the route of a peer that moves off the segment", async () => {
    const a = await node(1);
    const b = await node(2);
    await a.addPeer(b.lease);
    const moved: Lease = peerLease({ subnet: "198.19.2.0/24", publicIP: T.offSegment, backendType: "host-gw", nodeName: "node-2" });
    expect((await a.addPeer(moved)).state).toBe("unreachable");
    expect(await weftRoutes(a)).toEqual([]);
  });

  describe("preflight (before the agent takes a lease)", () => {
    const net = (mode: FamilyMode) => parseNetworkConfig(JSON.stringify(testNetConf({ Type: "host-gw" }, mode)));
    const config = hostGwConfigSchema.parse({ Type: "host-gw" }, "Backend");
    const eth0 = (o: Partial<ExternalInterface> = {}): ExternalInterface => ({ name: "eth0", index: 2, mtu: 1500, ...o });
    const v4 = IPAddress.parse("198.18.0.1");
    const v6 = IPAddress.parse("2001:2::1");

    it("refuses a node behind NAT (PublicIP differs from the interface address), per family", () => {
      expect(() => hostGw.preflight!(config, net("v4"), eth0({ ifaceAddr: v4, extAddr: IPAddress.parse("198.18.1.1") }))).toThrow(
        "host-gw: the public IP 198.18.1.1 differs from eth0's address 198.18.0.1, so this node is probably behind NAT; host-gw makes peers route straight to the public IP, which cannot work through NAT: use vxlan, or drop --public-ip",
      );
      expect(() => hostGw.preflight!(config, net("v6"), eth0({ ifaceV6Addr: v6, extV6Addr: IPAddress.parse("2001:2:0:9::1") }))).toThrow(/drop --public-ipv6$/);
    });

    it("refuses an enabled family without an address on the interface", () => {
      const err = (() => {
        try {
          hostGw.preflight!(config, net("dual"), eth0({ ifaceAddr: v4, extAddr: v4 }));
        } catch (e) {
          return e;
        }
      })();
      expect(isWeftError(err, "CONFIG_INVALID")).toBe(true);
      expect((err as Error).message).toBe("host-gw: EnableIPv6 is on but interface eth0 has no IPv6 address for peers to route to: give it one or turn EnableIPv6 off");
    });

    it("accepts the interface's own addresses, and a family that is not enabled needs none", () => {
      hostGw.preflight!(config, net("dual"), eth0({ ifaceAddr: v4, extAddr: v4, ifaceV6Addr: v6, extV6Addr: v6 }));
      hostGw.preflight!(config, net("v4"), eth0({ ifaceAddr: v4 }));
    });

    it("is also registerSubnet's guard: an agent behind NAT stops before any lease or route", async () => {
      const kernel = new FakeKernel();
      await expect(node(1, { kernel, iface: { publicIP: "198.18.1.1" } })).rejects.toThrow(/probably behind NAT/);
      expect(await weftRoutes({ kernel })).toEqual([]);
      // Called directly (no agent, so no preflight), registerSubnet refuses with the same check.
      const a = await node(1);
      const natted = { ...a.iface, extAddr: IPAddress.parse("198.18.1.1") };
      await expect(a.backend.registerSubnet({ lease: a.lease, config: a.config, iface: natted })).rejects.toThrow(/probably behind NAT/);
    });
  });

  it("skips peers of another backend type", async () => {
    const a = await node(1);
    const s = await a.addPeer(peerLease({ subnet: "198.19.2.0/24", publicIP: "198.18.0.2", backendType: "vxlan", nodeName: "node-2" }));
    expect(s).toEqual({ state: "skipped", reason: 'peer node-2 (198.19.2.0-24) uses backend "vxlan", this node host-gw: every node must run the same Backend.Type' });
  });

  it("accepts only Type, warning about anything else", () => {
    expect(hostGwConfigSchema.parse({ type: "HOST-GW" }, "Backend")).toEqual({ warnings: [] });
    expect(hostGwConfigSchema.parse({ Type: "host-gw", DirectRouting: true }, "Backend").warnings).toEqual([
      "net-conf.json: unknown key Backend.DirectRouting is ignored by host-gw (it has no options besides Type)",
    ]);
    expect(() => hostGwConfigSchema.parse("host-gw", "Backend")).toThrow('net-conf.json: Backend "host-gw" must be an object like {"Type": "host-gw"}');
  });

  it("adopts its routes after a restart and leaves them on close('restart')", async () => {
    const a = await node(1);
    await a.addPeer((await node(2)).lease);
    expect(await a.restart()).toMatchObject({ writes: 0, recreated: [] });
    expect(await weftRoutes(a)).toEqual(["198.19.2.0/24 via 198.18.0.2 dev eth0"]);
  });
});

// A peer whose route the kernel refuses (issue 15 #9): /status says failed with the kernel's line, and one
// unprogrammable peer does not hold readiness forever.
describe("host-gw peer the kernel refuses", () => {
  it("is failed in the statuses with the kernel's line, other peers programmed, and does not hold readiness", async () => {
    const a = await node(1);
    (a.kernel as FakeKernel).failAlways((op) => op.op === "route.add" && op.route.dst === "198.19.3.0/24", "KERNEL_INVALID", "Error: Nexthop has invalid gateway.");
    await a.addPeer((await node(2)).lease);
    await a.addPeer((await node(3)).lease);
    await a.reconcile();
    const st = Object.fromEntries(a.peers.statuses().map((s) => [s.peer, s]));
    expect(st["198.19.2.0-24"]?.state).toBe("programmed");
    expect(st["198.19.3.0-24"]?.state).toBe("failed");
    expect(st["198.19.3.0-24"]?.reason).toContain("Nexthop has invalid gateway");
    expect(a.peers.counts()).toMatchObject({ programmed: 1, failed: 1 });
    // A refusal of this kind does not clear by retrying: reported, but not holding readiness.
    expect(a.peers.retryableFailures()).toBe(0);
  });

  it("skips a peer whose PublicIP is the broadcast or network address of the shared segment, naming it", async () => {
    const a = await node(1);
    const p = (await node(2)).lease;
    for (const ip of ["198.18.0.255", "198.18.0.0"]) {
      const st = await a.addPeer({ ...p, subnet: IPNet.parse("198.19.9.0/24"), attrs: { ...p.attrs, publicIP: IPAddress.parse(ip) } });
      expect(st.state, ip).toBe("skipped");
      expect("reason" in st && st.reason, ip).toContain(`has PublicIP ${ip}, the `);
    }
    expect((await a.kernel.listRoutes({ family: "v4", protocol: 87 })).map((r) => r.dst)).toEqual([]);
  });
});
