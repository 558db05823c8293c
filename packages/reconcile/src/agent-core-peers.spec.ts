import { type Backend, IPAddress, IPNet, type Lease, MemoryLogger, type PeerStatus, subnetKey } from "@weft/core";
import { describe, expect, it } from "vitest";
import { PeerSet } from "./agent-core-peers.js";

/** A backend that keeps the set of peers it was told about: the state the PeerSet must converge. */
class RecordingBackend implements Backend {
  peers = new Map<string, Lease>();
  failFor = new Set<string>();
  async registerSubnet() {
    return {};
  }
  async addPeer(p: Lease): Promise<PeerStatus> {
    if (this.failFor.has(subnetKey(p))) throw new Error("kernel said no");
    if (p.attrs.backendType !== "test") return { state: "skipped", reason: `backend type ${p.attrs.backendType}` };
    this.peers.set(subnetKey(p), p);
    return { state: "programmed" };
  }
  async removePeer(p: Lease) {
    this.peers.delete(subnetKey(p));
  }
  async close() {}
}

const lease = (n: number, type = "test", ip = `198.18.0.${n}`): Lease => ({
  subnet: IPNet.parse(`198.19.${n}.0/24`),
  attrs: { publicIP: IPAddress.parse(ip), backendType: type, backendData: null },
});

describe("PeerSet", () => {
  it("turns snapshots into a diff and events into adds/removes", async () => {
    const b = new RecordingBackend();
    const ps = new PeerSet(b, new MemoryLogger());
    await ps.apply({ type: "snapshot", leases: [lease(1), lease(2)] });
    expect([...b.peers.keys()].sort()).toEqual(["198.19.1.0-24", "198.19.2.0-24"]);
    await ps.apply({ type: "added", lease: lease(3) });
    await ps.apply({ type: "removed", lease: lease(1) });
    expect([...b.peers.keys()].sort()).toEqual(["198.19.2.0-24", "198.19.3.0-24"]);
    // A new snapshot is the full set: 2 is gone, 4 is new, 3 changed its public IP.
    expect(await ps.apply({ type: "snapshot", leases: [lease(3, "test", "198.18.0.33"), lease(4)] })).toBe(true);
    expect([...b.peers.keys()].sort()).toEqual(["198.19.3.0-24", "198.19.4.0-24"]);
    expect(b.peers.get("198.19.3.0-24")?.attrs.publicIP?.toString()).toBe("198.18.0.33");
    expect(ps.snapshotSeen).toBe(true);
  });
  it("does not call the backend again for an unchanged peer", async () => {
    const b = new RecordingBackend();
    const ps = new PeerSet(b, new MemoryLogger());
    await ps.apply({ type: "snapshot", leases: [lease(1)] });
    expect(await ps.apply({ type: "added", lease: lease(1) })).toBe(false);
  });
  it("keeps going past a failing or skipped peer, logs once, and retries the failed one", async () => {
    const b = new RecordingBackend();
    b.failFor.add("198.19.2.0-24");
    const log = new MemoryLogger();
    const ps = new PeerSet(b, log);
    await ps.apply({ type: "snapshot", leases: [lease(1), lease(2), lease(3, "other")] });
    expect([...b.peers.keys()]).toEqual(["198.19.1.0-24"]);
    expect(ps.counts()).toEqual({ programmed: 1, pending: 0, unreachable: 0, skipped: 1, failed: 1 });
    await ps.apply({ type: "snapshot", leases: [lease(1), lease(2), lease(3, "other")] });
    expect(log.records.filter((r) => r.level === "warn")).toHaveLength(2);
    b.failFor.clear();
    expect(await ps.retryFailed()).toBe(true);
    expect(ps.counts().programmed).toBe(2);
    expect(ps.statuses().find((s) => s.peer === "198.19.3.0-24")?.reason).toContain("backend type other");
  });
});

describe("PeerSet and restarting peers", () => {
  it("keeps a programmed peer while it re-acquires its lease without backend data, then takes the new data", async () => {
    const b = new RecordingBackend();
    const ps = new PeerSet(b, new MemoryLogger());
    const withData = (mac: string): Lease => ({ ...lease(1), attrs: { ...lease(1).attrs, backendData: { VtepMAC: mac } } });
    await ps.apply({ type: "snapshot", leases: [withData("aa")] });
    // The restarting peer's re-acquire: same subnet and type, no data yet.
    const bare = lease(1);
    expect(await ps.apply({ type: "added", lease: { ...bare, attrs: { publicIP: bare.attrs.publicIP!, backendType: "test" } } })).toBe(false);
    expect(b.peers.get("198.19.1.0-24")?.attrs.backendData).toEqual({ VtepMAC: "aa" });
    await ps.apply({ type: "added", lease: withData("bb") });
    expect(b.peers.get("198.19.1.0-24")?.attrs.backendData).toEqual({ VtepMAC: "bb" });
    // The same in the kube shape: an annotation "null" (Flannel's JSON for no data) reads as backendData null.
    expect(await ps.apply({ type: "added", lease: lease(1) })).toBe(false);
    expect(b.peers.get("198.19.1.0-24")?.attrs.backendData).toEqual({ VtepMAC: "bb" });
  });
});

describe("PeerSet log levels", () => {
  it("logs a pending peer (still starting) at info and a skipped one at warn, each once", async () => {
    const log = new MemoryLogger();
    const backend: Backend = {
      registerSubnet: async () => ({}),
      addPeer: async (p) => (p.attrs.backendData === undefined ? { state: "pending", reason: "no data yet" } : { state: "skipped", reason: "bad data" }),
      removePeer: async () => undefined,
      close: async () => undefined,
    };
    const ps = new PeerSet(backend, log);
    const bare = { subnet: IPNet.parse("198.19.1.0/24"), attrs: { backendType: "test" } };
    await ps.apply({ type: "snapshot", leases: [bare] });
    await ps.apply({ type: "snapshot", leases: [bare] });
    await ps.apply({ type: "added", lease: { ...bare, attrs: { backendType: "test", backendData: { x: 1 } } } });
    expect(log.records.map((r) => `${r.level} ${r.msg}`)).toEqual(["info peer 198.19.1.0-24 waiting: no data yet", "warn peer 198.19.1.0-24 not programmed: bad data"]);
    expect(ps.counts()).toMatchObject({ pending: 0, skipped: 1 });
  });
});
