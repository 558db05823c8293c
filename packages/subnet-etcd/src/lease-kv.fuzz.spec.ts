/**
 * Properties of what an etcd lease entry is read with (issue 15): the key `<prefix>/subnets/198.18.1.0-24`
 * (core's parseSubnetKey, through decodePeer) and the LeaseAttrs JSON value (core's decodeLeaseAttrs). A hostile
 * entry is skipped with a bounded reason, never thrown; valid entries round-trip through subnetKey and
 * encodeLeaseAttrs; duplicate keys differing in case resolve as Go's encoding/json (Flannel) does: the last wins.
 */
import { IPAddress, IPNet, decodeLeaseAttrs, encodeLeaseAttrs, parseSubnetKey, subnetKey, type LeaseAttrs } from "@weft/core";
import { fc, fuzz, hostileJson, hostileJsonText, hostileString } from "@weft/fuzz";
import { describe, expect, it } from "vitest";
import { decodePeer } from "./peers.js";
import type { StoredKV } from "./store.js";

const PREFIX = "/weft.io/network/subnets/";
const kv = (key: string, value: string): StoredKV => ({ key, value, createRevision: 5n, modRevision: 7n, lease: "42" });

// Aligned subnets of 198.18.0.0/15 and 2001:2::/48 (/24 to /30, and /64).
const v4Subnet = fc.tuple(fc.integer({ min: 0, max: 511 }), fc.integer({ min: 24, max: 30 }), fc.nat()).map(([b, len, n]) => {
  const last = (n % (1 << (len - 24))) << (32 - len);
  return IPNet.parse(`198.${18 + (b >> 8)}.${b & 255}.${last}/${len}`);
});
const v6Subnet = fc.integer({ min: 0, max: 0xffff }).map((b) => IPNet.parse(`2001:2:0:${b.toString(16)}::/64`));
const nets = fc.oneof(
  v4Subnet.map((subnet) => ({ subnet })),
  v6Subnet.map((ipv6Subnet) => ({ ipv6Subnet })),
  fc.tuple(v4Subnet, v6Subnet).map(([subnet, ipv6Subnet]) => ({ subnet, ipv6Subnet })),
);
const attrs: fc.Arbitrary<LeaseAttrs> = fc.record(
  {
    publicIP: fc.tuple(fc.integer({ min: 1, max: 254 }), fc.integer({ min: 1, max: 254 })).map(([a, b]) => IPAddress.parse(`198.18.${a}.${b}`)),
    publicIPv6: fc.integer({ min: 1, max: 0xffff }).map((n) => IPAddress.parse(`2001:2::${n.toString(16)}`)),
    backendType: fc.constantFrom("vxlan", "host-gw", "wireguard", "ipsec", ""),
    backendData: fc.jsonValue({ maxDepth: 2 }),
  },
  { requiredKeys: ["backendType"] },
);

describe("etcd lease keys and values (fuzz)", () => {
  it("never throws on a hostile key or value; a skipped entry gets a bounded one-line reason", () => {
    const key = fc.oneof(
      { weight: 2, arbitrary: hostileString(48).map((s) => PREFIX + s) },
      { weight: 2, arbitrary: nets.map((n) => PREFIX + subnetKey(n)) },
      { weight: 1, arbitrary: fc.tuple(nets, fc.nat(), fc.string({ maxLength: 2, unit: "binary" })).map(([n, i, s]) => { const k = subnetKey(n); const at = i % (k.length + 1); return PREFIX + k.slice(0, at) + s + k.slice(at + 1); }) },
      { weight: 1, arbitrary: fc.constantFrom(PREFIX + "198.18.1.0-24&", PREFIX + "0.0.0.0-0", PREFIX + "198.18.1.7-24", PREFIX + "198.18.1.0-33", "/elsewhere/198.18.1.0-24", PREFIX + "198.18.1.0-24&198.18.2.0-24") },
    );
    const value = fc.oneof(
      { weight: 3, arbitrary: hostileJsonText(["PublicIP", "PublicIPv6", "BackendType", "BackendData", "BackendV6Data"]) },
      { weight: 2, arbitrary: hostileJson().map((v) => { try { return JSON.stringify({ PublicIP: "198.18.0.9", BackendType: "vxlan", BackendData: v }) ?? "null"; } catch { return "{}"; } }) },
      { weight: 2, arbitrary: attrs.map(encodeLeaseAttrs) },
      { weight: 1, arbitrary: hostileString(64) },
    );
    fuzz("subnet-etcd: decodePeer never throws on hostile entries", fc.tuple(key, value), ([k, v]) => {
      const d = decodePeer(kv(k, v), PREFIX);
      if (!d.ok) {
        expect(d.reason).not.toMatch(/[\n\r]/);
        expect(d.reason.length).toBeLessThan(400);
      }
    });
  }, 60_000);

  it("round-trips valid entries through subnetKey and encodeLeaseAttrs", () => {
    fuzz("subnet-etcd: lease entries round-trip", fc.tuple(nets, attrs), ([n, a]) => {
      const key = subnetKey(n);
      const d = decodePeer(kv(PREFIX + key, encodeLeaseAttrs(a)), PREFIX);
      expect(d.ok).toBe(true);
      if (!d.ok) return;
      expect(subnetKey(d.lease)).toBe(key);
      expect(parseSubnetKey(key)).toEqual(n);
      expect(encodeLeaseAttrs(d.lease.attrs)).toBe(encodeLeaseAttrs(a));
      expect(d.lease.revision).toBe("7");
    });
  }, 60_000);

  it("resolves duplicate keys that differ in case as Flannel does: the last one in the text wins", () => {
    const variant = fc.constantFrom("PublicIP", "publicip", "PUBLICIP", "publicIP", "Publicip");
    const entry = fc.tuple(variant, fc.integer({ min: 1, max: 254 }));
    fuzz("subnet-etcd: lease value keys, last case-insensitive match wins", fc.array(entry, { minLength: 1, maxLength: 5 }), (entries) => {
      // Built by hand: an object literal would keep only one of two identical keys.
      const text = "{" + entries.map(([k, n]) => `${JSON.stringify(k)}:"198.18.7.${n}"`).join(",") + ',"BackendType":"vxlan"}';
      // JSON.parse keeps the last of identical keys, in the position of the first; Go assigns in text order.
      const last = entries[entries.length - 1]!;
      expect(decodeLeaseAttrs(text).publicIP?.toString()).toBe(`198.18.7.${last[1]}`);
    });
  });
});
