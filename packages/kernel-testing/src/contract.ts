/**
 * The KernelPort contract: one suite, run against every implementation (the FakeKernel in the unit tier, the
 * LinuxKernel in a fresh network namespace in the netns tier), so the fake cannot drift from the kernel.
 * Each test gets a fresh fixture from `factory` and asserts on read-back state, never on calls.
 *
 * The fixture's `underlay` is an up device (MTU 1500) holding one 198.18.x.y/24 and one 2001:2:0:x::y/64
 * address; tests find them with listAddresses. Everything else a test creates, it names itself (<= 15 chars).
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { IPPrefix, type LinkKindDefinition, type LinkSpec, type RouteSpec, WEFT_ROUTE_PROTOCOL } from "@weft/core";
import type { KernelErrorCode, KernelOp, KernelPort, OpResult } from "@weft/kernel";

export interface KernelPortFixture {
  readonly kernel: KernelPort;
  /** An up device with 198.18.x.y/24 and 2001:2:0:x::y/64. */
  readonly underlay: string;
  cleanup(): Promise<void>;
}

const P = WEFT_ROUTE_PROTOCOL;

function codes(results: readonly OpResult[]): Array<"ok" | KernelErrorCode> {
  return results.map((r) => (r.ok ? "ok" : r.error.code));
}

/** Applies and expects every op to succeed, with the failures in the message when not. */
async function applyOk(kernel: KernelPort, ops: readonly KernelOp[]): Promise<void> {
  const results = await kernel.apply(ops);
  const failures = results.flatMap((r, i) => (r.ok ? [] : [`#${i} ${r.error.code}: ${r.error.message}`]));
  expect(failures, "every op should succeed").toEqual([]);
}

async function expectThrowsCode(p: Promise<unknown>, code: KernelErrorCode): Promise<void> {
  await expect(p).rejects.toMatchObject({ code });
}

/** The `n`-th host address of `self`'s subnet other than `self` (n = 1: the first). */
function neighbourOf(self: IPPrefix, n = 1): string {
  let cand = self.network.first;
  for (let found = 0; ; ) {
    cand = cand.add(1);
    if (!cand.equals(self.ip) && ++found === n) return cand.toString();
  }
}

/**
 * Link kinds the contract contributes (as a backend would, through BackendModule.linkKinds): the factory must
 * pass them to the kernel it makes (LinuxKernel / FakeKernel `linkKinds`). `ifb` is a kind the kernel has and
 * Weft does not define; the `weftbad*` kinds are refused before anything is sent.
 */
export const CONTRACT_LINK_KINDS: readonly LinkKindDefinition[] = [
  {
    kind: "ifb",
    createArgs: () => [],
    read: () => ({}),
    incompatibility: () => undefined,
  },
  {
    kind: "weftbadtoken",
    createArgs: (l) => ["remote", String(l.attrs?.remote ?? "")],
    read: () => ({}),
    incompatibility: () => undefined,
  },
  {
    kind: "weftbadattrs",
    createArgs: (l, check) => {
      if (l.attrs?.remote === undefined) throw new Error("attrs.remote is required; add the tunnel's remote address");
      return ["remote", check.address("link.attrs.remote", String(l.attrs.remote))];
    },
    read: () => ({}),
    incompatibility: () => undefined,
  },
];

export function describeKernelPortContract(name: string, factory: (opts: { readonly linkKinds: readonly LinkKindDefinition[] }) => Promise<KernelPortFixture>): void {
  describe(`KernelPort contract: ${name}`, () => {
    let fx: KernelPortFixture;
    let k: KernelPort;
    let under: string;
    let u4: IPPrefix; // underlay 198.18.x.y/24
    let u6: IPPrefix; // underlay 2001:2:0:x::y/64
    let gw4: string; // another host on the underlay subnet
    let gw6: string;

    beforeEach(async () => {
      fx = await factory({ linkKinds: CONTRACT_LINK_KINDS });
      k = fx.kernel;
      under = fx.underlay;
      const addrs = await k.listAddresses(under);
      const v4 = addrs.find((a) => a.family === "v4" && a.address.startsWith("198.18."));
      const v6 = addrs.find((a) => a.family === "v6" && a.address.startsWith("2001:2:"));
      if (!v4 || !v6) throw new Error(`fixture ${name}: underlay ${under} needs a 198.18.x.y/24 and a 2001:2:0:x::y/64 address; has ${JSON.stringify(addrs)}`);
      u4 = IPPrefix.parse(v4.address);
      u6 = IPPrefix.parse(v6.address);
      gw4 = neighbourOf(u4);
      gw6 = neighbourOf(u6);
    });
    afterEach(async () => {
      await fx?.cleanup();
    });

    const link = async (n: string) => (await k.listLinks()).find((l) => l.name === n);
    const vxlanV4 = (n: string, vni: number, extra: Partial<LinkSpec> = {}): LinkSpec => ({
      name: n,
      kind: "vxlan",
      vxlan: { vni, port: 8472, local: u4.ip.toString(), dev: under, learning: false, gbp: false },
      ...extra,
    });
    const upVeth = async (n: string, peer: string) => {
      await applyOk(k, [
        { op: "link.add", link: { name: n, kind: "veth", veth: { peer } } },
        { op: "link.set", name: n, up: true },
        { op: "link.set", name: peer, up: true },
      ]);
    };

    it("lists lo and the underlay", async () => {
      const links = await k.listLinks();
      expect(links.find((l) => l.name === "lo")).toMatchObject({ up: true });
      expect(links.find((l) => l.name === under)).toMatchObject({ up: true, mtu: 1500 });
      expect(await k.apply([])).toEqual([]);
    });

    describe("links", () => {
      it("adds, sets and deletes a bridge; duplicate add is EXISTS, deleting twice NOT_FOUND", async () => {
        await applyOk(k, [{ op: "link.add", link: { name: "wt-br0", kind: "bridge" } }]);
        expect(await link("wt-br0")).toMatchObject({ kind: "bridge", up: false, mtu: 1500 });
        await applyOk(k, [{ op: "link.set", name: "wt-br0", mtu: 1400, up: true, address: "02:00:00:aa:bb:01" }]);
        expect(await link("wt-br0")).toMatchObject({ up: true, mtu: 1400, address: "02:00:00:aa:bb:01" });
        expect(codes(await k.apply([{ op: "link.add", link: { name: "wt-br0", kind: "bridge" } }]))).toEqual(["KERNEL_EXISTS"]);
        expect(codes(await k.apply([{ op: "link.del", name: "wt-br0" }, { op: "link.del", name: "wt-br0" }]))).toEqual(["ok", "KERNEL_NOT_FOUND"]);
        expect(await link("wt-br0")).toBeUndefined();
        expect(codes(await k.apply([{ op: "link.set", name: "wt-br0", up: true }]))).toEqual(["KERNEL_NOT_FOUND"]);
      });

      it("creates both ends of a veth pair, and deleting one end deletes the other", async () => {
        await applyOk(k, [{ op: "link.add", link: { name: "wt-va", kind: "veth", mtu: 1400, veth: { peer: "wt-vb" } } }]);
        expect(await link("wt-va")).toMatchObject({ kind: "veth", mtu: 1400, veth: { peer: "wt-vb" } });
        expect(await link("wt-vb")).toMatchObject({ kind: "veth", mtu: 1400, veth: { peer: "wt-va" } });
        await applyOk(k, [{ op: "link.del", name: "wt-vb" }]);
        expect(await link("wt-va")).toBeUndefined();
      });

      it("creates a vxlan bound to the underlay whose read-back equals the spec (adoptable)", async () => {
        const spec = vxlanV4("wt-vx0", 4242);
        await applyOk(k, [{ op: "link.add", link: spec }]);
        const got = await link("wt-vx0");
        expect(got?.kind).toBe("vxlan");
        expect(got?.vxlan).toEqual(spec.vxlan);
        // Bound to a 1500 underlay without an explicit MTU, the kernel picks 1500 - 50.
        expect(got?.mtu).toBe(1450);
        // Adopt: creating it again is EXISTS, and what is there is what we want.
        expect(codes(await k.apply([{ op: "link.add", link: spec }]))).toEqual(["KERNEL_EXISTS"]);
        expect((await link("wt-vx0"))?.vxlan).toEqual(spec.vxlan);
      });

      it("reads back learning, gbp, port and an IPv6 local address", async () => {
        const spec: LinkSpec = { name: "wt-vx6", kind: "vxlan", vxlan: { vni: 77, port: 4789, local: u6.ip.toString(), dev: under, learning: true, gbp: true } };
        await applyOk(k, [{ op: "link.add", link: spec }]);
        const got = await link("wt-vx6");
        expect(got?.vxlan).toEqual(spec.vxlan);
        expect(got?.mtu).toBe(1430);
      });

      it("recreates an incompatible vxlan as del + add in one batch", async () => {
        await applyOk(k, [{ op: "link.add", link: vxlanV4("wt-vx0", 1) }]);
        await applyOk(k, [
          { op: "link.del", name: "wt-vx0" },
          { op: "link.add", link: vxlanV4("wt-vx0", 2, { up: true }) },
        ]);
        expect(await link("wt-vx0")).toMatchObject({ up: true, vxlan: { vni: 2 } });
      });

      it("refuses a vxlan MTU above the bound device's MTU - 50 (IPv4) / - 70 (IPv6)", async () => {
        await applyOk(k, [
          { op: "link.add", link: vxlanV4("wt-vx4", 10) },
          { op: "link.add", link: { name: "wt-vx6", kind: "vxlan", vxlan: { vni: 11, local: u6.ip.toString(), dev: under } } },
        ]);
        expect(
          codes(
            await k.apply([
              { op: "link.set", name: "wt-vx4", mtu: 1451 },
              { op: "link.set", name: "wt-vx4", mtu: 1400 },
              { op: "link.set", name: "wt-vx6", mtu: 1431 },
              { op: "link.set", name: "wt-vx6", mtu: 1430 },
            ]),
          ),
        ).toEqual(["KERNEL_INVALID", "ok", "KERNEL_INVALID", "ok"]);
        expect((await link("wt-vx4"))?.mtu).toBe(1400);
        // Unbound, the kernel does not check (the MTU is then the operator's problem).
        await applyOk(k, [{ op: "link.add", link: { name: "wt-vxu", kind: "vxlan", vxlan: { vni: 12 } } }, { op: "link.set", name: "wt-vxu", mtu: 1500 }]);
      });

      it("enslaves to a bridge and releases; a missing master is NOT_FOUND, a non-bridge master UNSUPPORTED", async () => {
        await applyOk(k, [
          { op: "link.add", link: { name: "wt-br0", kind: "bridge" } },
          { op: "link.add", link: { name: "wt-va", kind: "veth", veth: { peer: "wt-vb" } } },
          { op: "link.set", name: "wt-va", master: "wt-br0" },
        ]);
        expect((await link("wt-va"))?.master).toBe("wt-br0");
        expect(
          codes(
            await k.apply([
              { op: "link.set", name: "wt-va", master: null },
              { op: "link.set", name: "wt-vb", master: "wt-nosuch" },
              { op: "link.set", name: "wt-vb", master: "wt-va" },
            ]),
          ),
        ).toEqual(["ok", "KERNEL_NOT_FOUND", "KERNEL_UNSUPPORTED"]);
        expect((await link("wt-va"))?.master).toBeUndefined();
        // Created with a master in one step.
        await applyOk(k, [{ op: "link.add", link: { name: "wt-vc", kind: "veth", master: "wt-br0", up: true, veth: { peer: "wt-vd" } } }]);
        expect(await link("wt-vc")).toMatchObject({ master: "wt-br0", up: true });
      });

      it("applies addrGenMode none before up, so no link-local address appears", async () => {
        await applyOk(k, [{ op: "link.add", link: { name: "wt-br1", kind: "bridge", addrGenMode: "none", up: true } }]);
        expect(await link("wt-br1")).toMatchObject({ up: true, addrGenMode: "none" });
        // A veth with an up peer has carrier, so it would get fe80:: at once with eui64.
        await applyOk(k, [
          { op: "link.add", link: { name: "wt-g0", kind: "veth", veth: { peer: "wt-g1" } } },
          { op: "link.set", name: "wt-g1", up: true },
          { op: "link.set", name: "wt-g0", addrGenMode: "none", up: true },
        ]);
        expect(await link("wt-g0")).toMatchObject({ up: true, addrGenMode: "none" });
        expect((await k.listAddresses("wt-g0")).filter((a) => a.address.startsWith("fe80:"))).toEqual([]);
      });

      it("creates tun/tap devices; a second create of the name is EXISTS", async () => {
        await applyOk(k, [{ op: "link.add", link: { name: "wt-tun0", kind: "tun", mtu: 1420, up: true, tun: { mode: "tun" } } }]);
        expect(await link("wt-tun0")).toMatchObject({ kind: "tun", mtu: 1420, up: true, tun: { mode: "tun" } });
        expect(codes(await k.apply([{ op: "link.add", link: { name: "wt-tun0", kind: "tun", mtu: 9000 } }]))).toEqual(["KERNEL_EXISTS"]);
        // The follow-up settings of a failed create never touch the existing device.
        expect((await link("wt-tun0"))?.mtu).toBe(1420);
      });

      it("creates a link of a contributed kind, reads it back with that kind, deletes it", async () => {
        await applyOk(k, [{ op: "link.add", link: { name: "wt-ifb0", kind: "ifb", mtu: 1400, up: true } }]);
        expect(await link("wt-ifb0")).toMatchObject({ kind: "ifb", mtu: 1400, up: true });
        expect(codes(await k.apply([{ op: "link.add", link: { name: "wt-ifb0", kind: "ifb" } }]))).toEqual(["KERNEL_EXISTS"]);
        await applyOk(k, [{ op: "link.del", name: "wt-ifb0" }]);
        expect(await link("wt-ifb0")).toBeUndefined();
      });

      it("refuses, sending nothing, a kind nobody defined, a definition's missing attribute and an argument that is not one token", async () => {
        const r = await k.apply([
          { op: "link.add", link: { name: "wt-x0", kind: "weftnosuch" } },
          { op: "link.add", link: { name: "wt-x1", kind: "weftbadattrs" } },
          { op: "link.add", link: { name: "wt-x2", kind: "weftbadattrs", attrs: { remote: "198.18.0.2 dev lo" } } },
          { op: "link.add", link: { name: "wt-x3", kind: "weftbadtoken", attrs: { remote: "198.18.0.2 type dummy" } } },
        ]);
        expect(codes(r)).toEqual(["KERNEL_INVALID", "KERNEL_INVALID", "KERNEL_INVALID", "KERNEL_INVALID"]);
        const messages = r.map((x) => (x.ok ? "" : x.error.message));
        expect(messages[0]).toMatch(/kind "weftnosuch" is unknown.*BackendModule\.linkKinds/);
        expect(messages[1]).toMatch(/attrs\.remote is required/);
        expect(messages[3]).toMatch(/not one safe token/);
        for (const n of ["wt-x0", "wt-x1", "wt-x2", "wt-x3"]) expect(await link(n)).toBeUndefined();
      });

      it("reports a wireguard link as UNSUPPORTED (no kernel module on these machines)", async () => {
        const [r] = await k.apply([{ op: "link.add", link: { name: "wt-wg0", kind: "wireguard" } }]);
        expect(r).toMatchObject({ ok: false, error: { code: "KERNEL_UNSUPPORTED" } });
        expect(await link("wt-wg0")).toBeUndefined();
      });
    });

    describe("addresses", () => {
      it("adds v4 and v6 addresses with their connected routes; EXISTS / replace / del / NOT_FOUND", async () => {
        await upVeth("wt-a0", "wt-a1");
        await applyOk(k, [
          { op: "addr.add", addr: { dev: "wt-a0", address: "198.19.7.1/24" } },
          { op: "addr.add", addr: { dev: "wt-a0", address: "2001:2:0:77::1/64" } },
          { op: "addr.add", addr: { dev: "wt-a0", address: "198.19.8.0/32" } },
        ]);
        const mine = (await k.listAddresses("wt-a0")).filter((a) => !a.address.startsWith("fe80:"));
        expect(mine.map((a) => [a.address, a.family]).sort()).toEqual([
          ["198.19.7.1/24", "v4"],
          ["198.19.8.0/32", "v4"],
          ["2001:2:0:77::1/64", "v6"],
        ]);
        expect((await k.listRoutes({ family: "v4" })).filter((r) => r.dev === "wt-a0")).toEqual([
          { family: "v4", dst: "198.19.7.0/24", type: "unicast", table: 254, protocol: 2, scope: "link", dev: "wt-a0", src: "198.19.7.1" },
        ]);
        expect((await k.listRoutes({ family: "v6" })).filter((r) => r.dev === "wt-a0" && r.dst.startsWith("2001:"))).toEqual([
          { family: "v6", dst: "2001:2:0:77::/64", type: "unicast", table: 254, protocol: 2, scope: "global", dev: "wt-a0", metric: 256 },
        ]);
        expect(
          codes(
            await k.apply([
              { op: "addr.add", addr: { dev: "wt-a0", address: "198.19.7.1/24" } },
              { op: "addr.add", addr: { dev: "wt-a0", address: "2001:2:0:77::1/64" } },
              { op: "addr.replace", addr: { dev: "wt-a0", address: "198.19.7.1/24" } },
              { op: "addr.del", addr: { dev: "wt-a0", address: "198.19.7.1/24" } },
              { op: "addr.del", addr: { dev: "wt-a0", address: "198.19.7.1/24" } },
              { op: "addr.del", addr: { dev: "wt-a0", address: "2001:2:0:77::1/64" } },
              { op: "addr.add", addr: { dev: "wt-nosuch", address: "198.19.9.1/24" } },
            ]),
          ),
        ).toEqual(["KERNEL_EXISTS", "KERNEL_EXISTS", "ok", "ok", "KERNEL_NOT_FOUND", "ok", "KERNEL_NOT_FOUND"]);
        expect((await k.listAddresses("wt-a0")).filter((a) => !a.address.startsWith("fe80:")).map((a) => a.address)).toEqual(["198.19.8.0/32"]);
        expect((await k.listRoutes({ family: "v4" })).filter((r) => r.dev === "wt-a0")).toEqual([]);
        await expectThrowsCode(k.listAddresses("wt-nosuch"), "KERNEL_NOT_FOUND");
      });

      it("nodad: a new IPv6 address is usable at once (a route takes it as src); without it, it is tentative (refused); IPv4 ignores it", async () => {
        await upVeth("wt-d0", "wt-d1");
        expect(
          codes(
            await k.apply([
              { op: "addr.add", addr: { dev: "wt-d0", address: "2001:2:0:78::1/64", nodad: true } },
              { op: "addr.add", addr: { dev: "wt-d0", address: "2001:2:0:79::1/64" } },
              { op: "addr.replace", addr: { dev: "wt-d0", address: "2001:2:0:7a::1/64", nodad: true } },
              { op: "addr.add", addr: { dev: "wt-d0", address: "198.19.78.1/24", nodad: true } },
              // DAD takes ~1 s on the kernel: these run well within it.
              { op: "route.add", route: { family: "v6", dst: "2001:2:0:80::/64", dev: "wt-d0", src: "2001:2:0:78::1", protocol: P } },
              { op: "route.add", route: { family: "v6", dst: "2001:2:0:81::/64", dev: "wt-d0", src: "2001:2:0:79::1", protocol: P } },
              { op: "route.add", route: { family: "v6", dst: "2001:2:0:82::/64", dev: "wt-d0", src: "2001:2:0:7a::1", protocol: P } },
              { op: "route.add", route: { family: "v4", dst: "198.19.79.0/24", dev: "wt-d0", src: "198.19.78.1", protocol: P } },
            ]),
          ),
        ).toEqual(["ok", "ok", "ok", "ok", "ok", "KERNEL_INVALID", "ok", "ok"]);
        // An option of the write, not a property of the address: read-back is the same as without it.
        const mine = (await k.listAddresses("wt-d0")).filter((a) => !a.address.startsWith("fe80:"));
        expect(mine.map((a) => [a.address, a.family, a.nodad]).sort()).toEqual([
          ["198.19.78.1/24", "v4", undefined],
          ["2001:2:0:78::1/64", "v6", undefined],
          ["2001:2:0:79::1/64", "v6", undefined],
          ["2001:2:0:7a::1/64", "v6", undefined],
        ]);
      });
    });

    describe("routes", () => {
      it("adds an onlink route via a vxlan with Weft's protocol (the flannel vxlan recipe)", async () => {
        await applyOk(k, [
          { op: "link.add", link: vxlanV4("wt-vx0", 1, { up: true }) },
          { op: "addr.add", addr: { dev: "wt-vx0", address: "198.19.1.0/32" } },
          { op: "route.add", route: { family: "v4", dst: "198.19.2.0/24", gateway: "198.19.2.0", dev: "wt-vx0", onlink: true, protocol: P } },
        ]);
        expect(await k.listRoutes({ family: "v4", protocol: P })).toEqual([
          { family: "v4", dst: "198.19.2.0/24", type: "unicast", table: 254, protocol: P, scope: "global", gateway: "198.19.2.0", dev: "wt-vx0", onlink: true },
        ]);
      });

      it("adds a gateway route (dev inferred), a dev route (scope link), a table route, a host route and a default route", async () => {
        await applyOk(k, [
          { op: "route.add", route: { family: "v4", dst: "198.19.3.0/24", gateway: gw4, protocol: P } },
          { op: "route.add", route: { family: "v4", dst: "198.19.4.0/24", dev: under, protocol: P } },
          { op: "route.add", route: { family: "v4", dst: "198.19.5.0/24", gateway: gw4, dev: under, table: 100, protocol: P, metric: 7, src: u4.ip.toString(), mtu: 1400 } },
          { op: "route.add", route: { family: "v4", dst: "198.19.6.9/32", dev: under, scope: "link", protocol: P } },
          { op: "route.add", route: { family: "v4", dst: "0.0.0.0/0", gateway: gw4, table: 100, protocol: P } },
        ]);
        expect(await k.listRoutes({ family: "v4", protocol: P })).toEqual(
          expect.arrayContaining([
            { family: "v4", dst: "198.19.3.0/24", type: "unicast", table: 254, protocol: P, scope: "global", gateway: gw4, dev: under },
            { family: "v4", dst: "198.19.4.0/24", type: "unicast", table: 254, protocol: P, scope: "link", dev: under },
            { family: "v4", dst: "198.19.6.9/32", type: "unicast", table: 254, protocol: P, scope: "link", dev: under },
          ]),
        );
        expect((await k.listRoutes({ family: "v4", protocol: P })).length).toBe(3);
        const t100 = await k.listRoutes({ family: "v4", table: 100 });
        expect(t100).toEqual(
          expect.arrayContaining([
            { family: "v4", dst: "198.19.5.0/24", type: "unicast", table: 100, protocol: P, scope: "global", gateway: gw4, dev: under, metric: 7, src: u4.ip.toString(), mtu: 1400 },
            { family: "v4", dst: "0.0.0.0/0", type: "unicast", table: 100, protocol: P, scope: "global", gateway: gw4, dev: under },
          ]),
        );
        expect(t100.length).toBe(2);
        const all = await k.listRoutes({ family: "v4", table: "all", protocol: P });
        expect(all.length).toBe(5);
      });

      it("adds, replaces and deletes an IPv6 route (metric 1024 by default)", async () => {
        await applyOk(k, [{ op: "route.add", route: { family: "v6", dst: "2001:2:0:99::/64", gateway: gw6, dev: under, protocol: P } }]);
        expect(await k.listRoutes({ family: "v6", protocol: P })).toEqual([
          { family: "v6", dst: "2001:2:0:99::/64", type: "unicast", table: 254, protocol: P, scope: "global", gateway: gw6, dev: under, metric: 1024 },
        ]);
        const gwB = neighbourOf(u6, 2);
        await applyOk(k, [{ op: "route.replace", route: { family: "v6", dst: "2001:2:0:99::/64", gateway: gwB, dev: under, protocol: P } }]);
        expect((await k.listRoutes({ family: "v6", protocol: P })).map((r) => r.gateway)).toEqual([gwB]);
        await applyOk(k, [{ op: "route.del", route: { family: "v6", dst: "2001:2:0:99::/64", gateway: gwB, dev: under, protocol: P, metric: 1024 } }]);
        expect(await k.listRoutes({ family: "v6", protocol: P })).toEqual([]);
      });

      it("replace changes a v4 route in place; duplicate add is EXISTS; deleting a missing route NOT_FOUND", async () => {
        const r: RouteSpec = { family: "v4", dst: "198.19.3.0/24", gateway: gw4, dev: under, protocol: P };
        expect(
          codes(
            await k.apply([
              { op: "route.add", route: r },
              { op: "route.add", route: r },
              { op: "route.replace", route: { ...r, gateway: neighbourOf(u4, 2) } },
              { op: "route.del", route: { family: "v4", dst: "198.19.99.0/24", protocol: P } },
              { op: "route.del", route: { family: "v6", dst: "2001:2:0:98::/64", protocol: P } },
            ]),
          ),
        ).toEqual(["ok", "KERNEL_EXISTS", "ok", "KERNEL_NOT_FOUND", "KERNEL_NOT_FOUND"]);
        expect((await k.listRoutes({ family: "v4", protocol: P })).map((x) => x.gateway)).toEqual([neighbourOf(u4, 2)]);
      });

      it("a del carrying Weft's protocol never removes another protocol's route to the same destination", async () => {
        await applyOk(k, [{ op: "route.add", route: { family: "v4", dst: "198.19.4.0/24", dev: under, protocol: 4 } }]);
        expect(codes(await k.apply([{ op: "route.del", route: { family: "v4", dst: "198.19.4.0/24", dev: under, protocol: P } }]))).toEqual(["KERNEL_NOT_FOUND"]);
        expect((await k.listRoutes({ family: "v4", protocol: 4 })).map((r) => r.dst)).toEqual(["198.19.4.0/24"]);
      });

      it("refuses unreachable gateways (v4 and v6) and routes through a down device", async () => {
        await applyOk(k, [{ op: "link.add", link: { name: "wt-br0", kind: "bridge" } }]);
        expect(
          codes(
            await k.apply([
              { op: "route.add", route: { family: "v4", dst: "198.19.3.0/24", gateway: "198.18.250.1", protocol: P } },
              { op: "route.add", route: { family: "v4", dst: "198.19.3.0/24", gateway: "198.18.250.1", dev: under, protocol: P } },
              { op: "route.add", route: { family: "v6", dst: "2001:2:0:99::/64", gateway: "2001:2:0:fa::1", dev: under, protocol: P } },
              { op: "route.add", route: { family: "v4", dst: "198.19.4.0/24", dev: "wt-br0", protocol: P } },
              { op: "route.add", route: { family: "v4", dst: "198.19.5.0/24", gateway: "198.19.5.0", dev: "wt-br0", onlink: true, protocol: P } },
              { op: "route.add", route: { family: "v4", dst: "198.19.6.0/24", dev: "wt-nosuch", protocol: P } },
              // onlink makes an unreachable gateway acceptable
              { op: "route.add", route: { family: "v4", dst: "198.19.3.0/24", gateway: "198.18.250.1", dev: under, onlink: true, protocol: P } },
            ]),
          ),
        ).toEqual(["KERNEL_INVALID", "KERNEL_INVALID", "KERNEL_INVALID", "KERNEL_INVALID", "KERNEL_INVALID", "KERNEL_NOT_FOUND", "ok"]);
      });

      it("routeGet answers as ip route get: connected, via a gateway, a local address; none for blackhole, prohibit, unreachable, no route", async () => {
        await applyOk(k, [
          { op: "route.add", route: { family: "v4", dst: "198.19.3.0/24", gateway: gw4, protocol: P } },
          { op: "route.add", route: { family: "v4", dst: "198.19.3.128/25", type: "blackhole", protocol: P } },
          { op: "route.add", route: { family: "v4", dst: "198.19.4.0/24", type: "prohibit", protocol: P } },
          { op: "route.add", route: { family: "v4", dst: "198.19.5.0/24", type: "unreachable", protocol: P } },
          { op: "route.add", route: { family: "v6", dst: "2001:2:0:f1::/64", gateway: gw6, protocol: P } },
        ]);
        expect(await k.routeGet("198.19.4.1")).toBeUndefined();
        expect(await k.routeGet("198.19.5.1")).toBeUndefined();
        const src4 = u4.ip.toString();
        expect(await k.routeGet(gw4)).toEqual({ type: "unicast", dev: under, src: src4 });
        expect(await k.routeGet("198.19.3.9")).toEqual({ type: "unicast", dev: under, gateway: gw4, src: src4 });
        expect(await k.routeGet("198.19.3.200")).toBeUndefined(); // the longer blackhole wins
        expect(await k.routeGet("198.19.99.1")).toBeUndefined(); // no route at all
        expect(await k.routeGet(src4)).toEqual({ type: "local", dev: "lo", src: src4 });
        expect(await k.routeGet("2001:2:0:f1::9")).toEqual({ type: "unicast", dev: under, gateway: gw6, src: u6.ip.toString() });
        await expectThrowsCode(k.routeGet("198.19.3"), "KERNEL_INVALID");
      });

      it("adds a blackhole route (no device on read-back)", async () => {
        await applyOk(k, [
          { op: "route.add", route: { family: "v4", dst: "198.19.0.0/16", type: "blackhole", protocol: P } },
          { op: "route.add", route: { family: "v6", dst: "2001:2:0:f0::/60", type: "unreachable", protocol: P } },
        ]);
        expect(await k.listRoutes({ family: "v4", protocol: P })).toEqual([
          { family: "v4", dst: "198.19.0.0/16", type: "blackhole", table: 254, protocol: P, scope: "global" },
        ]);
        expect(await k.listRoutes({ family: "v6", protocol: P })).toEqual([
          { family: "v6", dst: "2001:2:0:f0::/60", type: "unreachable", table: 254, protocol: P, scope: "global", metric: 1024 },
        ]);
      });
    });

    describe("neighbours", () => {
      it("keeps permanent v4 and v6 neighbours; add of an existing one is EXISTS, del of a missing one NOT_FOUND", async () => {
        await applyOk(k, [{ op: "link.add", link: vxlanV4("wt-vx0", 1, { up: true }) }]);
        await applyOk(k, [
          { op: "neigh.replace", neigh: { dev: "wt-vx0", ip: "198.19.2.0", lladdr: "AA:BB:CC:00:00:02", state: "permanent" } },
          { op: "neigh.replace", neigh: { dev: "wt-vx0", ip: "2001:2:0:0002:0::", lladdr: "aa:bb:cc:00:00:03", state: "permanent" } },
        ]);
        const mine = (await k.listNeighbours({ dev: "wt-vx0" })).sort((a, b) => a.ip.localeCompare(b.ip));
        expect(mine).toEqual([
          { dev: "wt-vx0", ip: "198.19.2.0", lladdr: "aa:bb:cc:00:00:02", state: "permanent" },
          { dev: "wt-vx0", ip: "2001:2:0:2::", lladdr: "aa:bb:cc:00:00:03", state: "permanent" },
        ]);
        expect((await k.listNeighbours({ family: "v6" })).filter((n) => n.dev === "wt-vx0").map((n) => n.ip)).toEqual(["2001:2:0:2::"]);
        expect(
          codes(
            await k.apply([
              { op: "neigh.add", neigh: { dev: "wt-vx0", ip: "198.19.2.0", lladdr: "aa:bb:cc:00:00:02", state: "permanent" } },
              { op: "neigh.replace", neigh: { dev: "wt-vx0", ip: "198.19.2.0", lladdr: "aa:bb:cc:00:00:09", state: "permanent" } },
              { op: "neigh.del", neigh: { dev: "wt-vx0", ip: "198.19.3.0", lladdr: "aa:bb:cc:00:00:02", state: "permanent" } },
              { op: "neigh.del", neigh: { dev: "wt-vx0", ip: "2001:2:0:2::", lladdr: "aa:bb:cc:00:00:03", state: "permanent" } },
              { op: "neigh.replace", neigh: { dev: "wt-nosuch", ip: "198.19.4.0", lladdr: "aa:bb:cc:00:00:04", state: "permanent" } },
            ]),
          ),
        ).toEqual(["KERNEL_EXISTS", "ok", "KERNEL_NOT_FOUND", "ok", "KERNEL_NOT_FOUND"]);
        expect(await k.listNeighbours({ dev: "wt-vx0" })).toEqual([{ dev: "wt-vx0", ip: "198.19.2.0", lladdr: "aa:bb:cc:00:00:09", state: "permanent" }]);
        await expectThrowsCode(k.listNeighbours({ dev: "wt-nosuch" }), "KERNEL_NOT_FOUND");
      });
    });

    describe("fdb", () => {
      it("appends self permanent entries: two dsts for the all-zero MAC, one for a peer MAC", async () => {
        await applyOk(k, [{ op: "link.add", link: vxlanV4("wt-vx0", 1, { up: true }) }]);
        const e = (mac: string, dst: string) => ({ dev: "wt-vx0", mac, dst, self: true, permanent: true });
        await applyOk(k, [
          { op: "fdb.append", fdb: e("00:00:00:00:00:00", "198.18.250.1") },
          { op: "fdb.append", fdb: e("00:00:00:00:00:00", "198.18.250.2") },
          { op: "fdb.append", fdb: e("AA:BB:CC:00:00:02", "198.18.250.2") },
          // appending an entry that is there already is not an error
          { op: "fdb.append", fdb: e("aa:bb:cc:00:00:02", "198.18.250.2") },
        ]);
        const selfEntries = async () => (await k.listFdb({ dev: "wt-vx0" })).filter((f) => f.self && f.dst !== undefined).sort((a, b) => `${a.mac}${a.dst}`.localeCompare(`${b.mac}${b.dst}`));
        expect(await selfEntries()).toEqual([
          e("00:00:00:00:00:00", "198.18.250.1"),
          e("00:00:00:00:00:00", "198.18.250.2"),
          e("aa:bb:cc:00:00:02", "198.18.250.2"),
        ]);
        expect(
          codes(
            await k.apply([
              { op: "fdb.del", fdb: e("00:00:00:00:00:00", "198.18.250.1") },
              { op: "fdb.del", fdb: e("aa:bb:cc:00:00:77", "198.18.250.1") },
              { op: "fdb.append", fdb: e("aa:bb:cc:00:00:05", "2001:2:0:fa::1") },
              { op: "fdb.append", fdb: { ...e("aa:bb:cc:00:00:05", "198.18.250.5"), dev: "wt-nosuch" } },
              { op: "fdb.add", fdb: e("aa:bb:cc:00:00:02", "198.18.250.3") },
              { op: "fdb.replace", fdb: e("aa:bb:cc:00:00:02", "198.18.250.4") },
            ]),
          ),
        ).toEqual(["ok", "KERNEL_NOT_FOUND", "KERNEL_INVALID", "KERNEL_NOT_FOUND", "KERNEL_EXISTS", "ok"]);
        expect(await selfEntries()).toEqual([e("00:00:00:00:00:00", "198.18.250.2"), e("aa:bb:cc:00:00:02", "198.18.250.4")]);
        await expectThrowsCode(k.listFdb({ dev: "wt-nosuch" }), "KERNEL_NOT_FOUND");
      });

      it("holds IPv6 VTEP destinations on an IPv6 vxlan", async () => {
        await applyOk(k, [{ op: "link.add", link: { name: "wt-vx6", kind: "vxlan", up: true, vxlan: { vni: 6, local: u6.ip.toString(), dev: under } } }]);
        await applyOk(k, [{ op: "fdb.append", fdb: { dev: "wt-vx6", mac: "aa:bb:cc:00:00:06", dst: "2001:2:0:00fa::6", self: true, permanent: true } }]);
        expect((await k.listFdb({ dev: "wt-vx6" })).filter((f) => f.dst)).toEqual([{ dev: "wt-vx6", mac: "aa:bb:cc:00:00:06", dst: "2001:2:0:fa::6", self: true, permanent: true }]);
      });
    });

    describe("cascades", () => {
      it("deleting a vxlan removes its addresses, routes, neighbours and FDB entries", async () => {
        await applyOk(k, [
          { op: "link.add", link: vxlanV4("wt-vx0", 1, { up: true }) },
          { op: "addr.add", addr: { dev: "wt-vx0", address: "198.19.1.0/32" } },
          { op: "neigh.replace", neigh: { dev: "wt-vx0", ip: "198.19.2.0", lladdr: "aa:bb:cc:00:00:02", state: "permanent" } },
          { op: "fdb.append", fdb: { dev: "wt-vx0", mac: "aa:bb:cc:00:00:02", dst: "198.18.250.2", self: true, permanent: true } },
          { op: "route.add", route: { family: "v4", dst: "198.19.2.0/24", gateway: "198.19.2.0", dev: "wt-vx0", onlink: true, protocol: P } },
          { op: "route.add", route: { family: "v4", dst: "198.19.3.0/24", dev: "wt-vx0", table: 100, protocol: P } },
        ]);
        await applyOk(k, [{ op: "link.del", name: "wt-vx0" }]);
        expect(await link("wt-vx0")).toBeUndefined();
        expect((await k.listAddresses()).filter((a) => a.dev === "wt-vx0")).toEqual([]);
        expect(await k.listRoutes({ family: "v4", table: "all", protocol: P })).toEqual([]);
        expect((await k.listNeighbours({})).filter((n) => n.dev === "wt-vx0")).toEqual([]);
        await expectThrowsCode(k.listFdb({ dev: "wt-vx0" }), "KERNEL_NOT_FOUND");
      });

      it("deleting a device deletes the vxlans bound to it and the veth peer; bridge ports are released", async () => {
        await upVeth("wt-u0", "wt-u1");
        await applyOk(k, [
          { op: "link.add", link: { name: "wt-vxb", kind: "vxlan", vxlan: { vni: 9, dev: "wt-u0" } } },
          { op: "link.add", link: { name: "wt-br0", kind: "bridge" } },
          { op: "link.set", name: "wt-u1", master: "wt-br0" },
        ]);
        await applyOk(k, [{ op: "link.del", name: "wt-br0" }]);
        expect((await link("wt-u1"))?.master).toBeUndefined();
        await applyOk(k, [{ op: "link.del", name: "wt-u0" }]);
        const names = (await k.listLinks()).map((l) => l.name);
        expect(names).not.toContain("wt-u1");
        expect(names).not.toContain("wt-vxb");
      });

      it("a link going down loses its routes, IPv6 addresses and neighbours but keeps IPv4 addresses and permanent FDB entries", async () => {
        await applyOk(k, [
          { op: "link.add", link: vxlanV4("wt-vx0", 1, { up: true }) },
          { op: "addr.add", addr: { dev: "wt-vx0", address: "198.19.1.1/24" } },
          { op: "addr.add", addr: { dev: "wt-vx0", address: "2001:2:0:71::1/64" } },
          { op: "neigh.replace", neigh: { dev: "wt-vx0", ip: "198.19.2.0", lladdr: "aa:bb:cc:00:00:02", state: "permanent" } },
          { op: "fdb.append", fdb: { dev: "wt-vx0", mac: "aa:bb:cc:00:00:02", dst: "198.18.250.2", self: true, permanent: true } },
          { op: "route.add", route: { family: "v4", dst: "198.19.2.0/24", gateway: "198.19.2.0", dev: "wt-vx0", onlink: true, protocol: P } },
        ]);
        await applyOk(k, [{ op: "link.set", name: "wt-vx0", up: false }]);
        expect(await k.listRoutes({ family: "v4", protocol: P })).toEqual([]);
        expect((await k.listRoutes({ family: "v4" })).filter((r) => r.dev === "wt-vx0")).toEqual([]);
        expect((await k.listAddresses("wt-vx0")).map((a) => a.address)).toEqual(["198.19.1.1/24"]);
        expect(await k.listNeighbours({ dev: "wt-vx0" })).toEqual([]);
        expect((await k.listFdb({ dev: "wt-vx0" })).filter((f) => f.dst).length).toBe(1);
        await applyOk(k, [{ op: "link.set", name: "wt-vx0", up: true }]);
        expect((await k.listRoutes({ family: "v4" })).filter((r) => r.dev === "wt-vx0").map((r) => r.dst)).toEqual(["198.19.1.0/24"]);
      });
    });

    describe("batches", () => {
      it("a failure in the middle does not stop later ops, across ip and bridge, and results align with ops", async () => {
        await applyOk(k, [{ op: "link.add", link: vxlanV4("wt-vx0", 1, { up: true }) }]);
        const ops: KernelOp[] = [
          { op: "route.add", route: { family: "v4", dst: "198.19.2.0/24", gateway: "198.19.2.0", dev: "wt-vx0", onlink: true, protocol: P } },
          { op: "route.add", route: { family: "v4", dst: "198.19.2.0/24", gateway: "198.19.2.0", dev: "wt-vx0", onlink: true, protocol: P } },
          { op: "neigh.add", neigh: { dev: "wt-vx0", ip: "198.19.2.0", lladdr: "aa:bb:cc:00:00:02", state: "permanent" } },
          { op: "neigh.add", neigh: { dev: "wt-vx0", ip: "198.19.2.0", lladdr: "aa:bb:cc:00:00:02", state: "permanent" } },
          { op: "neigh.del", neigh: { dev: "wt-vx0", ip: "198.19.9.9", lladdr: "aa:bb:cc:00:00:02", state: "permanent" } },
          { op: "neigh.replace", neigh: { dev: "wt-vx0", ip: "198.19.3.0", lladdr: "aa:bb:cc:00:00:03", state: "permanent" } },
          { op: "fdb.del", fdb: { dev: "wt-vx0", mac: "aa:bb:cc:00:00:99", self: true, permanent: true } },
          { op: "fdb.append", fdb: { dev: "wt-vx0", mac: "aa:bb:cc:00:00:03", dst: "198.18.250.3", self: true, permanent: true } },
          { op: "link.set", name: "wt-vx0", master: "wt-nosuch" },
          { op: "link.add", link: { name: "wt-vxz", kind: "vxlan", vxlan: { vni: 99, dev: "wt-nosuch" } } },
          { op: "route.add", route: { family: "v6", dst: "2001:2:0:99::/64", gateway: gw6, dev: under, protocol: P } },
          { op: "link.del", name: "x dev y" },
          { op: "route.add", route: { family: "v4", dst: "198.19.3.0/24", gateway: "198.19.3.0", dev: "wt-vx0", onlink: true, protocol: P } },
        ];
        const results = await k.apply(ops);
        expect(results.length).toBe(ops.length);
        expect(codes(results)).toEqual([
          "ok",
          "KERNEL_EXISTS",
          "ok",
          "KERNEL_EXISTS",
          "KERNEL_NOT_FOUND",
          "ok",
          "KERNEL_NOT_FOUND",
          "ok",
          "KERNEL_NOT_FOUND",
          "KERNEL_NOT_FOUND",
          "ok",
          "KERNEL_INVALID",
          "ok",
        ]);
        results.forEach((r, i) => {
          if (!r.ok) {
            expect(r.error.operation).toBe(ops[i]);
            expect(r.error.message.length).toBeGreaterThan(10);
          }
        });
        expect((await k.listRoutes({ family: "v4", protocol: P })).map((r) => r.dst).sort()).toEqual(["198.19.2.0/24", "198.19.3.0/24"]);
        expect((await k.listNeighbours({ dev: "wt-vx0" })).map((n) => n.ip).sort()).toEqual(["198.19.2.0", "198.19.3.0"]);
        expect((await k.listFdb({ dev: "wt-vx0" })).filter((f) => f.dst).map((f) => f.mac)).toEqual(["aa:bb:cc:00:00:03"]);
      });

      it("refuses values that could inject a command or option, and runs nothing for them", async () => {
        await upVeth("y", "wt-y1");
        const ops: KernelOp[] = [
          { op: "link.del", name: "x dev y" },
          { op: "link.del", name: "-force" },
          { op: "link.set", name: "y\nlink del y", up: false },
          { op: "link.add", link: { name: "wt-q", kind: "veth", veth: { peer: "y; link del y" } } },
          { op: "addr.add", addr: { dev: "y", address: "198.19.0.1/24 dev lo" } },
          { op: "route.add", route: { family: "v4", dst: "198.19.0.0/16 table 7", dev: "y" } },
          { op: "route.add", route: { family: "v4", dst: "198.19.0.0/16", dev: "y", gateway: "198.18.0.1 onlink" } },
          { op: "route.add", route: { family: "v4", dst: "198.19.0.0/16", dev: "y", metric: -1 } },
          { op: "neigh.replace", neigh: { dev: "y", ip: "198.19.0.1", lladdr: "aa:bb:cc:dd:ee:ff nud noarp", state: "permanent" } },
          { op: "fdb.append", fdb: { dev: "y", mac: "00:00:00:00:00:00", dst: '198.18.0.1" self', self: true, permanent: true } },
        ];
        const results = await k.apply(ops);
        expect(codes(results)).toEqual(ops.map(() => "KERNEL_INVALID"));
        expect(await link("y")).toMatchObject({ up: true });
        expect(await link("wt-y1")).toBeDefined();
        expect(await link("wt-q")).toBeUndefined();
        expect((await k.listAddresses("y")).filter((a) => a.family === "v4")).toEqual([]);
        expect((await k.listRoutes({ family: "v4", table: "all" })).filter((r) => r.dst === "198.19.0.0/16")).toEqual([]);
      });
    });

    describe("sysctl", () => {
      it("reads and writes net.ipv4.ip_forward; a missing key is NOT_FOUND", async () => {
        await k.setSysctl("net.ipv4.ip_forward", "1");
        expect(await k.getSysctl("net.ipv4.ip_forward")).toBe("1");
        await k.setSysctl("net/ipv4/ip_forward", "0");
        expect(await k.getSysctl("net/ipv4/ip_forward")).toBe("0");
        expect(await k.getSysctl(`net.ipv4.conf.${under}.forwarding`)).toMatch(/^[01]$/);
        await expectThrowsCode(k.getSysctl("net.ipv4.wt_nosuch"), "KERNEL_NOT_FOUND");
        await expectThrowsCode(k.setSysctl("net.ipv4.wt_nosuch", "1"), "KERNEL_NOT_FOUND");
        await expectThrowsCode(k.getSysctl("net ipv4"), "KERNEL_INVALID");
      });
    });
  });
}
