import { type ExternalInterface, IPAddress, type RouteSpec, isWeftError } from "@weft/core";
import { FakeKernel } from "@weft/kernel-testing";
import { describe, expect, it } from "vitest";
import { usableAddresses } from "./addresses.js";
import { type InterfaceChoiceOptions, chooseExternalInterface } from "./choose.js";

const V4 = { v4: true, v6: false };
const V6 = { v4: false, v6: true };
const DUAL = { v4: true, v6: true };

function opts(over: Partial<InterfaceChoiceOptions> = {}): InterfaceChoiceOptions {
  return { iface: [], ifaceRegex: [], families: V4, ...over };
}

/** A node: eth0 (default route), eth1 (second underlay), eth2 (IPv4 only, no v6), all up. */
function node(routes: RouteSpec[] = []): FakeKernel {
  const k = new FakeKernel();
  for (const [name, mtu] of [
    ["eth0", 1500],
    ["eth1", 9000],
    ["eth2", 1400],
  ] as const) {
    k.addExternalLink({ name, kind: "dummy", up: true, mtu });
  }
  k.addExternalAddress({ dev: "eth0", address: "198.18.0.1/24" });
  k.addExternalAddress({ dev: "eth0", address: "2001:2::1/64" });
  k.addExternalAddress({ dev: "eth1", address: "198.18.1.1/24" });
  k.addExternalAddress({ dev: "eth1", address: "198.18.1.2/24" });
  k.addExternalAddress({ dev: "eth1", address: "2001:2:0:1::1/64" });
  k.addExternalAddress({ dev: "eth2", address: "198.18.2.1/24" });
  for (const r of routes) k.addExternalRoute(r);
  return k;
}

const defaultV4 = (dev = "eth0", gw = "198.18.0.254"): RouteSpec => ({ family: "v4", dst: "0.0.0.0/0", gateway: gw, dev });
const defaultV6 = (dev = "eth0", gw = "2001:2::fe"): RouteSpec => ({ family: "v6", dst: "::/0", gateway: gw, dev });

function addrs(e: ExternalInterface) {
  return {
    name: e.name,
    mtu: e.mtu,
    ifaceAddr: e.ifaceAddr?.toString(),
    extAddr: e.extAddr?.toString(),
    ifaceV6Addr: e.ifaceV6Addr?.toString(),
    extV6Addr: e.extV6Addr?.toString(),
  };
}

/** Runs the choice and returns the CONFIG_INVALID error's message (fails the test if anything else happens). */
async function configError(k: FakeKernel, o: InterfaceChoiceOptions): Promise<string> {
  const err = await chooseExternalInterface(k, o).then(
    (r) => new Error(`expected a CONFIG_INVALID error, got interface ${r.name}`),
    (e: unknown) => e,
  );
  if (!isWeftError(err, "CONFIG_INVALID")) throw err;
  expect(err.message).not.toContain("\n");
  expect(err.message).toContain("fix:");
  return err.message;
}

describe("chooseExternalInterface: no interface flags", () => {
  it("uses the default route's interface and its first usable address", async () => {
    const k = node([defaultV4()]);
    const e = await chooseExternalInterface(k, opts());
    const eth0 = (await k.listLinks()).find((l) => l.name === "eth0")!;
    expect(e.index).toBe(eth0.index);
    expect(addrs(e)).toEqual({ name: "eth0", mtu: 1500, ifaceAddr: "198.18.0.1", extAddr: "198.18.0.1", ifaceV6Addr: undefined, extV6Addr: undefined });
  });

  it("takes the lowest-metric default route", async () => {
    const k = node([
      { ...defaultV4("eth0"), metric: 200 },
      { ...defaultV4("eth1", "198.18.1.254"), metric: 100 },
    ]);
    expect((await chooseExternalInterface(k, opts())).name).toBe("eth1");
  });

  it("prefers a global address over a link-local one, and uses link-local when that is all there is (IPv4; IPv6 link-local is never advertised)", async () => {
    const k = new FakeKernel();
    k.addExternalLink({ name: "eth0", kind: "dummy", up: true, mtu: 1500 });
    k.addExternalAddress({ dev: "eth0", address: "169.254.7.7/16" });
    k.addExternalAddress({ dev: "eth0", address: "fe80::7/64" });
    k.addExternalRoute({ family: "v4", dst: "0.0.0.0/0", gateway: "169.254.0.1", dev: "eth0" });
    k.addExternalRoute({ family: "v6", dst: "::/0", gateway: "fe80::1", dev: "eth0" });
    expect(addrs(await chooseExternalInterface(k, opts({ families: V4 })))).toMatchObject({ ifaceAddr: "169.254.7.7" });
    expect(await configError(k, opts({ families: DUAL }))).toContain("only the link-local fe80::7");

    k.addExternalAddress({ dev: "eth0", address: "198.18.0.9/24" });
    k.addExternalAddress({ dev: "eth0", address: "2001:2::9/64" });
    expect(addrs(await chooseExternalInterface(k, opts({ families: DUAL })))).toMatchObject({ ifaceAddr: "198.18.0.9", ifaceV6Addr: "2001:2::9" });
  });

  it("dual-stack: both default routes on one interface give both addresses", async () => {
    const e = await chooseExternalInterface(node([defaultV4(), defaultV6()]), opts({ families: DUAL }));
    expect(addrs(e)).toEqual({ name: "eth0", mtu: 1500, ifaceAddr: "198.18.0.1", extAddr: "198.18.0.1", ifaceV6Addr: "2001:2::1", extV6Addr: "2001:2::1" });
  });

  it("IPv6-only uses the IPv6 default route", async () => {
    const e = await chooseExternalInterface(node([defaultV6("eth1", "2001:2:0:1::fe")]), opts({ families: V6 }));
    expect(addrs(e)).toMatchObject({ name: "eth1", ifaceAddr: undefined, ifaceV6Addr: "2001:2:0:1::1" });
  });

  it("no default route is an error naming --iface", async () => {
    const msg = await configError(node(), opts());
    expect(msg).toContain("--iface");
    expect(msg).toContain("no IPv4 default route");
  });

  it("dual-stack default routes on different interfaces is an error naming both", async () => {
    const msg = await configError(node([defaultV4("eth0"), defaultV6("eth1", "2001:2:0:1::fe")]), opts({ families: DUAL }));
    expect(msg).toContain("IPv4 via eth0, IPv6 via eth1");
    expect(msg).toContain("--iface");
  });

  it("the default route's interface without an address of a needed family is an error", async () => {
    const k = node([defaultV4("eth2", "198.18.2.254"), { ...defaultV6("eth2", "2001:2:0:1::fe"), onlink: true }]);
    const msg = await configError(k, opts({ families: DUAL }));
    expect(msg).toContain("the default route via eth2 selects eth2, but eth2 has no usable IPv6 address");
    expect(await configError(node([defaultV4()]), opts({ families: DUAL }))).toContain("no IPv6 default route");
  });

  it("a public IP selects the interface that holds it, not the default route's", async () => {
    const e = await chooseExternalInterface(node([defaultV4()]), opts({ publicIP: "198.18.1.2" }));
    expect(addrs(e)).toMatchObject({ name: "eth1", ifaceAddr: "198.18.1.2", extAddr: "198.18.1.2" });
  });

  it("an IPv6 public IP alone selects its interface too", async () => {
    const e = await chooseExternalInterface(node([defaultV4(), defaultV6()]), opts({ families: DUAL, publicIPv6: "2001:2:0:1::1" }));
    expect(addrs(e)).toMatchObject({ name: "eth1", ifaceAddr: "198.18.1.1", ifaceV6Addr: "2001:2:0:1::1", extV6Addr: "2001:2:0:1::1" });
  });

  it("a public IP that no interface holds is an error pointing at public-ip-overwrite", async () => {
    const msg = await configError(node([defaultV4()]), opts({ publicIP: "198.18.99.1" }));
    expect(msg).toContain("--public-ip");
    expect(msg).toContain("198.18.99.1");
    expect(msg).toContain("public-ip-overwrite");
  });

  it("a public IP of the wrong or a disabled family is an error", async () => {
    expect(await configError(node([defaultV4()]), opts({ publicIP: "2001:2::1" }))).toContain("--public-ip");
    expect(await configError(node([defaultV4()]), opts({ publicIPv6: "2001:2::1" }))).toContain("IPv6 disabled");
  });
});

describe("chooseExternalInterface: --iface", () => {
  it("by name", async () => {
    expect(addrs(await chooseExternalInterface(node([defaultV4()]), opts({ iface: ["eth1"] })))).toMatchObject({ name: "eth1", mtu: 9000, ifaceAddr: "198.18.1.1" });
  });

  it("by IP: that IP becomes the interface address", async () => {
    expect(addrs(await chooseExternalInterface(node(), opts({ iface: ["198.18.1.2"] })))).toMatchObject({ name: "eth1", ifaceAddr: "198.18.1.2", extAddr: "198.18.1.2" });
    expect(addrs(await chooseExternalInterface(node(), opts({ iface: ["2001:2:0:1::1"], families: DUAL })))).toMatchObject({ name: "eth1", ifaceAddr: "198.18.1.1", ifaceV6Addr: "2001:2:0:1::1" });
  });

  it("passes over a deprecated address the kernel reports (the next usable one is advertised)", async () => {
    const k = new FakeKernel();
    k.addExternalLink({ name: "eth1", kind: "dummy", up: true, mtu: 1500 });
    k.addExternalAddress({ dev: "eth1", address: "198.18.1.1/24" });
    k.addExternalAddress({ dev: "eth1", address: "2001:2:0:1::1/64", deprecated: true });
    k.addExternalAddress({ dev: "eth1", address: "2001:2:0:1::2/64" });
    expect(addrs(await chooseExternalInterface(k, opts({ iface: ["eth1"], families: DUAL })))).toMatchObject({ ifaceV6Addr: "2001:2:0:1::2" });
  });

  it("tries the values in order", async () => {
    expect((await chooseExternalInterface(node(), opts({ iface: ["ens3", "eth2"] }))).name).toBe("eth2");
  });

  it("issue 15 #10: --public-ip that no interface holds is refused with --iface too (never used as the VXLAN source)", async () => {
    const msg = await configError(node(), opts({ iface: ["eth1"], publicIP: "198.18.200.1" }));
    expect(msg).toContain("--public-ip");
    expect(msg).toContain("198.18.200.1 is not an address of any interface");
    expect(msg).toContain("public-ip-overwrite");
    const v6 = await configError(node(), opts({ iface: ["eth1"], families: DUAL, publicIPv6: "2001:2:0:99::1" }));
    expect(v6).toContain("--public-ipv6");
    // A local public IP on the chosen interface is still advertised.
    expect(addrs(await chooseExternalInterface(node(), opts({ iface: ["eth1"], publicIP: "198.18.1.2" })))).toMatchObject({ extAddr: "198.18.1.2" });
  });

  it("issue 15 #10: a loopback, multicast or broadcast --public-ip is refused", async () => {
    for (const ip of ["127.0.0.1", "224.0.0.1", "255.255.255.255", "0.0.0.0"]) {
      expect(await configError(node(), opts({ iface: ["eth1"], publicIP: ip }))).toContain("--public-ip");
    }
  });

  it("issue 15 #10: EnableIPv6 with only a link-local IPv6 underlay address is refused, naming the interface", async () => {
    const k = new FakeKernel();
    k.addExternalLink({ name: "eth0", kind: "dummy", up: true, mtu: 1500 });
    k.addExternalAddress({ dev: "eth0", address: "198.18.0.9/24" });
    k.addExternalAddress({ dev: "eth0", address: "fe80::7/64" });
    const msg = await configError(k, opts({ iface: ["eth0"], families: DUAL }));
    expect(msg).toContain("eth0");
    expect(msg).toContain("fe80::7");
    expect(msg).toContain("global or ULA IPv6 address");
  });

  it("an interface that does not exist is an error listing the existing ones", async () => {
    const msg = await configError(node(), opts({ iface: ["eth9"] }));
    expect(msg).toContain("--iface eth9: no such interface");
    expect(msg).toContain("interfaces: lo, eth0, eth1, eth2");
  });

  it("an address no interface holds is an error", async () => {
    expect(await configError(node(), opts({ iface: ["198.18.9.9"] }))).toContain("--iface 198.18.9.9: no interface has this address");
  });

  it("an interface without a usable address of a needed family is an error", async () => {
    const msg = await configError(node(), opts({ iface: ["eth2"], families: DUAL }));
    expect(msg).toContain("--iface eth2: eth2 has no usable IPv6 address");
    expect(await configError(node(), opts({ iface: ["lo"] }))).toContain("lo has no usable IPv4 address");
  });
});

describe("chooseExternalInterface: --iface-regex", () => {
  it("matches addresses first, and uses the matched address", async () => {
    // "2" matches eth2's name, but the address 198.18.1.2 (on eth1) is tried first.
    const e = await chooseExternalInterface(node(), opts({ ifaceRegex: ["\\.2$"] }));
    expect(addrs(e)).toMatchObject({ name: "eth1", ifaceAddr: "198.18.1.2" });
  });

  it("falls back to interface names", async () => {
    expect((await chooseExternalInterface(node(), opts({ ifaceRegex: ["^eth2$"] }))).name).toBe("eth2");
  });

  it("dual-stack: an interface matches by address only when one address of each family matches", async () => {
    const both = await chooseExternalInterface(node(), opts({ ifaceRegex: ["^(198\\.18\\.1\\.2|2001:2:0:1::1)$"], families: DUAL }));
    expect(addrs(both)).toMatchObject({ name: "eth1", ifaceAddr: "198.18.1.2", ifaceV6Addr: "2001:2:0:1::1" });

    // Only an IPv4 address matches: no address match in dual-stack, and no name matches either.
    const msg = await configError(node(), opts({ ifaceRegex: ["^198\\.18\\.0\\."], families: DUAL }));
    expect(msg).toContain("--iface-regex ^198\\.18\\.0\\.: matches no interface name and no IPv4+IPv6 address pair");
  });

  it("IPv6-only matches IPv6 addresses", async () => {
    const e = await chooseExternalInterface(node(), opts({ ifaceRegex: ["^2001:2:0:1:"], families: V6 }));
    expect(addrs(e)).toMatchObject({ name: "eth1", ifaceV6Addr: "2001:2:0:1::1" });
  });

  it("tries the expressions in order", async () => {
    expect((await chooseExternalInterface(node(), opts({ ifaceRegex: ["^wl", "^eth0$"] }))).name).toBe("eth0");
  });

  it("a name match without a usable address of a needed family is an error", async () => {
    expect(await configError(node(), opts({ ifaceRegex: ["^eth2$"], families: DUAL }))).toContain("eth2 has no usable IPv6 address");
  });

  it("an expression that matches nothing is an error", async () => {
    expect(await configError(node(), opts({ ifaceRegex: ["^wlan"] }))).toContain("--iface-regex ^wlan: matches no interface name");
  });

  it("an invalid expression is an error naming it", async () => {
    const msg = await configError(node(), opts({ ifaceRegex: ["eth(["] }));
    expect(msg).toContain('--iface-regex: "eth([" is not a valid regular expression');
  });
});

describe("chooseExternalInterface: --iface-can-reach", () => {
  const routes = (): RouteSpec[] => [defaultV4(), { family: "v4", dst: "198.18.64.0/18", gateway: "198.18.1.254", dev: "eth1" }, defaultV6(), { family: "v6", dst: "2001:2:8::/48", gateway: "2001:2:0:1::fe", dev: "eth1" }];

  it("uses the longest-prefix route's interface", async () => {
    expect(addrs(await chooseExternalInterface(node(routes()), opts({ ifaceCanReach: "198.18.70.1" })))).toMatchObject({ name: "eth1", ifaceAddr: "198.18.1.1" });
    expect((await chooseExternalInterface(node(routes()), opts({ ifaceCanReach: "198.18.200.1" }))).name).toBe("eth0");
  });

  it("uses the route's preferred source address", async () => {
    const k = node([defaultV4(), { family: "v4", dst: "198.18.64.0/18", gateway: "198.18.1.254", dev: "eth1", src: "198.18.1.2" }]);
    expect(addrs(await chooseExternalInterface(k, opts({ ifaceCanReach: "198.18.70.1" })))).toMatchObject({ name: "eth1", ifaceAddr: "198.18.1.2" });
  });

  it("on a connected route, the address in the target's subnet", async () => {
    const k = node();
    k.addExternalAddress({ dev: "eth2", address: "198.18.3.1/24" });
    expect(addrs(await chooseExternalInterface(k, opts({ ifaceCanReach: "198.18.3.77" })))).toMatchObject({ name: "eth2", ifaceAddr: "198.18.3.1" });
  });

  it("IPv6 targets use the IPv6 main table", async () => {
    const e = await chooseExternalInterface(node(routes()), opts({ ifaceCanReach: "2001:2:8::5", families: DUAL }));
    expect(addrs(e)).toMatchObject({ name: "eth1", ifaceAddr: "198.18.1.1", ifaceV6Addr: "2001:2:0:1::1" });
  });

  it("no route, a blackhole, or an address of this node is an error naming the target", async () => {
    expect(await configError(node(), opts({ ifaceCanReach: "198.18.70.1" }))).toContain("--iface-can-reach 198.18.70.1: the kernel has no usable route to it (`ip route get 198.18.70.1` fails");
    const k = node([defaultV4(), { family: "v4", dst: "198.18.70.0/24", type: "blackhole" }]);
    expect(await configError(k, opts({ ifaceCanReach: "198.18.70.1" }))).toContain("--iface-can-reach 198.18.70.1: the kernel has no usable route to it");
    expect(await configError(node(routes()), opts({ ifaceCanReach: "198.18.1.1" }))).toContain("--iface-can-reach 198.18.1.1: it is an address of this node");
  });

  it("an invalid target or one of a disabled family is an error", async () => {
    expect(await configError(node(), opts({ ifaceCanReach: "gateway.local" }))).toContain('--iface-can-reach: "gateway.local" is not an IP address');
    expect(await configError(node(), opts({ ifaceCanReach: "2001:2::fe" }))).toContain("IPv6 disabled");
  });

  it("--iface wins over --iface-can-reach; can-reach is the last resort", async () => {
    expect((await chooseExternalInterface(node(routes()), opts({ iface: ["eth2"], ifaceCanReach: "198.18.70.1" }))).name).toBe("eth2");
    expect((await chooseExternalInterface(node(routes()), opts({ iface: ["eth9"], ifaceCanReach: "198.18.70.1" }))).name).toBe("eth1");
  });
});

describe("usable addresses", () => {
  it("skips deprecated, loopback, multicast and unspecified addresses; global before link-local", () => {
    const list = [
      { dev: "e", address: "fe80::1/64", family: "v6" as const },
      { dev: "e", address: "2001:2::1/64", family: "v6" as const, deprecated: true },
      { dev: "e", address: "2001:2::2/64", family: "v6" as const },
      { dev: "e", address: "::1/128", family: "v6" as const },
      { dev: "e", address: "127.0.0.2/8", family: "v4" as const },
      { dev: "e", address: "0.0.0.0/32", family: "v4" as const },
      { dev: "e", address: "198.18.0.1/24", family: "v4" as const },
    ];
    expect(usableAddresses(list, "e", "v6").map((a) => a.ip.toString())).toEqual(["2001:2::2", "fe80::1"]);
    expect(usableAddresses(list, "e", "v4").map((a) => a.ip.toString())).toEqual(["198.18.0.1"]);
  });

  it("both families disabled is an error", async () => {
    expect(await configError(node(), opts({ families: { v4: false, v6: false } }))).toContain("EnableIPv4");
  });

  it("addresses come back as IPAddress values", async () => {
    const e = await chooseExternalInterface(node([defaultV4()]), opts());
    expect(e.ifaceAddr).toBeInstanceOf(IPAddress);
  });
});
