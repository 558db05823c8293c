/**
 * The peer preamble, once: screenPeer refuses what no backend can use (arrived early, another type, an overlap,
 * no family in common) and Peer.endpoint gives a family's PublicIP and parsed data or the status to return.
 */
import { describe, expect, it } from "vitest";
import { WeftError } from "./errors.js";
import { IPAddress, IPNet } from "./ip.js";
import type { JsonValue, Lease } from "./lease.js";
import { Peer, type PeerScreenContext, peerSkipReason, screenPeer } from "./peer-view.js";

const local: PeerScreenContext = { backendType: "vxlan", subnets: new Map([["v4", IPNet.parse("198.19.1.0/24")], ["v6", IPNet.parse("2001:2:0:1::/64")]]) };
const v4only: PeerScreenContext = { backendType: "vxlan", subnets: new Map([["v4", IPNet.parse("198.19.1.0/24")]]) };

const lease = (attrs: Partial<Lease["attrs"]> = {}, subnets: { v4?: string; v6?: string } = { v4: "198.19.2.0/24", v6: "2001:2:0:2::/64" }): Lease => ({
  ...(subnets.v4 ? { subnet: IPNet.parse(subnets.v4) } : {}),
  ...(subnets.v6 ? { ipv6Subnet: IPNet.parse(subnets.v6) } : {}),
  nodeName: "node-2",
  attrs: { backendType: "vxlan", publicIP: IPAddress.parse("198.18.0.2"), publicIPv6: IPAddress.parse("2001:2::2"), backendData: { Mac: "a" }, backendV6Data: { Mac: "b" }, ...attrs },
});

const macSchema = {
  parse(input: unknown, path: string): string {
    const mac = (input as { Mac?: unknown }).Mac;
    if (typeof mac !== "string") throw new WeftError("PEER_DATA_INVALID", `${path}: Mac ${JSON.stringify(mac)} is not a string`);
    return mac;
  },
};

const refusal = (r: ReturnType<typeof screenPeer>) => ("status" in r ? r.status : undefined);

describe("screenPeer", () => {
  it("passes a usable peer with the families both nodes route", () => {
    const r = screenPeer(lease(), local);
    expect("peer" in r && [...r.peer.subnets].map(([f, s]) => `${f} ${s}`)).toEqual(["v4 198.19.2.0/24", "v6 2001:2:0:2::/64"]);
    const only4 = screenPeer(lease(), v4only);
    expect("peer" in only4 && [...only4.peer.subnets.keys()]).toEqual(["v4"]);
    expect("peer" in only4 && only4.peer.key).toBe("198.19.2.0-24&2001:2:0:2::-64");
  });

  it("refuses, with a reason naming the peer and the fix, what no backend can use", () => {
    expect(refusal(screenPeer(lease(), undefined))).toEqual({
      state: "skipped",
      reason: "peer node-2 (198.19.2.0-24&2001:2:0:2::-64) arrived before registerSubnet; it is retried when the agent re-adds peers",
    });
    expect(refusal(screenPeer(lease({ backendType: "host-gw" }), local))?.reason).toBe(
      'peer node-2 (198.19.2.0-24&2001:2:0:2::-64) uses backend "host-gw", this node vxlan: every node must run the same Backend.Type',
    );
    // Case does not matter, as for Backend.Type.
    expect("peer" in screenPeer(lease({ backendType: "VXLAN" }), local)).toBe(true);
    expect(refusal(screenPeer(lease({}, { v4: "198.19.1.128/25" }), local))?.reason).toBe("peer node-2 (198.19.1.128-25) claims 198.19.1.128/25, which overlaps this node's own subnet 198.19.1.0/24");
    expect(refusal(screenPeer(lease({}, { v6: "2001:2:0:5::/64" }), v4only))?.reason).toBe(
      "peer node-2 (0.0.0.0-0&2001:2:0:5::-64) has no subnet in an address family this node routes (IPv4)",
    );
    expect(refusal(screenPeer(lease({}, { v6: "2001:2:0:5::/64" }), { backendType: "vxlan", subnets: new Map() }))?.reason).toMatch(/this node routes \(\)$/);
  });
});

describe("Peer.endpoint", () => {
  const peer = (attrs: Partial<Lease["attrs"]> = {}) => Peer.of(lease(attrs));

  it("gives a family's PublicIP and data parsed by the backend's schema", () => {
    expect(peer().endpoint("v6", macSchema)).toEqual({ family: "v6", publicIP: IPAddress.parse("2001:2::2"), data: "b" });
    // Without a schema the data is not looked at (host-gw publishes JSON null).
    expect(peer({ backendData: null }).endpoint("v4")).toEqual({ family: "v4", publicIP: IPAddress.parse("198.18.0.2"), data: null });
  });

  it("says why not: no PublicIP skipped, no data yet (absent or JSON null) pending, malformed data skipped", () => {
    const { publicIP: _ip, ...noIP } = lease().attrs;
    expect(Peer.of({ ...lease(), attrs: noIP }).endpoint("v4", macSchema)).toEqual({
      status: { state: "skipped", reason: "peer node-2 (198.19.2.0-24&2001:2:0:2::-64) has the IPv4 subnet 198.19.2.0/24 but no PublicIP" },
    });
    const { backendV6Data: _d, ...noData } = lease().attrs;
    const pending = { state: "pending", reason: "peer node-2 (198.19.2.0-24&2001:2:0:2::-64) has not published its backend data yet (no BackendV6Data); it is programmed when it does" };
    expect(Peer.of({ ...lease(), attrs: noData }).endpoint("v6", macSchema)).toEqual({ status: pending });
    expect(peer({ backendV6Data: null }).endpoint("v6", macSchema)).toEqual({ status: pending });
    expect(peer({ backendData: { Mac: 7 } }).endpoint("v4", macSchema)).toEqual({
      status: { state: "skipped", reason: "peer node-2 (198.19.2.0-24&2001:2:0:2::-64) BackendData: Mac 7 is not a string" },
    });
  });

  it("is a Lease: the same subnets, attributes and node name", () => {
    const l = lease();
    const p = Peer.of(l);
    expect([p.subnet, p.ipv6Subnet, p.attrs, p.nodeName]).toEqual([l.subnet, l.ipv6Subnet, l.attrs, l.nodeName]);
    expect(p.skipped("is odd")).toEqual({ status: { state: "skipped", reason: "peer node-2 (198.19.2.0-24&2001:2:0:2::-64) is odd" } });
  });
});

describe("screenPeer: hostile leases (issue 15)", () => {
  const withOwn: PeerScreenContext = { ...local, ownAddresses: [IPAddress.parse("198.18.0.1"), IPAddress.parse("2001:2::1")] };
  const reasonOf = (attrs: Partial<Lease["attrs"]>, subnets?: { v4?: string; v6?: string }) => refusal(screenPeer(lease(attrs, subnets), withOwn));

  it("skips a PublicIP that is not a usable unicast address, naming the field, the address and the fix", () => {
    for (const [ip, what] of [
      ["127.0.0.1", "a loopback address"],
      ["224.0.0.1", "a multicast address"],
      ["255.255.255.255", "the broadcast address"],
      ["0.0.0.1", "this network"],
      ["240.0.0.9", "class E"],
    ] as const) {
      const r = reasonOf({ publicIP: IPAddress.parse(ip) }, { v4: "198.19.2.0/24" });
      expect(r?.state, ip).toBe("skipped");
      expect(r?.reason, ip).toContain(`has PublicIP ${ip}, `);
      expect(r?.reason, ip).toContain(what);
      expect(r?.reason, ip).toContain("--public-ip");
      expect(peerSkipReason(r!)).toBe("address");
    }
    for (const ip of ["::1", "ff02::1", "fe80::1", "::ffff:198.18.0.2"]) {
      const r = reasonOf({ publicIPv6: IPAddress.parse(ip) }, { v6: "2001:2:0:2::/64" });
      expect(r?.state, ip).toBe("skipped");
      expect(r?.reason, ip).toContain(`has PublicIPv6 ${IPAddress.parse(ip)}, `);
    }
    // The unspecified IPv6 address arrives as a lease value and is read as "no PublicIPv6", never programmed.
    const unspecified = Peer.of(lease({ publicIPv6: undefined }, { v6: "2001:2:0:2::/64" }));
    expect("status" in unspecified.endpoint("v6")).toBe(true);
  });

  it("skips a peer advertising this node's own address, in either family", () => {
    const r = reasonOf({ publicIP: IPAddress.parse("198.18.0.1") });
    expect(r?.reason).toBe(
      "peer node-2 (198.19.2.0-24&2001:2:0:2::-64) has PublicIP 198.18.0.1, which is this node's own address: it would be routed to this node itself (a stale or copied lease?); delete that lease or fix its node's --public-ip",
    );
    expect(peerSkipReason(r!)).toBe("own-address");
    expect(reasonOf({ publicIPv6: IPAddress.parse("2001:2::1") })?.state).toBe("skipped");
    // An address of a family this node does not route is not looked at.
    expect("peer" in screenPeer(lease({ publicIPv6: IPAddress.parse("::1") }), { ...v4only, ownAddresses: [] })).toBe(true);
  });

  it("skips backend data nested 5,000 levels deep or larger than 64 KiB before anything walks it", () => {
    let deep: JsonValue = 1;
    for (let i = 0; i < 5_000; i++) deep = [deep];
    const r = reasonOf({ backendData: deep });
    expect(r?.reason).toMatch(/^peer node-2 \(198\.19\.2\.0-24&2001:2:0:2::-64\) is malformed: BackendData is nested more than 32 levels deep/);
    expect(peerSkipReason(r!)).toBe("malformed");
    const big = reasonOf({ backendV6Data: { Mac: "x".repeat(1_000_000) } });
    expect(big?.reason).toMatch(/BackendV6Data is more than 65536 characters of JSON/);
    expect(big!.reason.length).toBeLessThan(300);
  });

  it("still passes a usable peer with every guard in place", () => {
    expect("peer" in screenPeer(lease(), withOwn)).toBe(true);
  });
});
