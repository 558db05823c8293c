/**
 * Unit tests of the adapter's pure parts, on output captured from iproute2 6.1 on the dev VM. The real
 * adapter against the real kernel is tested by the contract suite in @weft/kernel-testing (netns tier).
 */
import { describe, expect, it } from "vitest";
import type { KernelOp } from "../port.js";
import { BatchExecutor, type BatchRunner, batchInput, parseBatchStderr, SENTINEL } from "./batch.js";
import { classifyKernelMessage } from "./classify.js";
import { compileOp } from "./commands.js";
import { parseAddresses, parseFdb, parseLinks, parseNeighbours, parseRoutes } from "./parse.js";
import { LinkKinds } from "./link-kinds.js";
import { InvalidValue } from "./validate.js";
import type { LinkKindDefinition } from "@weft/core";

describe("parseRoutes", () => {
  const v4 = JSON.parse(
    '[{"type":"1","dst":"default","gateway":"198.18.5.2","dev":"wka0","protocol":"16","scope":"0","flags":[]},' +
      '{"type":"1","dst":"198.18.5.0/24","dev":"wka0","protocol":"2","scope":"253","prefsrc":"198.18.5.1","flags":[]},' +
      '{"type":"6","dst":"198.19.7.0/24","protocol":"87","scope":"0","flags":[]},' +
      '{"type":"1","dst":"198.19.8.0/24","gateway":"198.19.9.9","dev":"wkv0","protocol":"87","scope":"0","prefsrc":"198.19.9.0","metric":5,"flags":["onlink"],"metrics":[{"mtu":1400}]},' +
      '{"type":"1","dst":"198.19.13.1","dev":"wka0","protocol":"87","scope":"253","flags":[]},' +
      '{"type":"2","dst":"198.18.5.1","dev":"wka0","table":"255","protocol":"2","scope":"254","prefsrc":"198.18.5.1","flags":[]}]',
  );

  it("normalises default, host routes, numbers and flags", () => {
    const routes = parseRoutes(v4, { family: "v4", table: 254 });
    expect(routes).toEqual([
      { family: "v4", dst: "0.0.0.0/0", type: "unicast", table: 254, protocol: 16, scope: "global", gateway: "198.18.5.2", dev: "wka0" },
      { family: "v4", dst: "198.18.5.0/24", type: "unicast", table: 254, protocol: 2, scope: "link", dev: "wka0", src: "198.18.5.1" },
      { family: "v4", dst: "198.19.7.0/24", type: "blackhole", table: 254, protocol: 87, scope: "global" },
      {
        family: "v4", dst: "198.19.8.0/24", type: "unicast", table: 254, protocol: 87, scope: "global", gateway: "198.19.9.9",
        dev: "wkv0", onlink: true, metric: 5, src: "198.19.9.0", mtu: 1400,
      },
      { family: "v4", dst: "198.19.13.1/32", type: "unicast", table: 254, protocol: 87, scope: "link", dev: "wka0" },
    ]);
  });

  it("fills in the table and protocol the query filtered on (ip leaves them out)", () => {
    const [r] = parseRoutes([{ dst: "2001:2:0:9::/64", gateway: "2001:2:0:5::3", dev: "wka0", metric: 1024, flags: [] }], {
      family: "v6",
      table: 300,
      protocol: 87,
    });
    expect(r).toEqual({ family: "v6", dst: "2001:2:0:9::/64", type: "unicast", table: 300, protocol: 87, scope: "global", gateway: "2001:2:0:5::3", dev: "wka0", metric: 1024 });
  });

  it("maps names back to numbers when a route comes without -N, and drops dev lo of unreachable v6 routes", () => {
    const [r] = parseRoutes([{ type: "unreachable", dst: "2001:2:0:99::/64", dev: "lo", table: "main", protocol: "boot", scope: "global", metric: 1024, flags: [] }], {
      family: "v6",
    });
    expect(r).toEqual({ family: "v6", dst: "2001:2:0:99::/64", type: "unreachable", table: 254, protocol: 3, scope: "global", metric: 1024 });
  });

  it("compresses IPv6 text", () => {
    const [r] = parseRoutes([{ type: "1", dst: "2001:0002:0000:0009:0000:0000:0000:0000/64", table: "254", protocol: "87", scope: "0", metric: 1024, flags: [] }], {
      family: "v6",
    });
    expect(r!.dst).toBe("2001:2:0:9::/64");
  });
});

describe("parseAddresses", () => {
  it("marks deprecated addresses (the flag, or a preferred lifetime of 0) and keeps the scope", () => {
    const j = [
      {
        ifname: "eth0",
        addr_info: [
          { family: "inet", local: "198.18.0.1", prefixlen: 24, scope: "global", deprecated: true, preferred_life_time: 4294967295 },
          { family: "inet6", local: "2001:2::5", prefixlen: 64, scope: "global", preferred_life_time: 0 },
          { family: "inet6", local: "2001:2::6", prefixlen: 64, scope: "global", preferred_life_time: 4294967295 },
        ],
      },
    ];
    expect(parseAddresses(j)).toEqual([
      { dev: "eth0", address: "198.18.0.1/24", family: "v4", scope: "global", deprecated: true },
      { dev: "eth0", address: "2001:2::5/64", family: "v6", scope: "global", deprecated: true },
      { dev: "eth0", address: "2001:2::6/64", family: "v6", scope: "global" },
    ]);
  });
});

describe("parseLinks", () => {
  it("reads vxlan attributes, veth peers and kinds Weft does not create", () => {
    const links = parseLinks([
      { ifindex: 1, ifname: "lo", flags: ["LOOPBACK", "UP"], mtu: 65536, operstate: "UNKNOWN", link_type: "loopback", address: "00:00:00:00:00:00" },
      { ifindex: 8, link: "wka1", ifname: "wka0", flags: ["BROADCAST", "UP"], mtu: 1500, operstate: "UP", address: "02:9C:4B:EE:28:CC", linkinfo: { info_kind: "veth" }, inet6_addr_gen_mode: "eui64" },
      { ifindex: 14, link_index: 2, link_netnsid: 0, ifname: "wkq0", flags: [], mtu: 1500, linkinfo: { info_kind: "veth" } },
      {
        ifindex: 10, ifname: "wkv1", flags: ["BROADCAST"], mtu: 1430, master: "wkbr", address: "7a:5d:48:2e:d6:d8",
        linkinfo: { info_kind: "vxlan", info_data: { id: 6, local6: "2001:2:0:5:0::1", link: "wka0", port: 4789, learning: true, gbp: true } },
        inet6_addr_gen_mode: "none",
      },
      { ifindex: 11, ifname: "wkv2", flags: [], mtu: 1500, linkinfo: { info_kind: "vxlan", info_data: { id: 7, link: 8, port: 8472, learning: false } } },
      { ifindex: 5, ifname: "wkt0", flags: [], mtu: 1500, link_type: "none", linkinfo: { info_kind: "tun", info_data: { type: "tap" } } },
    ]);
    expect(links.map((l) => [l.name, l.kind, l.rawKind])).toEqual([
      ["lo", "loopback", "loopback"],
      ["wka0", "veth", "veth"],
      ["wkq0", "veth", "veth"],
      ["wkv1", "vxlan", "vxlan"],
      ["wkv2", "vxlan", "vxlan"],
      ["wkt0", "tun", "tun"],
    ]);
    expect(links[1]).toMatchObject({ up: true, address: "02:9c:4b:ee:28:cc", veth: { peer: "wka1" }, addrGenMode: "eui64" });
    expect(links[2]!.veth).toBeUndefined();
    expect(links[3]).toMatchObject({ up: false, master: "wkbr", addrGenMode: "none" });
    expect(links[3]!.vxlan).toEqual({ vni: 6, port: 4789, local: "2001:2:0:5::1", dev: "wka0", learning: true, gbp: true });
    expect(links[4]!.vxlan).toEqual({ vni: 7, port: 8472, dev: "wka0", learning: false, gbp: false });
    expect(links[5]!.tun).toEqual({ mode: "tap" });
  });
});

describe("parseNeighbours / parseFdb", () => {
  it("keeps configured entries, drops kernel multicast NOARP entries, fills dev from the query", () => {
    const n = parseNeighbours(
      [
        { dst: "198.18.5.2", state: ["FAILED"] },
        { dst: "198.18.5.9", lladdr: "AA:BB:CC:DD:EE:09", state: ["PERMANENT"] },
        { dst: "ff02::16", lladdr: "33:33:00:00:00:16", state: ["NOARP"] },
        { dst: "224.0.0.22", lladdr: "01:00:5e:00:00:16", state: ["NOARP"] },
        { dst: "0.0.0.0", lladdr: "00:00:00:00:00:00", state: ["NOARP"] },
      ],
      "wka0",
    );
    expect(n).toEqual([
      { dev: "wka0", ip: "198.18.5.2", state: "failed" },
      { dev: "wka0", ip: "198.18.5.9", lladdr: "aa:bb:cc:dd:ee:09", state: "permanent" },
    ]);
  });

  it("reads self/master and permanent", () => {
    const f = parseFdb(
      [
        { mac: "02:00:00:00:00:07", flags: [], master: "wkbr", state: "permanent" },
        { mac: "00:00:00:00:00:00", dst: "2001:2:0:5::8", flags: ["self"], state: "permanent" },
      ],
      "wkv1",
    );
    expect(f).toEqual([
      { dev: "wkv1", mac: "02:00:00:00:00:07", self: false, permanent: true },
      { dev: "wkv1", mac: "00:00:00:00:00:00", dst: "2001:2:0:5::8", self: true, permanent: true },
    ]);
  });
});

describe("batch stderr", () => {
  it("attributes failures by line number and skips sentinels and warnings", () => {
    // 3 op lines, a sentinel after op 1 and after the last: op 0 fails, op 1 succeeds with a warning, op 2 fails.
    const { input, layout } = batchInput(["a", "b", "c"], (i) => i === 1);
    expect(input).toBe(`a\nb\n${SENTINEL}\nc\n${SENTINEL}\n`);
    const stderr = [
      "RTNETLINK answers: File exists",
      "Command failed -:1",
      "Warning: something harmless",
      `Object "${SENTINEL}" is unknown, try "ip help".`,
      "Command failed -:3",
      "Error: Nexthop has invalid gateway.",
      "Command failed -:4",
      `Object "${SENTINEL}" is unknown, try "ip help".`,
      "Command failed -:5",
      "",
    ].join("\n");
    expect(parseBatchStderr(stderr, layout)).toEqual({
      failures: [
        { index: 0, message: "RTNETLINK answers: File exists" },
        { index: 2, message: "Error: Nexthop has invalid gateway." },
      ],
      doneThrough: 2,
      trailing: "",
    });
  });

  it("reports how far a process got that stopped early (ip neigh exits on kernel errors)", () => {
    const { layout } = batchInput(["a", "b", "c"], () => true);
    const stderr = [`Object "${SENTINEL}" is unknown, try "ip help".`, "Command failed -:2", "RTNETLINK answers: File exists", ""].join("\n");
    expect(parseBatchStderr(stderr, layout)).toEqual({ failures: [], doneThrough: 0, trailing: "RTNETLINK answers: File exists" });
  });
});

/**
 * A stand-in for `ip -force -batch -` with iproute2's reporting rules, driven by destinations: 198.19.66.x
 * ends the process (like an ip neigh kernel error), 198.19.77.x fails alone. Everything else succeeds.
 */
function simulatedIp(calls: string[][]): BatchRunner {
  return async (_tool, input) => {
    const lines = input.split("\n").filter(Boolean);
    calls.push(lines.filter((l) => l !== SENTINEL));
    let stderr = "";
    for (let n = 1; n <= lines.length; n++) {
      const l = lines[n - 1]!;
      if (l === SENTINEL) stderr += `Object "${SENTINEL}" is unknown, try "ip help".\nCommand failed -:${n}\n`;
      else if (l.includes("198.19.66.")) return { exitCode: 2, stdout: "", stderr: `${stderr}RTNETLINK answers: Invalid argument\n` };
      else if (l.includes("198.19.77.")) stderr += `RTNETLINK answers: File exists\nCommand failed -:${n}\n`;
    }
    return { exitCode: stderr ? 1 : 0, stdout: "", stderr };
  };
}

describe("BatchExecutor", () => {
  const route = (net: string): KernelOp => ({ op: "route.add", route: { family: "v4", dst: `${net}/24`, dev: "eth0" } });

  it("finds an unexpected stop inside a stretch without sentinels by probing, and carries on after it", async () => {
    const calls: string[][] = [];
    const ex = new BatchExecutor(simulatedIp(calls), async () => new Set());
    const ops = [route("198.19.1.0"), route("198.19.77.0"), route("198.19.2.0"), route("198.19.66.0"), route("198.19.3.0"), route("198.19.4.0")];
    const results = await ex.apply(ops);
    expect(results.map((r) => (r.ok ? "ok" : r.error.code))).toEqual(["ok", "KERNEL_EXISTS", "ok", "KERNEL_INVALID", "ok", "ok"]);
    // first run (stops at #3), probe of the candidates #2..#5 (stops at #3 again), then #4..#5.
    expect(calls.map((c) => c.length)).toEqual([6, 4, 2]);
  });

  it("answers obviously failing neighbour ops from one table read after a neighbour op ended a process", async () => {
    const calls: string[][] = [];
    let reads = 0;
    const ex = new BatchExecutor(simulatedIp(calls), async () => {
      reads++;
      return new Set(["eth0 198.19.1.9"]);
    });
    const n = (op: "neigh.add" | "neigh.del" | "neigh.replace", ip: string): KernelOp => ({ op, neigh: { dev: "eth0", ip, lladdr: "aa:bb:cc:dd:ee:ff", state: "permanent" } });
    const results = await ex.apply([n("neigh.replace", "198.19.66.1"), n("neigh.add", "198.19.1.9"), n("neigh.del", "198.19.1.8"), n("neigh.add", "198.19.1.7"), n("neigh.del", "198.19.1.7")]);
    expect(results.map((r) => (r.ok ? "ok" : r.error.code))).toEqual(["KERNEL_INVALID", "KERNEL_EXISTS", "KERNEL_NOT_FOUND", "ok", "ok"]);
    expect(reads).toBe(1);
    // first run, a probe (neigh.replace gets no sentinel, so #0 and #1 were both candidates), then #3..#4.
    expect(calls.map((c) => c.length)).toEqual([5, 2, 2]);
  });

  it("throws when the process says nothing and stops (killed): that is a broken transport, not an op failure", async () => {
    const ex = new BatchExecutor(async () => ({ exitCode: 137, stdout: "", stderr: "" }), async () => new Set());
    await expect(ex.apply([route("198.19.1.0")])).rejects.toMatchObject({ code: "KERNEL_FAILED" });
  });
});

describe("classification", () => {
  it.each([
    ["RTNETLINK answers: File exists", "KERNEL_EXISTS"],
    ["Error: ipv4: Address already assigned.", "KERNEL_EXISTS"],
    ["ioctl(TUNSETIFF): Device or resource busy", "KERNEL_EXISTS"],
    ["RTNETLINK answers: No such process", "KERNEL_NOT_FOUND"],
    ["Error: ipv6: address not found.", "KERNEL_NOT_FOUND"],
    ['Cannot find device "nosuch"', "KERNEL_NOT_FOUND"],
    ['Error: argument "nosuch" is wrong: Device does not exist', "KERNEL_NOT_FOUND"],
    ["Error: Nexthop has invalid gateway.", "KERNEL_INVALID"],
    ["RTNETLINK answers: No route to host", "KERNEL_INVALID"],
    ["RTNETLINK answers: Invalid argument", "KERNEL_INVALID"],
    ["Error: Nexthop device is not up.", "KERNEL_INVALID"],
    ['Error: either "to" is duplicate, or "bogus" is a garbage.', "KERNEL_INVALID"],
    ["RTNETLINK answers: Address family not supported by protocol", "KERNEL_INVALID"],
    ["Error: Unknown device type.", "KERNEL_UNSUPPORTED"],
    ["RTNETLINK answers: Operation not supported", "KERNEL_UNSUPPORTED"],
    ["RTNETLINK answers: Operation not permitted", "KERNEL_PERMISSION"],
    ["RTNETLINK answers: No buffer space available", "KERNEL_TRANSIENT"],
    ["RTNETLINK answers: Device or resource busy", "KERNEL_TRANSIENT"],
    ["something else entirely", "KERNEL_FAILED"],
  ])("%s -> %s", (text, code) => {
    expect(classifyKernelMessage(text)).toBe(code);
  });
});

describe("compileOp", () => {
  it("puts every value after its keyword", () => {
    expect(compileOp({ op: "route.add", route: { family: "v4", dst: "198.19.2.0/24", gateway: "198.19.2.0", dev: "weft.1", onlink: true, protocol: 87 } }).lines).toEqual([
      "route add 198.19.2.0/24 via 198.19.2.0 dev weft.1 onlink proto 87",
    ]);
    expect(compileOp({ op: "route.del", route: { family: "v6", dst: "2001:2:0:9::/64", dev: "eth0", metric: 1024, scope: "link", src: "2001:2::1", protocol: 87 } }).lines).toEqual([
      "route del 2001:2:0:9::/64 dev eth0 proto 87 metric 1024",
    ]);
    expect(compileOp({ op: "neigh.replace", neigh: { dev: "up", ip: "198.19.2.0", lladdr: "AA-BB-CC-DD-EE-FF", state: "permanent" } }).lines).toEqual([
      "neigh replace 198.19.2.0 lladdr aa:bb:cc:dd:ee:ff dev up nud permanent",
    ]);
    expect(compileOp({ op: "fdb.append", fdb: { dev: "weft.1", mac: "00:00:00:00:00:00", dst: "198.18.0.2", self: true, permanent: true } })).toEqual({
      tool: "bridge",
      lines: ["fdb append 00:00:00:00:00:00 dev weft.1 dst 198.18.0.2 self permanent"],
      followUps: [],
    });
  });

  it("adds `nodad` to IPv6 address adds and replaces only (ip warns about it for IPv4; del has no use for it)", () => {
    const line = (op: "addr.add" | "addr.replace" | "addr.del", address: string) => compileOp({ op, addr: { dev: "eth0", address, nodad: true } }).lines;
    expect(line("addr.add", "2001:2:0:5::2/64")).toEqual(["addr add 2001:2:0:5::2/64 dev eth0 nodad"]);
    expect(line("addr.replace", "2001:2:0:5::1/64")).toEqual(["addr replace 2001:2:0:5::1/64 dev eth0 nodad"]);
    expect(line("addr.del", "2001:2:0:5::2/64")).toEqual(["addr del 2001:2:0:5::2/64 dev eth0"]);
    expect(line("addr.add", "198.19.5.2/24")).toEqual(["addr add 198.19.5.2/24 dev eth0"]);
    expect(compileOp({ op: "addr.add", addr: { dev: "eth0", address: "2001:2:0:5::2/64" } }).lines).toEqual(["addr add 2001:2:0:5::2/64 dev eth0"]);
  });

  it("creates links in one line unless a setting must follow the create", () => {
    expect(
      compileOp({
        op: "link.add",
        link: { name: "weft.1", kind: "vxlan", mtu: 1450, up: true, vxlan: { vni: 1, local: "198.18.0.1", dev: "eth0", learning: false } },
      }),
    ).toEqual({
      tool: "ip",
      lines: ["link add name weft.1 mtu 1450 up type vxlan id 1 local 198.18.0.1 dev eth0 dstport 8472 nolearning"],
      followUps: [],
    });
    expect(compileOp({ op: "link.add", link: { name: "weft.1", kind: "vxlan", up: true, addrGenMode: "none", vxlan: { vni: 1, gbp: true, learning: true } } })).toEqual({
      tool: "ip",
      lines: ["link add name weft.1 type vxlan id 1 dstport 8472 learning gbp"],
      followUps: ["link set dev weft.1 addrgenmode none", "link set dev weft.1 up"],
    });
    expect(compileOp({ op: "link.add", link: { name: "wt0", kind: "tun", mtu: 1420, up: true } })).toEqual({
      tool: "ip",
      lines: ["tuntap add dev wt0 mode tun"],
      followUps: ["link set dev wt0 mtu 1420 up"],
    });
    expect(compileOp({ op: "link.set", name: "wt0", up: true, master: null, addrGenMode: "none" }).lines).toEqual([
      "link set dev wt0 nomaster",
      "link set dev wt0 addrgenmode none",
      "link set dev wt0 up",
    ]);
  });

  const injections: KernelOp[] = [
    { op: "link.del", name: "x dev y" },
    { op: "link.del", name: "-force" },
    { op: "link.add", link: { name: "a", kind: "veth", veth: { peer: "b\nlink del eth0" } } },
    { op: "route.add", route: { family: "v4", dst: "198.19.0.0/16 table 5", dev: "eth0" } },
    { op: "route.add", route: { family: "v4", dst: "198.19.0.0/16", gateway: "2001:2::1" } },
    { op: "route.add", route: { family: "v4", dst: "198.19.0.1/16", dev: "eth0" } },
    { op: "route.add", route: { family: "v4", dst: "198.19.0.0/16", dev: "eth0", metric: 1.5 } },
    { op: "neigh.replace", neigh: { dev: "eth0", ip: "198.19.0.1", lladdr: "aa:bb:cc:dd:ee:ff nud noarp", state: "permanent" } },
    { op: "fdb.append", fdb: { dev: "eth0", mac: "00:00:00:00:00:00", dst: '198.18.0.1"', self: true, permanent: true } },
    { op: "addr.add", addr: { dev: "eth0", address: "198.19.0.1/24 dev lo" } },
    { op: "link.add", link: { name: "v", kind: "veth", veth: { peer: "w", peerNetns: "../../etc" } } },
  ];
  it.each(injections.map((op) => [JSON.stringify(op), op] as const))("refuses %s", (_t, op) => {
    expect(() => compileOp(op)).toThrow(InvalidValue);
  });
});

describe("contributed link kinds (gre is not in this machine's kernel: argv and read-back are checked here)", () => {
  const gre: LinkKindDefinition = {
    kind: "gre",
    createArgs: (l, check) => ["remote", check.address("link.attrs.remote", String(l.attrs?.remote)), "ttl", check.integer("link.attrs.ttl", Number(l.attrs?.ttl ?? 64), 1, 255)],
    read: (info, _entry, ctx) => ({ attrs: { remote: ctx.ip(info.remote) ?? "", ttl: Number(info.ttl ?? 0), dev: ctx.devName(info.link) ?? "" } }),
    incompatibility: (d, a) => (d.attrs?.remote !== a.attrs?.remote ? "remote differs" : undefined),
  };
  const kinds = new LinkKinds([gre]);

  it("builds `link add ... type gre <the definition's arguments>`, generic attributes before type", () => {
    expect(compileOp({ op: "link.add", link: { name: "weft-gre0", kind: "gre", mtu: 1476, up: true, attrs: { remote: "198.18.0.2", ttl: 32 } } }, kinds).lines).toEqual([
      "link add name weft-gre0 mtu 1476 up type gre remote 198.18.0.2 ttl 32",
    ]);
    expect(() => compileOp({ op: "link.add", link: { name: "weft-gre0", kind: "gre", attrs: { remote: "198.18.0.2 dev lo" } } }, kinds)).toThrow(InvalidValue);
    expect(() => compileOp({ op: "link.add", link: { name: "weft-gre0", kind: "gre" } })).toThrow(/kind "gre" is unknown/);
  });

  it("reads the kind's attributes back through its definition; unknown kinds keep the kernel's name", () => {
    const links = parseLinks(
      [
        { ifindex: 2, ifname: "eth0", flags: ["UP"], mtu: 1500, linkinfo: { info_kind: "veth" } },
        { ifindex: 7, ifname: "weft-gre0", flags: [], mtu: 1476, linkinfo: { info_kind: "gre", info_data: { remote: "198.18.0.2", ttl: 32, link: "eth0" } } },
        { ifindex: 8, ifname: "x0", flags: [], mtu: 1500, linkinfo: { info_kind: "macsec" } },
      ],
      kinds,
    );
    expect(links[1]).toMatchObject({ name: "weft-gre0", kind: "gre", attrs: { remote: "198.18.0.2", ttl: 32, dev: "eth0" } });
    expect(links[2]).toMatchObject({ kind: "macsec" });
    expect(links[2]!.attrs).toBeUndefined();
  });
});
