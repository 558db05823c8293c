/**
 * Property-based tests of the peer preamble over hostile leases (issue 15): decodeLeaseAttrs on hostile JSON
 * text (only its TypeError, never a hang, accepted values round-trip, case-insensitive keys with the last one
 * winning as in Go's encoding/json), and screenPeer on hostile leases (never throws, always a typed result whose
 * reason is one bounded line) and on valid peers (always accepted).
 */
import { fc, fuzz, hostileJson, hostileJsonText, hostileString } from "@weft/fuzz";
import { describe, expect, it } from "vitest";
import { IPAddress, IPNet } from "./ip.js";
import { type JsonValue, type Lease, type LeaseAttrs, decodeLeaseAttrs, encodeLeaseAttrs } from "./lease.js";
import { type PeerScreenContext, screenPeer } from "./peer-view.js";

const OWN_V4 = "198.18.0.1";
const OWN_V6 = "2001:2::1";
const local: PeerScreenContext = {
  backendType: "vxlan",
  subnets: new Map([
    ["v4", IPNet.parse("198.19.1.0/24")],
    ["v6", IPNet.parse("2001:2:0:101::/64")],
  ]),
  ownAddresses: [IPAddress.parse(OWN_V4), IPAddress.parse(OWN_V6)],
};

const anyV4 = fc.nat({ max: 0xffffffff }).map((n) => IPAddress.fromBigint("v4", BigInt(n)));
const anyV6 = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }).map((n) => IPAddress.fromBigint("v6", n));
const special = fc.constantFrom("0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", OWN_V4, "::", "::1", "ff02::1", "fe80::1", "::ffff:198.18.0.2", OWN_V6).map((s) => IPAddress.parse(s));
const anyNet = (family: "v4" | "v6") =>
  fc.tuple(family === "v4" ? anyV4 : anyV6, fc.integer({ min: 0, max: family === "v4" ? 32 : 128 })).map(([ip, p]) => IPNet.of(ip, p));

/** Leases an attacker could write: any subnets, any addresses (the special ones often), any data, any type. */
const hostileLease: fc.Arbitrary<Lease> = fc.record(
  {
    subnet: anyNet("v4"),
    ipv6Subnet: anyNet("v6"),
    publicIP: fc.oneof(anyV4, special, anyV6),
    publicIPv6: fc.oneof(anyV6, special, anyV4),
    backendType: fc.oneof(fc.constant("vxlan"), fc.constant("VXLAN"), hostileString()),
    backendData: hostileJson(),
    backendV6Data: hostileJson(),
    nodeName: hostileString(),
  },
  { requiredKeys: ["backendType"] },
).map((r) => ({
  ...(r.subnet ? { subnet: r.subnet } : {}),
  ...(r.ipv6Subnet ? { ipv6Subnet: r.ipv6Subnet } : {}),
  ...(r.nodeName !== undefined ? { nodeName: r.nodeName } : {}),
  attrs: {
    backendType: r.backendType,
    ...(r.publicIP ? { publicIP: r.publicIP } : {}),
    ...(r.publicIPv6 ? { publicIPv6: r.publicIPv6 } : {}),
    ...(r.backendData !== undefined ? { backendData: r.backendData as JsonValue } : {}),
    ...(r.backendV6Data !== undefined ? { backendV6Data: r.backendV6Data as JsonValue } : {}),
  },
}));

/** Peers that are fine: another node's /24 and /64 in the pod networks, unicast addresses in the test ranges. */
const validLease: fc.Arbitrary<Lease> = fc
  .record({
    n: fc.integer({ min: 2, max: 255 }),
    host: fc.integer({ min: 2, max: 65_534 }),
    v4: fc.boolean(),
    v6: fc.boolean(),
    data: fc.jsonValue({ maxDepth: 3 }),
  })
  .filter((r) => r.v4 || r.v6)
  .map((r) => ({
    ...(r.v4 ? { subnet: IPNet.parse(`198.19.${r.n}.0/24`) } : {}),
    ...(r.v6 ? { ipv6Subnet: IPNet.parse(`2001:2:0:1${r.n.toString(16).padStart(2, "0")}::/64`) } : {}),
    attrs: {
      backendType: "vxlan",
      ...(r.v4 ? { publicIP: IPAddress.fromBigint("v4", IPAddress.parse("198.18.0.0").value + BigInt(r.host)) } : {}),
      ...(r.v6 ? { publicIPv6: IPAddress.fromBigint("v6", IPAddress.parse("2001:2::").value + BigInt(r.host)) } : {}),
      backendData: r.data as JsonValue,
    },
  }));

/** 10,000 cases take a few seconds alone; a shared CI machine may take several times that (the kit detects hangs per case). */
const SLOW = 120_000;

const LEASE_KEYS = ["PublicIP", "PublicIPv6", "BackendType", "BackendData", "BackendV6Data"];

describe("peer preamble fuzz", () => {
  it("decodeLeaseAttrs: only its TypeError, never a hang, accepted values round-trip", () => {
    fuzz("core.decodeLeaseAttrs", hostileJsonText(LEASE_KEYS), (text) => {
      let attrs: LeaseAttrs;
      try {
        attrs = decodeLeaseAttrs(text);
      } catch (err) {
        expect(err).toBeInstanceOf(TypeError);
        expect((err as Error).message.length).toBeLessThan(400);
        return;
      }
      // Compared as text: JSON has no -0, so -0 and 0 are the same value on the wire.
      expect(encodeLeaseAttrs(decodeLeaseAttrs(encodeLeaseAttrs(attrs)))).toBe(encodeLeaseAttrs(attrs));
    });
  }, SLOW);

  it("decodeLeaseAttrs: of several keys matching a field case-insensitively, the last in the text wins (Go)", () => {
    const variant = fc.constantFrom("BackendType", "backendtype", "BACKENDTYPE", "backendType", "PublicIP");
    const entries = fc.array(fc.tuple(variant, fc.constantFrom("vxlan", "host-gw", "wireguard", "")), { minLength: 1, maxLength: 6 });
    fuzz("core.decodeLeaseAttrs.lastKeyWins", entries, (list) => {
      const text = "{" + list.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(k === "PublicIP" ? "198.18.0.9" : v)}`).join(",") + "}";
      const matching = list.filter(([k]) => k.toLowerCase() === "backendtype");
      expect(decodeLeaseAttrs(text).backendType).toBe(matching.length ? matching[matching.length - 1]![1] : "");
    });
  }, SLOW);

  it("screenPeer: never throws on a hostile lease, and its refusal is one bounded line", () => {
    fuzz("core.screenPeer.hostile", hostileLease, (lease) => {
      const r = screenPeer(lease, local);
      if ("peer" in r) {
        // Whatever passes has a usable unicast PublicIP of each shared family that has one, never ours.
        for (const [family] of r.peer.subnets) {
          const ip = r.peer.publicIP(family);
          if (!ip) continue;
          expect(ip.family).toBe(family);
          expect(local.ownAddresses!.some((a) => a.equals(ip))).toBe(false);
          expect(["127.", "224.", "255.255.255.255", "0."].some((p) => ip.toString().startsWith(p)) && family === "v4").toBe(false);
        }
        return;
      }
      expect(["skipped", "pending", "unreachable"]).toContain(r.status.state);
      expect(typeof r.status.reason).toBe("string");
      expect(r.status.reason).not.toMatch(/\n/);
    });
  }, SLOW);

  it("screenPeer: every valid peer is accepted", () => {
    fuzz("core.screenPeer.valid", validLease, (lease) => {
      const r = screenPeer(lease, local);
      expect("peer" in r ? "peer" : r.status.reason).toBe("peer");
    });
  }, SLOW);
});
