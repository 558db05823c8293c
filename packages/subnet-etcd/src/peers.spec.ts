import { IPAddress, IPNet, encodeLeaseAttrs, parseNetworkConfig, subnetKey } from "@weft/core";
import { describe, expect, it } from "vitest";
import { decodePeer } from "./peers.js";
import type { StoredKV } from "./store.js";

const P = "/coreos.com/network/subnets/";
const kv = (name: string, value: string, lease = "7587869543466917383"): StoredKV => ({
  key: P + name,
  value,
  createRevision: 5n,
  modRevision: 9n,
  lease,
});
const v4 = parseNetworkConfig('{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}}');
const ds = parseNetworkConfig('{"Network":"198.19.0.0/16","EnableIPv6":true,"IPv6Network":"2001:2::/48","Backend":{"Type":"vxlan"}}');

// Values exactly as flanneld (Go encoding/json of lease.LeaseAttrs) writes them.
const FLANNEL_V4 = '{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:2e:1f:00:aa:01"}}';
const FLANNEL_DS =
  '{"PublicIP":"198.18.0.2","PublicIPv6":"2001:2:ff::2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:2e:1f:00:aa:02"},"BackendV6Data":{"VNI":1,"VtepMAC":"c6:2e:1f:00:aa:03"}}';
const FLANNEL_HOSTGW = '{"PublicIP":"198.18.0.3","PublicIPv6":null,"BackendType":"host-gw"}';

describe("Flannel lease entries", () => {
  it("reads a Flannel-written IPv4 lease and writes it back byte for byte", () => {
    const d = decodePeer(kv("198.19.1.0-24", FLANNEL_V4), P, v4);
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect(d.lease.subnet?.toString()).toBe("198.19.1.0/24");
    expect(d.lease.ipv6Subnet).toBeUndefined();
    expect(d.lease.attrs.publicIP?.toString()).toBe("198.18.0.1");
    expect(d.lease.attrs.publicIPv6).toBeUndefined();
    expect(d.lease.attrs.backendType).toBe("vxlan");
    expect(d.lease.attrs.backendData).toEqual({ VNI: 1, VtepMAC: "c6:2e:1f:00:aa:01" });
    expect(d.lease.revision).toBe("9");
    expect(subnetKey(d.lease)).toBe("198.19.1.0-24");
    expect(encodeLeaseAttrs(d.lease.attrs)).toBe(FLANNEL_V4);
  });

  it("reads a dual-stack Flannel lease (key with &ipv6-len, BackendV6Data) and writes it back", () => {
    const d = decodePeer(kv("198.19.2.0-24&2001:2:0:2::-64", FLANNEL_DS), P, ds);
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect(d.lease.ipv6Subnet?.toString()).toBe("2001:2:0:2::/64");
    expect(d.lease.attrs.publicIPv6?.toString()).toBe("2001:2:ff::2");
    expect(d.lease.attrs.backendV6Data).toEqual({ VNI: 1, VtepMAC: "c6:2e:1f:00:aa:03" });
    expect(subnetKey(d.lease)).toBe("198.19.2.0-24&2001:2:0:2::-64");
    expect(encodeLeaseAttrs(d.lease.attrs)).toBe(FLANNEL_DS);
  });

  it("reads a lease without BackendData (host-gw) and writes it back", () => {
    const d = decodePeer(kv("198.19.3.0-24", FLANNEL_HOSTGW), P, v4);
    expect(d.ok && encodeLeaseAttrs(d.lease.attrs)).toBe(FLANNEL_HOSTGW);
  });

  it("writes what Flannel writes for a Weft lease", () => {
    const attrs = { publicIP: IPAddress.parse("198.18.0.1"), backendType: "vxlan", backendData: { VNI: 1, VtepMAC: "c6:2e:1f:00:aa:01" } };
    expect(encodeLeaseAttrs(attrs)).toBe(FLANNEL_V4);
    expect(subnetKey({ subnet: IPNet.parse("198.19.1.0/24"), ipv6Subnet: IPNet.parse("2001:2:0:2::/64") })).toBe("198.19.1.0-24&2001:2:0:2::-64");
  });

  it.each([
    ["bad JSON", "198.19.4.0-24", '{"PublicIP":"198.18.0.4",', /not JSON/],
    ["bad IP", "198.19.4.0-24", '{"PublicIP":"198.18.0.300","BackendType":"vxlan"}', /PublicIP "198.18.0.300" is not an IPv4 address/],
    ["wrong family of public IP", "198.19.4.0-24", '{"PublicIP":"2001:2::4","BackendType":"vxlan"}', /not an IPv4 address/],
    ["bad key", "198.19.4.0-24x", FLANNEL_V4, /bad subnet key "198.19.4.0-24x"/],
    ["key with host bits", "198.19.4.7-24", FLANNEL_V4, /bad subnet key/],
    ["missing CIDR for the network's family", "0.0.0.0-0&2001:2:0:4::-64", FLANNEL_V4, /no IPv4 subnet/],
    ["subnet outside the network", "10.0.4.0-24", FLANNEL_V4, /10.0.4.0\/24 is outside Network 198.19.0.0\/16/],
    ["not an object", "198.19.4.0-24", "[1,2]", /must be a JSON object/],
  ])("rejects %s with a reason", (_what, name, value, reason) => {
    const d = decodePeer(kv(name, value), P, v4);
    expect(d.ok).toBe(false);
    if (!d.ok) expect(d.reason).toMatch(reason);
  });

  it("accepts a v4-only peer on a dual-stack network (its v6 part is simply absent)", () => {
    const d = decodePeer(kv("198.19.5.0-24", FLANNEL_V4), P, ds);
    expect(d.ok).toBe(true);
  });
});
