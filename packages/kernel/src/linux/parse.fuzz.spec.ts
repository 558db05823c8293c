/**
 * Property-based tests of the iproute2 `-json` readers (issue 15): whatever `ip` / `bridge` prints, LinuxKernel's
 * reads (links, addresses, routes, route get, neighbours, FDB) return values or throw a KernelError — never a
 * TypeError, never a hang; and well-formed output, rendered the way iproute2 6.1 prints it (with the quirks
 * parse.ts documents), reads back as the objects it was rendered from.
 */
import { type FdbSpec, IPAddress, type Link, type RouteSpec } from "@weft/core";
import { fc, fuzz, fuzzAsync, hostileJsonText, hostileString } from "@weft/fuzz";
import { describe, expect, it } from "vitest";
import { type Address, KernelError, type Neighbour } from "../port.js";
import type { ProcessRunner } from "../process.js";
import { LinuxKernel } from "./linux-kernel.js";

/**
 * An object with keys drawn from `key` (repeats: the last wins) and values from `value`. Not fc.dictionary: that
 * one costs milliseconds per value (its keys go through a unique-array search), 10,000 cases made it minutes.
 */
function objectOf<V>(key: fc.Arbitrary<string>, value: fc.Arbitrary<V>, options: { maxKeys?: number } = {}): fc.Arbitrary<Record<string, V>> {
  return fc.array(fc.tuple(key, value), { maxLength: options.maxKeys ?? 5 }).map((e) => Object.fromEntries(e) as Record<string, V>);
}
import { parseAddresses, parseFdb, parseLinks, parseNeighbours, parseRoutes } from "./parse.js";

/** The fields the readers look at, so hostile values land where they are read. */
const IP_KEYS = [
  "ifindex", "ifname", "flags", "mtu", "operstate", "address", "master", "link", "link_type", "link_index", "linkinfo", "info_kind", "info_data",
  "inet6_addr_gen_mode", "addr_info", "family", "local", "prefixlen", "scope", "deprecated", "preferred_life_time", "dst", "type", "table",
  "protocol", "gateway", "dev", "prefsrc", "metric", "metrics", "nexthops", "lladdr", "state", "mac", "vni", "port", "learning", "peer",
  "__proto__", "toString", "valueOf", "constructor",
];

/** JSON values as fields (deep nesting comes from hostileJsonText below: JSON.stringify of it inside entries would overflow here). */
const fieldJson = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constantFrom(null, -0, 1e308, Number.MAX_SAFE_INTEGER + 2, 0.5, -1, 65536, 4294967296, {}, [], { toString: 1 }, { valueOf: null }));

const hostileField = fc.oneof(
  { weight: 4, arbitrary: fieldJson },
  { weight: 2, arbitrary: hostileString(24) },
  { weight: 1, arbitrary: fc.array(fc.oneof(hostileString(8), fc.constantFrom("UP", "self", "onlink", "PERMANENT"), fieldJson), { maxLength: 4 }) },
);
/** An entry shaped like iproute2's, with hostile values, and a second level (linkinfo.info_data, addr_info[], metrics[]). */
const hostileEntry: fc.Arbitrary<unknown> = objectOf(
  fc.constantFrom(...IP_KEYS),
  fc.oneof(
    { weight: 4, arbitrary: hostileField },
    { weight: 1, arbitrary: objectOf(fc.constantFrom(...IP_KEYS), hostileField, { maxKeys: 5 }) },
    { weight: 1, arbitrary: fc.array(objectOf(fc.constantFrom(...IP_KEYS), hostileField, { maxKeys: 5 }), { maxLength: 3 }) },
  ),
  { maxKeys: 8 },
);

/** What `ip -json` might print: hostile JSON text, arrays of hostile entries, or no JSON at all. */
const ipOutput: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.array(hostileEntry, { maxLength: 5 }).map((a) => JSON.stringify(a)) },
  { weight: 2, arbitrary: hostileJsonText(IP_KEYS) },
  { weight: 1, arbitrary: hostileString(200) },
);

/** A LinuxKernel whose every `ip` / `bridge` run prints `stdout.text` and exits 0. */
function kernelPrinting(): { kernel: LinuxKernel; stdout: { text: string } } {
  const stdout = { text: "" };
  const runner: ProcessRunner = {
    run: async () => ({ exitCode: 0, stdout: stdout.text, stderr: "" }),
    spawn: () => {
      throw new Error("no processes here");
    },
  };
  return { kernel: new LinuxKernel({ runner }), stdout };
}

describe("ip -json readers on hostile output", () => {
  it("every read returns values or throws a KernelError, never anything else and never hangs", async () => {
    const { kernel, stdout } = kernelPrinting();
    const reads: Array<() => Promise<unknown>> = [
      () => kernel.listLinks(),
      () => kernel.listAddresses(),
      () => kernel.listRoutes({ family: "v4", table: 254, protocol: 87 }),
      () => kernel.listRoutes({ family: "v6", table: "all" }),
      () => kernel.routeGet("198.18.0.1"),
      () => kernel.listNeighbours({}),
      () => kernel.listNeighbours({ dev: "weft.1", family: "v6" }),
      () => kernel.listFdb({ dev: "weft.1" }),
    ];
    // One read per case (which one is part of the case): 10,000 cases spread over the eight reads.
    await fuzzAsync("kernel: ip -json readers never throw but KernelError", fc.tuple(fc.nat(reads.length - 1), ipOutput), async ([which, text]) => {
      stdout.text = text;
      try {
        await reads[which]!();
      } catch (err) {
        if (!(err instanceof KernelError)) throw new Error(`read #${which}: not a KernelError on ${JSON.stringify(text.slice(0, 200))}: ${String(err)}`);
      }
    });
  }, 240_000);
});

// --- Well-formed output: objects -> what iproute2 prints -> the readers -> the same objects -------------------

const v4 = fc.tuple(fc.integer({ min: 18, max: 19 }), fc.nat(255), fc.nat(255)).map(([b, c, d]) => `198.${b}.${c}.${d}`);
const v6 = fc.tuple(fc.nat(0xffff), fc.nat(0xffff)).map(([a, b]) => IPAddress.parse(`2001:2:0:${a.toString(16)}::${b.toString(16)}`).toString());
const ifname = fc.tuple(fc.constantFrom("weft", "eth", "br", "wg", "veth", "a.b", "x_y-z"), fc.nat(9999)).map(([p, n]) => `${p}${n}`);
const mac = fc.array(fc.nat(255), { minLength: 6, maxLength: 6 }).map((b) => b.map((x) => x.toString(16).padStart(2, "0")).join(":"));

const address: fc.Arbitrary<Address> = fc.oneof(
  fc.record({ dev: ifname, ip: v4, len: fc.integer({ min: 8, max: 32 }), scope: fc.option(fc.constantFrom("global", "link", "host"), { nil: undefined }), deprecated: fc.boolean() }).map(
    (a) => ({ dev: a.dev, address: `${a.ip}/${a.len}`, family: "v4" as const, ...(a.scope ? { scope: a.scope } : {}), ...(a.deprecated ? { deprecated: true as const } : {}) }),
  ),
  fc.record({ dev: ifname, ip: v6, len: fc.integer({ min: 48, max: 128 }), scope: fc.option(fc.constantFrom("global", "link"), { nil: undefined }), deprecated: fc.boolean() }).map(
    (a) => ({ dev: a.dev, address: `${a.ip}/${a.len}`, family: "v6" as const, ...(a.scope ? { scope: a.scope } : {}), ...(a.deprecated ? { deprecated: true as const } : {}) }),
  ),
);

/** `ip -json addr show`: one entry per device with its addr_info. */
function renderAddresses(list: readonly Address[]): string {
  const byDev = new Map<string, unknown[]>();
  for (const a of list) {
    const [local, len] = a.address.split("/");
    const info = {
      family: a.family === "v4" ? "inet" : "inet6",
      local,
      prefixlen: Number(len),
      ...(a.scope ? { scope: a.scope } : {}),
      ...(a.deprecated ? { deprecated: true } : {}),
      valid_life_time: 4294967295,
      preferred_life_time: a.deprecated ? 0 : 4294967295,
    };
    byDev.set(a.dev, [...(byDev.get(a.dev) ?? []), info]);
  }
  return JSON.stringify([...byDev].map(([dev, addr_info], i) => ({ ifindex: i + 1, ifname: dev, flags: ["UP"], mtu: 1500, addr_info })));
}

const SCOPE_NUM = { global: "0", link: "253", host: "254" } as const;
const TYPE_NUM = { unicast: "1", blackhole: "6", unreachable: "7", prohibit: "8" } as const;

const route = (family: "v4" | "v6"): fc.Arbitrary<RouteSpec> =>
  fc
    .record({
      ip: family === "v4" ? v4 : v6,
      len: family === "v4" ? fc.integer({ min: 0, max: 32 }) : fc.integer({ min: 0, max: 128 }),
      type: fc.constantFrom("unicast", "unicast", "blackhole", "unreachable", "prohibit"),
      table: fc.constantFrom(254, 255, 300, 1000),
      protocol: fc.constantFrom(2, 4, 16, 87),
      scope: fc.constantFrom("global", "link", "host"),
      gateway: fc.option(family === "v4" ? v4 : v6, { nil: undefined }),
      dev: ifname,
      onlink: fc.boolean(),
      metric: fc.option(fc.integer({ min: 1, max: 100_000 }), { nil: undefined }),
      src: fc.option(family === "v4" ? v4 : v6, { nil: undefined }),
      mtu: fc.option(fc.integer({ min: 576, max: 9000 }), { nil: undefined }),
    })
    .map((r) => {
      const dst = r.len === 0 ? (family === "v4" ? "0.0.0.0/0" : "::/0") : `${r.ip}/${r.len}`;
      const out: { -readonly [K in keyof RouteSpec]?: RouteSpec[K] } = { family, dst, type: r.type, table: r.table, protocol: r.protocol, scope: r.scope };
      if (r.gateway) out.gateway = r.gateway;
      if (r.type === "unicast") out.dev = r.dev;
      if (r.onlink) out.onlink = true;
      if (family === "v6") out.metric = r.metric ?? 1024;
      else if (r.metric !== undefined) out.metric = r.metric;
      if (r.src) out.src = r.src;
      if (r.mtu !== undefined) out.mtu = r.mtu;
      return out as RouteSpec;
    });

/** `ip -N -json -d route show table all`: numbers as strings, host routes without a length, `default`, dev lo on v6 drop routes. */
function renderRoutes(list: readonly RouteSpec[]): string {
  return JSON.stringify(
    list.map((r) => {
      const [ip, len] = r.dst.split("/");
      const host = (r.family === "v4" && len === "32") || (r.family === "v6" && len === "128");
      const dst = len === "0" ? "default" : host ? ip : r.dst;
      return {
        type: TYPE_NUM[r.type ?? "unicast"],
        dst,
        ...(r.gateway ? { gateway: r.gateway } : {}),
        ...(r.dev ? { dev: r.dev } : r.family === "v6" ? { dev: "lo" } : {}),
        table: String(r.table),
        protocol: String(r.protocol),
        scope: SCOPE_NUM[r.scope ?? "global"],
        ...(r.metric !== undefined ? { metric: r.metric } : {}),
        ...(r.src ? { prefsrc: r.src } : {}),
        flags: r.onlink ? ["onlink"] : [],
        ...(r.mtu !== undefined ? { metrics: [{ mtu: r.mtu }] } : {}),
      };
    }),
  );
}

const neighbour: fc.Arbitrary<Neighbour> = fc
  .record({ dev: ifname, ip: fc.oneof(v4, v6), states: fc.subarray(["permanent", "noarp", "reachable", "stale", "failed"], { minLength: 1, maxLength: 2 }), lladdr: fc.option(mac, { nil: undefined }) })
  .map((n) => ({ dev: n.dev, ip: n.ip, state: n.states.join(","), ...(n.lladdr ? { lladdr: n.lladdr } : {}) }));

function renderNeighbours(list: readonly Neighbour[], omitDev: boolean): string {
  return JSON.stringify(list.map((n) => ({ dst: n.ip, ...(omitDev ? {} : { dev: n.dev }), ...(n.lladdr ? { lladdr: n.lladdr } : {}), state: n.state.split(",").map((s) => s.toUpperCase()) })));
}

const fdb = (dev: string): fc.Arbitrary<FdbSpec> =>
  fc.record({ mac, dst: fc.option(fc.oneof(v4, v6), { nil: undefined }), self: fc.boolean(), permanent: fc.boolean() }).map((f) => ({ dev, mac: f.mac, ...(f.dst ? { dst: f.dst } : {}), self: f.self, permanent: f.permanent }));

function renderFdb(list: readonly FdbSpec[], omitDev: boolean): string {
  return JSON.stringify(list.map((f) => ({ mac: f.mac, ...(omitDev ? {} : { dev: f.dev }), ...(f.dst ? { dst: f.dst } : {}), flags: f.self ? ["self"] : [], state: f.permanent ? "permanent" : "" })));
}

/** Links of kinds without attributes Weft reads (bridge, dummy, wireguard) and of kinds Weft does not create. */
const link: fc.Arbitrary<Link> = fc
  .record({
    name: ifname,
    kind: fc.constantFrom("bridge", "dummy", "wireguard", "macvlan"),
    up: fc.boolean(),
    mtu: fc.integer({ min: 68, max: 65535 }),
    address: fc.option(mac, { nil: undefined }),
    operState: fc.option(fc.constantFrom("UP", "DOWN", "UNKNOWN"), { nil: undefined }),
    master: fc.option(ifname, { nil: undefined }),
    addrGenMode: fc.option(fc.constantFrom("eui64", "none", "stable_secret", "random"), { nil: undefined }),
  })
  .map((l) => ({ ...l }) as never);

function renderLinks(list: readonly Link[]): string {
  return JSON.stringify(
    list.map((l) => ({
      ifindex: l.index,
      ifname: l.name,
      flags: l.up ? ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"] : ["BROADCAST", "MULTICAST"],
      mtu: l.mtu,
      ...(l.operState ? { operstate: l.operState } : {}),
      ...(l.master ? { master: l.master } : {}),
      link_type: "ether",
      ...(l.address ? { address: l.address } : {}),
      ...(l.addrGenMode ? { inet6_addr_gen_mode: l.addrGenMode } : {}),
      linkinfo: { info_kind: l.kind },
    })),
  );
}

describe("ip -json readers on well-formed output", () => {
  it("addresses, routes, neighbours and FDB entries read back as the objects they were rendered from", () => {
    fuzz("kernel: ip -json addresses round-trip", fc.array(address, { maxLength: 5 }), (list) => {
      expect(parseAddresses(JSON.parse(renderAddresses(list)))).toEqual([...list].sort((a, b) => order(list, a) - order(list, b)));
    });
    fuzz("kernel: ip -json routes round-trip", fc.oneof(fc.array(route("v4"), { maxLength: 5 }), fc.array(route("v6"), { maxLength: 5 })), (list) => {
      const family = list[0]?.family ?? "v4";
      expect(parseRoutes(JSON.parse(renderRoutes(list)), { family, table: "all" })).toEqual(list);
    });
    fuzz("kernel: ip -json neighbours round-trip", fc.tuple(fc.array(neighbour, { maxLength: 5 }), fc.boolean()), ([list, omitDev]) => {
      const dev = "weft.1";
      const sent = omitDev ? list.map((n) => ({ ...n, dev })) : list;
      expect(parseNeighbours(JSON.parse(renderNeighbours(sent, omitDev)), omitDev ? dev : undefined)).toEqual(sent);
    });
    fuzz("kernel: bridge -json fdb round-trip", fc.tuple(fc.array(fdb("weft.1"), { maxLength: 5 }), fc.boolean()), ([list, omitDev]) => {
      expect(parseFdb(JSON.parse(renderFdb(list, omitDev)), "weft.1")).toEqual(list);
    });
    fuzz("kernel: ip -json links round-trip", fc.array(link, { maxLength: 6 }), (raw) => {
      const list = raw.map((l, i) => {
        const { addrGenMode, address, operState, master, ...rest } = l as Link & { addrGenMode?: string };
        return { ...rest, index: i + 1, rawKind: l.kind, ...(address ? { address } : {}), ...(operState ? { operState } : {}), ...(master ? { master } : {}), ...(addrGenMode ? { addrGenMode } : {}) } as Link;
      });
      expect(parseLinks(JSON.parse(renderLinks(list)))).toEqual(list);
    });
  }, 240_000);
});

/** Addresses come back grouped by device, in the order the devices first appear. */
function order(list: readonly Address[], a: Address): number {
  const devs = [...new Set(list.map((x) => x.dev))];
  return devs.indexOf(a.dev) * 1000 + list.filter((x) => x.dev === a.dev).indexOf(a);
}
