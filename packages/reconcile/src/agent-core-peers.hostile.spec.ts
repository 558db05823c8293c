/**
 * PeerSet against hostile and conflicting leases (issue 15): a lease too deep to fingerprint, hostile PublicIPs,
 * overlapping subnets and duplicate backend identities. Final state: what the backend holds, the statuses, the
 * log lines and the skip counts.
 */
import { type Backend, IPAddress, IPNet, type JsonValue, type Lease, MemoryLogger, type Peer, type PeerScreenContext, type PeerStatus, screenPeer, subnetKey } from "@weft/core";
import { describe, expect, it } from "vitest";
import { PeerSet } from "./agent-core-peers.js";

/** Keeps the peers it holds; claims the `Mac` of its data as an identity, as vxlan claims its VtepMAC. */
class Holder implements Backend {
  peers = new Map<string, Lease>();
  async registerSubnet() {
    return {};
  }
  async addPeer(p: Peer): Promise<PeerStatus> {
    this.peers.set(subnetKey(p), p);
    return { state: "programmed" };
  }
  async removePeer(p: Lease) {
    this.peers.delete(subnetKey(p));
  }
  async close() {}
  peerIdentities(p: Peer): string[] {
    const mac = (p.attrs.backendData as { Mac?: unknown } | null | undefined)?.Mac;
    return typeof mac === "string" ? [`mac ${mac}`] : [];
  }
}

const local: PeerScreenContext = { backendType: "test", subnets: new Map([["v4", IPNet.parse("198.19.1.0/24")]]), ownAddresses: [IPAddress.parse("198.18.0.1")] };
const screen = (l: Lease) => screenPeer(l, local);
const lease = (subnet: string, ip: string, data: JsonValue = { Mac: `m-${subnet}` }): Lease => ({
  subnet: IPNet.parse(subnet),
  attrs: { publicIP: IPAddress.parse(ip), backendType: "test", backendData: data },
});
const held = (b: Holder) => [...b.peers.keys()].sort();

describe("PeerSet and hostile leases", () => {
  it("skips a lease whose data nests 5,000 levels with one line, and still programs every later peer", async () => {
    let deep: JsonValue = 1;
    for (let i = 0; i < 5_000; i++) deep = [deep];
    const b = new Holder();
    const log = new MemoryLogger();
    const ps = new PeerSet(b, log, screen);
    await ps.apply({ type: "snapshot", leases: [lease("198.19.2.0/24", "198.18.0.2"), lease("198.19.3.0/24", "198.18.0.3", deep)] });
    await ps.apply({ type: "added", lease: lease("198.19.4.0/24", "198.18.0.4") });
    // The watch re-delivers the same lease (a resync): no second line.
    await ps.apply({ type: "added", lease: lease("198.19.3.0/24", "198.18.0.3", deep) });
    expect(held(b)).toEqual(["198.19.2.0-24", "198.19.4.0-24"]);
    const warns = log.records.filter((r) => r.level === "warn").map((r) => r.msg);
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatch(/^peer 198\.19\.3\.0-24 not programmed: peer 198\.19\.3\.0-24 is malformed: BackendData is nested more than 32 levels deep/);
    expect(ps.skips.malformed).toBe(1);
  });

  it("skips loopback, multicast, broadcast and this node's own PublicIP, each with one line and a counted reason", async () => {
    const b = new Holder();
    const log = new MemoryLogger();
    const ps = new PeerSet(b, log, screen);
    const leases = [
      lease("198.19.2.0/24", "127.0.0.1"),
      lease("198.19.3.0/24", "224.0.0.1"),
      lease("198.19.4.0/24", "255.255.255.255"),
      lease("198.19.5.0/24", "198.18.0.1"),
      lease("198.19.6.0/24", "198.18.0.6"),
    ];
    for (let i = 0; i < 3; i++) await ps.apply({ type: "snapshot", leases });
    expect(held(b)).toEqual(["198.19.6.0-24"]);
    expect(log.records.filter((r) => r.level === "warn")).toHaveLength(4);
    expect(ps.skips).toMatchObject({ address: 3, "own-address": 1 });
    expect(ps.statuses().find((s) => s.peer === "198.19.5.0-24")?.reason).toContain("this node's own address");
  });

  it("settles overlapping peers the same way whatever the order: the broader claim loses, once, and wins back when alone", async () => {
    const valid = lease("198.19.38.0/24", "198.18.0.38");
    const broad = lease("198.19.38.0/23", "198.18.0.99");
    for (const order of [
      [valid, broad],
      [broad, valid],
    ]) {
      const b = new Holder();
      const log = new MemoryLogger();
      const ps = new PeerSet(b, log, screen);
      for (const l of order) await ps.apply({ type: "added", lease: l });
      await ps.apply({ type: "snapshot", leases: order });
      expect(held(b)).toEqual(["198.19.38.0-24"]);
      expect(b.peers.get("198.19.38.0-24")?.attrs.publicIP?.toString()).toBe("198.18.0.38");
      expect(ps.status("198.19.38.0-23")).toMatchObject({ state: "skipped" });
      expect(log.records.filter((r) => r.level === "warn").map((r) => r.msg)).toEqual([
        "peer 198.19.38.0-23 not programmed: peer 198.19.38.0-23 overlaps peer 198.19.38.0-24, which wins (the more specific subnet, then the lower key): fix or delete one of the two leases",
      ]);
      expect(ps.skips.conflict).toBe(1);
      // The valid peer goes away: the other one is programmed now.
      await ps.apply({ type: "removed", lease: valid });
      expect(held(b)).toEqual(["198.19.38.0-23"]);
    }
  });

  it("programs one of two peers with the same backend identity (the lower key), whatever the order", async () => {
    const a = lease("198.19.7.0/24", "198.18.0.7", { Mac: "same" });
    const c = lease("198.19.8.0/24", "198.18.0.8", { Mac: "same" });
    for (const order of [
      [a, c],
      [c, a],
    ]) {
      const b = new Holder();
      const ps = new PeerSet(b, new MemoryLogger(), screen);
      for (const l of order) await ps.apply({ type: "added", lease: l });
      expect(held(b)).toEqual(["198.19.7.0-24"]);
      expect(ps.status("198.19.8.0-24")).toMatchObject({ state: "skipped" });
      expect((ps.status("198.19.8.0-24") as { reason: string }).reason).toContain("shares a backend identity with peer 198.19.7.0-24");
    }
  });

  it("holds 10,000 garbage leases and 1 MB of data without programming any, and programs the valid peers among them", async () => {
    const b = new Holder();
    const log = new MemoryLogger();
    const ps = new PeerSet(b, log, screen);
    const garbage: Lease[] = [];
    for (let i = 0; i < 10_000; i++) {
      const net = `198.${20 + (i >> 8)}.${i & 255}.0/24`;
      garbage.push(lease(net, i % 2 ? "127.0.0.1" : "0.0.0.1", i === 0 ? { Pad: "x".repeat(1_000_000) } : { Mac: `g${i}` }));
    }
    const valid = [lease("198.19.2.0/24", "198.18.0.2"), lease("198.19.3.0/24", "198.18.0.3")];
    const before = process.memoryUsage().heapUsed;
    await ps.apply({ type: "snapshot", leases: [...garbage, ...valid] });
    await ps.apply({ type: "snapshot", leases: [...garbage, ...valid] });
    expect(held(b)).toEqual(["198.19.2.0-24", "198.19.3.0-24"]);
    expect(ps.counts()).toMatchObject({ programmed: 2, skipped: 10_000 });
    expect(log.records.filter((r) => r.level === "warn")).toHaveLength(10_000);
    // No log line echoes the megabyte.
    expect(Math.max(...log.records.map((r) => r.msg.length))).toBeLessThan(400);
    // Bounded: far below what keeping 10,000 copies of the big lease's text would take.
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(200 * 1024 * 1024);
  });
});
