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
  type BackendModule,
  DATAPATH,
  type Datapath,
  type Lease,
  type LocalLease,
  type PeerStatus,
  WeftError,
  isWeftError,
  parseNetworkConfig,
  subnetKey,
} from "@weft/core";
import type { KernelPort, OpResult } from "@weft/kernel";
import { FakeKernel } from "@weft/kernel-testing";
import { RECONCILER_CONTRIBUTION, type ObjectReconciler } from "@weft/reconcile";
import { inject, injectable } from "tsyringe";
import { describe, expect, it } from "vitest";
import { FakeSubnetManager } from "./fake-subnet-manager.js";
import { TEST_TOPOLOGY, peerLease, testNetConf } from "./leases.js";
import { snapshotKernel } from "./kernel-snapshot.js";
import { startTestAgent } from "./test-agent.js";

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
