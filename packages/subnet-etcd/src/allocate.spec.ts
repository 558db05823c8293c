import { IPAddress, IPNet, type LeaseAttrs, type NetworkConfig, WeftError, parseNetworkConfig } from "@weft/core";
import { describe, expect, it } from "vitest";
import { type ExistingLease, allocateSubnet, freeCandidates } from "./allocate.js";

const cfg = (json: object): NetworkConfig => parseNetworkConfig(JSON.stringify({ Backend: { Type: "vxlan" }, ...json }), { source: "test" });
const v4net = cfg({ Network: "198.19.0.0/16" }); // /24s, SubnetMin 198.19.1.0, SubnetMax 198.19.255.0
const net = (s: string) => IPNet.parse(s, true);
const ip = (s: string) => IPAddress.parse(s);
const attrs = (publicIP?: string, publicIPv6?: string): LeaseAttrs => ({
  backendType: "vxlan",
  ...(publicIP ? { publicIP: ip(publicIP) } : {}),
  ...(publicIPv6 ? { publicIPv6: ip(publicIPv6) } : {}),
});
const lease = (key: string, subnet: string | undefined, a?: LeaseAttrs, reserved = false, ipv6Subnet?: string): ExistingLease => ({
  key,
  ...(subnet ? { subnet: net(subnet) } : {}),
  ...(ipv6Subnet ? { ipv6Subnet: net(ipv6Subnet) } : {}),
  ...(a ? { attrs: a } : {}),
  reserved,
});
const first = () => 0;
const last = () => 0.999999;

describe("allocateSubnet", () => {
  it("reuses the lease that carries this node's public IP", () => {
    const existing = [lease("a", "198.19.9.0/24", attrs("198.18.0.9")), lease("b", "198.19.7.0/24", attrs("198.18.0.5"))];
    const a = allocateSubnet(v4net, existing, { publicIP: ip("198.18.0.5") }, first);
    expect(a.kind).toBe("reuse");
    if (a.kind === "reuse") expect(a.lease.key).toBe("b");
  });

  it("prefers a matching reservation to a matching TTL lease, and never marks a reservation for deletion", () => {
    const existing = [
      lease("ttl", "198.19.7.0/24", attrs("198.18.0.5")),
      lease("res", "198.19.8.0/24", attrs("198.18.0.5"), true),
      lease("res-bad", "198.19.0.0/25", attrs("198.18.0.5"), true), // wrong length: kept, not reused
    ];
    const a = allocateSubnet(v4net, existing, { publicIP: ip("198.18.0.5") }, first);
    expect(a.kind === "reuse" && a.lease.key).toBe("res");
    expect(a.incompatible.map((e) => e.key)).toEqual([]);
  });

  it("reports our own leases that no longer fit the config and allocates a new subnet", () => {
    const existing = [
      lease("old-len", "198.19.4.0/23", attrs("198.18.0.5")), // SubnetLen changed
      lease("old-range", "198.19.0.0/24", attrs("198.18.0.5")), // below SubnetMin
    ];
    const a = allocateSubnet(v4net, existing, { publicIP: ip("198.18.0.5") }, first);
    expect(a.kind).toBe("new");
    expect(a.incompatible.map((e) => e.key).sort()).toEqual(["old-len", "old-range"]);
    // Both still occupy their blocks until the caller deletes them.
    if (a.kind === "new") expect(a.subnet?.toString()).toBe("198.19.1.0/24");
  });

  it("takes the previous subnet when it fits and nobody holds it", () => {
    const a = allocateSubnet(v4net, [lease("x", "198.19.1.0/24", attrs("198.18.0.1"))], { previousSubnet: net("198.19.42.0/24") }, first);
    expect(a.kind === "new" && a.subnet?.toString()).toBe("198.19.42.0/24");
    expect(a.kind === "new" && a.source.v4).toBe("previous");
  });

  it("ignores a previous subnet that is taken (even by a larger block) or does not fit", () => {
    const held = [lease("x", "198.19.42.0/23", attrs("198.18.0.1"))];
    const taken = allocateSubnet(v4net, held, { previousSubnet: net("198.19.43.0/24") }, first);
    expect(taken.kind === "new" && taken.source.v4).toBe("random");
    expect(taken.kind === "new" && taken.subnet?.toString()).toBe("198.19.1.0/24");
    const outside = allocateSubnet(v4net, [], { previousSubnet: net("198.19.0.0/24") }, first);
    expect(outside.kind === "new" && outside.subnet?.toString()).toBe("198.19.1.0/24");
    const wrongLen = allocateSubnet(v4net, [], { previousSubnet: net("198.19.50.0/25") }, first);
    expect(wrongLen.kind === "new" && wrongLen.source.v4).toBe("random");
  });

  it("picks at random among the first 100 free subnets, skipping every held block", () => {
    const existing = [
      lease("a", "198.19.1.0/24", attrs("198.18.0.1")),
      lease("b", "198.19.2.0/23", attrs("198.18.0.2")), // a Flannel lease of another length covers .2 and .3
      lease("c", "198.19.5.0/24", undefined), // unreadable attributes still occupy the block
      lease("r", "198.19.6.0/24", attrs("198.18.0.3"), true),
    ];
    const lo = allocateSubnet(v4net, existing, {}, first);
    expect(lo.kind === "new" && lo.subnet?.toString()).toBe("198.19.4.0/24");
    const hi = allocateSubnet(v4net, existing, {}, last);
    // Free ones are .4, .7, .8, ...: the 100th free candidate is 198.19.105.0, never beyond.
    expect(hi.kind === "new" && hi.subnet?.toString()).toBe("198.19.105.0/24");
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const a = allocateSubnet(v4net, existing, {}, () => i / 200);
      if (a.kind === "new") seen.add(a.subnet!.toString());
    }
    expect(seen.size).toBe(100);
    for (const taken of ["198.19.1.0/24", "198.19.2.0/24", "198.19.3.0/24", "198.19.5.0/24", "198.19.6.0/24"]) expect(seen.has(taken)).toBe(false);
  });

  it("fails with SUBNETS_EXHAUSTED naming the network and its size when nothing is free", () => {
    const small = cfg({ Network: "198.19.0.0/26" }); // /28s: SubnetMin .16, SubnetMax .48 -> 3 subnets
    const existing = [
      lease("a", "198.19.0.16/28", attrs("198.18.0.1")),
      lease("b", "198.19.0.32/28", attrs("198.18.0.2")),
      lease("r", "198.19.0.48/28", attrs("198.18.0.3"), true),
    ];
    let err: unknown;
    try {
      allocateSubnet(small, existing, { publicIP: ip("198.18.0.9") }, first, "etcd /weft.io/network/subnets/");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WeftError);
    expect((err as WeftError).code).toBe("SUBNETS_EXHAUSTED");
    expect((err as WeftError).message).toBe(
      "no free IPv4 subnet in Network 198.19.0.0/26 (etcd /weft.io/network/subnets/): all 3 /28 subnets between SubnetMin 198.19.0.16 " +
        "and SubnetMax 198.19.0.48 are taken (2 leases, 1 reservations); widen the network or the SubnetMin/SubnetMax range, or delete stale leases",
    );
  });

  it("allocates IPv6-only networks the same way, matching on PublicIPv6", () => {
    const v6 = cfg({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "2001:2::/48" });
    const a = allocateSubnet(v6, [], { publicIPv6: ip("2001:2:ff::1") }, first);
    expect(a.kind === "new" && a.subnet).toBeUndefined();
    expect(a.kind === "new" && a.ipv6Subnet?.toString()).toBe("2001:2:0:1::/64");
    const mine = lease("k", undefined, attrs(undefined, "2001:2:ff::1"), false, "2001:2:0:9::/64");
    const r = allocateSubnet(v6, [mine], { publicIPv6: ip("2001:2:ff::1") }, first);
    expect(r.kind === "reuse" && r.lease.key).toBe("k");
  });

  it("allocates the two families of a dual-stack network independently", () => {
    const ds = cfg({ Network: "198.19.0.0/16", EnableIPv6: true, IPv6Network: "2001:2::/48" });
    const existing = [lease("a", "198.19.1.0/24", attrs("198.18.0.1"), false, "2001:2:0:1::/64"), lease("b", "198.19.2.0/24", attrs("198.18.0.2"))];
    const a = allocateSubnet(ds, existing, { publicIP: ip("198.18.0.3"), previousSubnet: net("198.19.77.0/24") }, first);
    expect(a.kind).toBe("new");
    if (a.kind !== "new") return;
    expect(a.subnet?.toString()).toBe("198.19.77.0/24");
    expect(a.ipv6Subnet?.toString()).toBe("2001:2:0:2::/64");
    expect(a.source).toEqual({ v4: "previous", v6: "random" });
    // A v4-only lease of ours does not fit a dual-stack network: it is replaced, not reused.
    const old = allocateSubnet(ds, existing, { publicIP: ip("198.18.0.2") }, first);
    expect(old.kind).toBe("new");
    expect(old.incompatible.map((e) => e.key)).toEqual(["b"]);
  });

  it("finds free IPv6 blocks past thousands of leases without walking every block", () => {
    const v6 = cfg({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "2001:2::/48" });
    const base = IPAddress.parse("2001:2:0:1::");
    const existing: ExistingLease[] = [];
    for (let i = 0; i < 5000; i++) existing.push({ key: `k${i}`, ipv6Subnet: IPNet.of(base.add(BigInt(i) << 64n), 64), reserved: false });
    const t0 = performance.now();
    const a = allocateSubnet(v6, existing, {}, first);
    expect(performance.now() - t0).toBeLessThan(500);
    expect(a.kind === "new" && a.ipv6Subnet?.toString()).toBe("2001:2:0:1389::/64");
    expect(freeCandidates(v6.v6!, [[base.value, base.value + (5000n << 64n) - 1n]], 3).map(String)).toEqual([
      "2001:2:0:1389::/64",
      "2001:2:0:138a::/64",
      "2001:2:0:138b::/64",
    ]);
  });
});

describe("allocateSubnet against hostile keys (issue 15)", () => {
  it("#8: a key of another length (198.19.0.0-16) never makes the network look full", () => {
    const existing = [lease("dos", "198.19.0.0/16", attrs("198.18.0.66")), lease("a", "198.19.1.0/24", attrs("198.18.0.1"))];
    const a = allocateSubnet(v4net, existing, { publicIP: ip("198.18.0.5") }, first);
    expect(a.kind === "new" && a.subnet?.toString()).toBe("198.19.2.0/24");
    // Reservations of another length neither: an operator's block only counts while there is room elsewhere.
    const reserved = allocateSubnet(v4net, [lease("dos", "198.19.0.0/16", attrs("198.18.0.66"), true)], { publicIP: ip("198.18.0.5") }, first);
    expect(reserved.kind === "new" && reserved.subnet?.toString()).toBe("198.19.1.0/24");
  });

  it("#7: keeps the subnet of subnet.env while its lease is live, even when a lease-less key carries this node's PublicIP", () => {
    const existing = [lease("planted", "198.19.77.0/24", attrs("198.18.0.5"), true), lease("mine", "198.19.5.0/24", attrs("198.18.0.5"))];
    const a = allocateSubnet(v4net, existing, { publicIP: ip("198.18.0.5"), previousSubnet: net("198.19.5.0/24") }, first);
    expect(a.kind === "reuse" && a.lease.key).toBe("mine");
    // Without a subnet.env (a first start), the reservation still wins, as in Flannel.
    const fresh = allocateSubnet(v4net, existing, { publicIP: ip("198.18.0.5") }, first);
    expect(fresh.kind === "reuse" && fresh.lease.key).toBe("planted");
  });
});
