/**
 * startTestAgent does the agent's DI loading for real: the registry picks the module named by Backend.Type
 * (case-insensitively), the module's schema validates the Backend section, reconcilers a module contributes
 * reach the engine, and the agent re-declares the store's peers on restart. FakeSubnetManager streams a
 * snapshot and then events.
 */
import "reflect-metadata";
import {
  BACKEND,
  type Backend,
  CLOCK,
  type BackendModule,
  DATAPATH,
  type Datapath,
  type Lease,
  type LocalLease,
  MemoryLogger,
  type Peer,
  type PeerStatus,
  WeftError,
  isWeftError,
  parseNetworkConfig,
  subnetKey,
} from "@weft/core";
import { KERNEL, KERNEL_VIEW, type KernelPort, type OpResult } from "@weft/kernel";
import { FakeKernel } from "@weft/kernel-testing";
import { RECONCILER_CONTRIBUTION, type ObjectReconciler } from "@weft/reconcile";
import { inject, injectable } from "tsyringe";
import { describe, expect, it } from "vitest";
import { FakeSubnetManager } from "./fake-subnet-manager.js";
import { TEST_TOPOLOGY, peerLease, testNetConf } from "./leases.js";
import { snapshotKernel } from "./kernel-snapshot.js";
import { type TestAgent, startTestAgent } from "./test-agent.js";

/** A backend that records which module instance was chosen by declaring a bridge named after its type. */
function namedModule(type: string, extra?: (c: Parameters<BackendModule["register"]>[0]) => void): BackendModule<unknown> {
  @injectable()
  class Named implements Backend {
    constructor(@inject(DATAPATH) private readonly datapath: Datapath) {}
    async registerSubnet(_local: LocalLease) {
      this.datapath.declare("local", { links: [{ name: `weft-${type}`, kind: "bridge", up: true }], extra: { marks: [{ id: type }] } });
      await this.datapath.flush();
      return {};
    }
    async addPeer(peer: Lease): Promise<PeerStatus> {
      this.datapath.declare(subnetKey(peer), { routes: [{ family: "v4", dst: peer.subnet!.toString(), gateway: peer.attrs.publicIP!.toString(), dev: "eth0" }] });
      return { state: "programmed" };
    }
    async removePeer(peer: Lease) {
      this.datapath.retract(subnetKey(peer));
    }
    async close() {}
  }
  return {
    type,
    configSchema: {
      parse(input, path) {
        if (typeof input !== "object" || input === null) throw new WeftError("BACKEND_CONFIG_INVALID", `${path} must be an object`);
        if ("Bad" in input) throw new WeftError("BACKEND_CONFIG_INVALID", `net-conf.json: ${path}.Bad is not allowed for ${type}`);
        return input;
      },
    },
    preflight(config, network, iface) {
      if ((config as Record<string, unknown>).NeedsIPv6 && network.enableIPv6 && !iface.ifaceV6Addr) {
        throw new WeftError("CONFIG_INVALID", `${type}: interface ${iface.name} has no IPv6 address: give it one or turn EnableIPv6 off`);
      }
    },
    mtuOverhead: () => 0,
    register(c) {
      c.register(BACKEND, { useClass: Named });
      extra?.(c);
    },
  };
}

/** An extra kind held in memory, to show a module's contributed reconciler is driven by the engine. */
function markReconciler(store: Set<string>): ObjectReconciler<{ id: string }, { id: string }> {
  return {
    kind: "marks",
    key: (m) => m.id,
    listOwned: async (_k: KernelPort, desired) => desired.filter((d) => store.has(d.id)),
    drift: () => undefined,
    addOps: (m) => [m],
    updateOps: (m) => [m],
    removeOps: () => [],
    apply: async (ops): Promise<OpResult[]> => ops.map((o) => (store.add(o.id), { ok: true as const })),
  };
}

const me = TEST_TOPOLOGY.node(1);
const iface = { address: me.address };

describe("startTestAgent", () => {
  it("picks the module Backend.Type names, case-insensitively, among several", async () => {
    const marks = new Set<string>();
    const a = await startTestAgent({
      backends: [namedModule("alpha"), namedModule("beta", (c) => c.register(RECONCILER_CONTRIBUTION, { useValue: markReconciler(marks) }))],
      config: testNetConf({ Type: "BETA" }, "v4"),
      iface,
    });
    expect((await a.kernel.listLinks()).map((l) => l.name).filter((n) => n.startsWith("weft"))).toEqual(["weft-beta"]);
    expect([...marks]).toEqual(["beta"]);
    expect(a.lease.subnet?.toString()).toBe("198.19.1.0/24");
    await a.close();
  });

  it("fails on an unknown type with the list of known ones, and on a rejected Backend section with its path", async () => {
    const err = await startTestAgent({ backends: [namedModule("alpha")], config: testNetConf({ Type: "gamma" }, "v4"), iface }).catch((e: unknown) => e);
    expect(isWeftError(err, "BACKEND_UNKNOWN")).toBe(true);
    expect((err as Error).message).toContain("known types are alpha");
    await expect(startTestAgent({ backends: [namedModule("alpha")], config: testNetConf({ Type: "alpha", Bad: 1 }, "v4"), iface })).rejects.toThrow(
      "net-conf.json: Backend.Bad is not allowed for alpha",
    );
    await expect(startTestAgent({ backends: [{ type: "nope" }], config: testNetConf({ Type: "nope" }, "v4"), iface })).rejects.toThrow(/is not a Weft backend module/);
  });

  it("runs the module's preflight before it takes a lease or changes the node, as weftd does", async () => {
    const config = testNetConf({ Type: "alpha", NeedsIPv6: true }, "dual");
    const store = new FakeSubnetManager(parseNetworkConfig(JSON.stringify(config)), { nodeName: "node-1" });
    const kernel = new FakeKernel();
    await expect(startTestAgent({ backends: [namedModule("alpha")], config, iface, kernel, leases: store })).rejects.toThrow(
      "alpha: interface eth0 has no IPv6 address: give it one or turn EnableIPv6 off",
    );
    expect(store.localLease()).toBeUndefined();
    // No device of the backend's (it would declare weft-alpha in registerSubnet).
    expect((await snapshotKernel(kernel)).lines.filter((l) => l.includes("weft"))).toEqual([]);
    // With the address it starts.
    const a = await startTestAgent({ backends: [namedModule("alpha")], config, iface: { ...iface, address6: me.address6 }, kernel, leases: store });
    expect(store.localLease()?.attrs.backendType).toBe("alpha");
    await a.close();
  });

  it("re-declares the store's peers on restart and prunes the ones that left", async () => {
    const p2 = peerLease({ subnet: "198.19.2.0/24", publicIP: "198.18.0.2", backendType: "alpha" });
    const p3 = peerLease({ subnet: "198.19.3.0/24", publicIP: "198.18.0.3", backendType: "alpha" });
    const a = await startTestAgent({ backends: [namedModule("alpha")], config: testNetConf({ Type: "alpha" }, "v4"), iface, leases: { peers: [p2, p3] } });
    const dsts = async () => (await a.kernel.listRoutes({ family: "v4", protocol: 87 })).map((r) => r.dst);
    expect(await dsts()).toEqual(["198.19.2.0/24", "198.19.3.0/24"]);
    a.store.removePeer(p3);
    const r = await a.restart();
    expect(r.recreated).toEqual([]);
    expect(await dsts()).toEqual(["198.19.2.0/24"]);
    await a.close();
  });
});

/** A backend that needs its peers' data (`{"Via": "<IPv4>"}`) and routes each peer's subnet via it. */
function viaModule(type: string): BackendModule<unknown> {
  const viaSchema = {
    parse(input: unknown, path: string): { via: string } {
      const via = (input as { Via?: unknown } | null)?.Via;
      if (typeof via !== "string") throw new WeftError("PEER_DATA_INVALID", `${path}: Via ${JSON.stringify(via)} is not an address`);
      return { via };
    },
  };
  @injectable()
  class Via implements Backend {
    readonly seen: string[] = [];
    constructor(@inject(DATAPATH) private readonly datapath: Datapath) {}
    async registerSubnet(local: LocalLease) {
      return { v4: { Via: local.iface.ifaceAddr!.toString() } };
    }
    async addPeer(peer: Peer): Promise<PeerStatus> {
      const endpoint = peer.endpoint("v4", viaSchema);
      if ("status" in endpoint) {
        this.datapath.retract(peer.key);
        return endpoint.status;
      }
      this.datapath.declare(peer.key, { routes: [{ family: "v4", dst: peer.subnets.get("v4")!.toString(), gateway: endpoint.data.via, dev: "eth0" }] });
      return { state: "programmed" };
    }
    async removePeer(peer: Lease) {
      this.datapath.retract(subnetKey(peer));
    }
    async close() {}
  }
  return {
    type,
    configSchema: { parse: (input) => input },
    mtuOverhead: () => 0,
    register(c) {
      c.register(BACKEND, { useClass: Via });
    },
  };
}

describe("the test agent runs the agent core", () => {
  const routes = async (a: TestAgent) => (await a.kernel.listRoutes({ family: "v4", protocol: 87 })).map((r) => `${r.dst} via ${r.gateway}`);

  it("keeps a restarting peer's datapath while it re-acquires its lease without data, then takes the new data", async () => {
    const a = await startTestAgent({ backends: [viaModule("via")], config: testNetConf({ Type: "via" }, "v4"), iface });
    const peer = peerLease({ subnet: "198.19.2.0/24", publicIP: "198.18.0.2", backendType: "via", backendData: { Via: "198.18.0.2" }, nodeName: "node-2" });
    expect(await a.addPeer(peer)).toEqual({ state: "programmed" });
    // The peer restarts: its lease comes back first without backend data (absent, then the kube "null").
    const { backendData: _gone, ...bare } = peer.attrs;
    expect(await a.addPeer({ ...peer, attrs: bare })).toEqual({ state: "programmed" });
    expect(await a.addPeer({ ...peer, attrs: { ...bare, backendData: null } })).toEqual({ state: "programmed" });
    expect(await routes(a)).toEqual(["198.19.2.0/24 via 198.18.0.2"]);
    // Its data comes back (another Via): the datapath follows.
    expect(await a.addPeer({ ...peer, attrs: { ...bare, backendData: { Via: "198.18.0.22" } } })).toEqual({ state: "programmed" });
    expect(await routes(a)).toEqual(["198.19.2.0/24 via 198.18.0.22"]);
    // A peer that never published is pending, quietly for the backend, once at info in the agent's log.
    const joining = peerLease({ subnet: "198.19.3.0/24", publicIP: "198.18.0.3", backendType: "via" });
    expect((await a.addPeer(joining)).state).toBe("pending");
    expect(await routes(a)).toEqual(["198.19.2.0/24 via 198.18.0.22"]);
    expect((a.agentLogger as MemoryLogger).records.filter((r) => r.level !== "debug").map((r) => `${r.level} ${r.msg}`)).toEqual([
      "info peer 198.19.3.0-24 waiting: peer 198.19.3.0-24 has not published its backend data yet (no BackendData); it is programmed when it does",
    ]);
    await a.close();
  });

  it("screens peers before the backend sees them (the peer preamble) and retracts what a peer had when its lease turns foreign", async () => {
    const a = await startTestAgent({ backends: [viaModule("via")], config: testNetConf({ Type: "via" }, "v4"), iface });
    const peer = peerLease({ subnet: "198.19.2.0/24", publicIP: "198.18.0.2", backendType: "via", backendData: { Via: "198.18.0.2" }, nodeName: "node-2" });
    await a.addPeer(peer);
    expect(await a.addPeer({ ...peer, attrs: { ...peer.attrs, backendType: "vxlan" } })).toEqual({
      state: "skipped",
      reason: 'peer node-2 (198.19.2.0-24) uses backend "vxlan", this node via: every node must run the same Backend.Type',
    });
    expect(await routes(a)).toEqual([]);
    const own = peerLease({ subnet: "198.19.1.128/25", publicIP: "198.18.0.9", backendType: "via", backendData: { Via: "198.18.0.9" } });
    expect(await a.addPeer(own)).toEqual({ state: "skipped", reason: "peer 198.19.1.128-25 claims 198.19.1.128/25, which overlaps this node's own subnet 198.19.1.0/24" });
    const v6only = peerLease({ ipv6Subnet: "2001:2:0:5::/64", publicIPv6: "2001:2::5", backendType: "via" });
    expect(await a.addPeer(v6only)).toEqual({ state: "skipped", reason: "peer 0.0.0.0-0&2001:2:0:5::-64 has no subnet in an address family this node routes (IPv4)" });
    const noIP = peerLease({ subnet: "198.19.4.0/24", backendType: "via", backendData: { Via: "198.18.0.4" } });
    expect(await a.addPeer(noIP)).toEqual({ state: "skipped", reason: "peer 198.19.4.0-24 has the IPv4 subnet 198.19.4.0/24 but no PublicIP" });
    expect(await routes(a)).toEqual([]);
    expect((a.logger as MemoryLogger).records.filter((r) => r.level === "warn")).toEqual([]);
    expect((a.agentLogger as MemoryLogger).records.filter((r) => r.level === "warn")).toHaveLength(4);
    await a.close();
  });

  it("gives the backend the author API only: no store, no writable kernel", async () => {
    const a = await startTestAgent({ backends: [viaModule("via")], config: testNetConf({ Type: "via" }, "v4"), iface });
    // The store has no DI token (the agent hands it to its core directly): nothing under the name the old one had.
    expect(a.container.isRegistered(Symbol.for("weft.subnet-manager"), true)).toBe(false);
    expect(a.container.isRegistered(KERNEL, true)).toBe(false);
    expect(a.container.isRegistered(CLOCK, true)).toBe(true);
    const view = a.container.resolve(KERNEL_VIEW);
    expect(Object.keys(view).sort()).toEqual(["getSysctl", "listAddresses", "listFdb", "listLinks", "listNeighbours", "listRoutes", "routeGet"]);
    expect((await view.listLinks()).map((l) => l.name)).toContain("eth0");
    await a.close();
  });
});

describe("FakeSubnetManager", () => {
  it("streams a snapshot of the other nodes, then added and removed events", async () => {
    const config = parseNetworkConfig(JSON.stringify(testNetConf({ Type: "x" }, "v4")));
    const p2 = peerLease({ subnet: "198.19.2.0/24", publicIP: "198.18.0.2", backendType: "x" });
    const p3 = peerLease({ subnet: "198.19.3.0/24", publicIP: "198.18.0.3", backendType: "x" });
    const sm = new FakeSubnetManager(config, {}, [p2]);
    const ac = new AbortController();
    const local = await sm.acquireLease({ backendType: "x" }, ac.signal);
    const seen: string[] = [];
    const done = (async () => {
      for await (const ev of sm.watchLeases(local, ac.signal)) {
        seen.push(ev.type === "snapshot" ? `snapshot ${ev.leases.map(subnetKey).join(",")}` : `${ev.type} ${subnetKey(ev.lease)}`);
        if (seen.length === 3) ac.abort();
      }
    })();
    await new Promise((r) => setTimeout(r, 0));
    sm.putPeer(p3);
    sm.removePeer(p2);
    await done;
    expect(seen).toEqual(["snapshot 198.19.2.0-24", "added 198.19.3.0-24", "removed 198.19.2.0-24"]);
  });

  it("refuses a local subnet a peer holds", async () => {
    const config = parseNetworkConfig(JSON.stringify(testNetConf({ Type: "x" }, "v4")));
    const sm = new FakeSubnetManager(config, { subnet: "198.19.2.0/24" }, [peerLease({ subnet: "198.19.2.0/24", backendType: "x" })]);
    await expect(sm.acquireLease({ backendType: "x" }, new AbortController().signal)).rejects.toSatisfy((e: unknown) => isWeftError(e, "STORE_CONFLICT"));
  });
});
