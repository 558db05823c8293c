/**
 * iproute2 `-json` output -> core value types in canonical form (see the read-back conventions on KernelPort).
 *
 * Route reads use `-N` (numeric): type, table, protocol and scope then arrive as numbers in strings, so no
 * name tables are needed; the small tables below only back that up should a name still appear.
 *
 * JSON quirks seen on iproute2 6.1:
 * - a field the query filtered on is left out of every object (`table` with `table 254`, `protocol` with
 *   `proto 87`, `dev` in `neigh show dev X` and `fdb show dev X`): we put the queried value back;
 * - IPv4 host routes print as "198.19.2.0" with no "/32", the default route as "default";
 * - IPv6 unreachable/blackhole routes print `dev lo`;
 * - a veth whose peer is in another namespace has `link_index` + `link_netnsid` and no `link` name;
 * - vxlan `info_data.link` is the lower device's name when it lives in this namespace ("if<N>" otherwise).
 */
import {
  type FdbSpec,
  type Family,
  IPAddress,
  type Link,
  type LinkKind,
  type LinkReadContext,
  type RouteScope,
  type RouteSpec,
  type RouteType,
  normalizeMac,
} from "@weft/core";
import type { Address, Neighbour, RouteLookup, RouteQuery } from "../port.js";
import { BUILTIN_LINK_KIND_SET, type LinkKinds } from "./link-kinds.js";
import { isCanonicalV4 } from "./validate.js";

type Json = Record<string, unknown>;

const str = (x: unknown): string | undefined => (typeof x === "string" ? x : undefined);
const num = (x: unknown): number | undefined => (typeof x === "number" && Number.isFinite(x) ? x : undefined);

const CANONICAL_MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/** Canonical address text; IPv4 as printed by ip is already canonical (the fast path matters at 5k objects). */
function canonicalIp(text: string): string {
  if (isCanonicalV4(text)) return text;
  return IPAddress.tryParse(text)?.toString() ?? text;
}

function mac(text: unknown): string | undefined {
  if (typeof text !== "string") return undefined;
  return CANONICAL_MAC.test(text) ? text : normalizeMac(text);
}

export function parseJsonArray(tool: string, text: string): Json[] {
  const t = text.trim();
  if (t === "") return [];
  const v: unknown = JSON.parse(t);
  if (!Array.isArray(v)) throw new Error(`${tool}: expected a JSON array, got ${typeof v}`);
  return v.filter((x): x is Json => typeof x === "object" && x !== null);
}

const ADDR_GEN = ["eui64", "none", "stable_secret", "random"] as const;

export function parseLinks(items: readonly Json[], kinds: LinkKinds = BUILTIN_LINK_KIND_SET): Link[] {
  const byIndex = new Map<number, string>();
  for (const it of items) {
    const i = num(it.ifindex);
    const n = str(it.ifname);
    if (i !== undefined && n) byIndex.set(i, n);
  }
  const devName = (x: unknown): string | undefined => {
    if (typeof x === "number") return byIndex.get(x) ?? `if${x}`;
    const s = str(x);
    if (!s) return undefined;
    const m = /^if(\d+)$/.exec(s);
    if (m && ![...byIndex.values()].includes(s)) return byIndex.get(Number(m[1])) ?? s;
    return s;
  };
  const ctx: LinkReadContext = { devName, ip: (x) => (typeof x === "string" && IPAddress.tryParse(x) ? canonicalIp(x) : undefined) };

  return items.map((it) => {
    const info = (it.linkinfo ?? {}) as Json;
    const data = (info.info_data ?? {}) as Json;
    const infoKind = str(info.info_kind);
    const rawKind = infoKind ?? str(it.link_type) ?? "unknown";
    // Kinds Weft does not create (loopback, dummy, macvlan, ...) keep their kernel name in `kind` too, so
    // comparing against a desired kind always reports a mismatch rather than a false match.
    // Link.kind is typed LinkKind, but for kinds Weft never creates the kernel's own name is passed through.
    const kind = rawKind as LinkKind;
    const flags = Array.isArray(it.flags) ? (it.flags as unknown[]) : [];
    const hw = mac(it.address);
    const out: { -readonly [K in keyof Link]?: Link[K] } = {
      name: str(it.ifname) ?? "",
      kind,
      index: num(it.ifindex) ?? 0,
      up: flags.includes("UP"),
      mtu: num(it.mtu) ?? 0,
      rawKind,
    };
    if (hw) out.address = hw;
    const oper = str(it.operstate);
    if (oper) out.operState = oper;
    const master = str(it.master);
    if (master) out.master = master;
    const agm = str(it.inet6_addr_gen_mode);
    if (agm && (ADDR_GEN as readonly string[]).includes(agm)) out.addrGenMode = agm as (typeof ADDR_GEN)[number];

    const def = infoKind !== undefined ? kinds.get(infoKind) : undefined;
    if (def) {
      try {
        Object.assign(out, def.read(data, it, ctx));
      } catch {
        // A contributed definition that cannot read this entry leaves its fields out: the reconciler then
        // reports the link as incompatible instead of the whole read failing.
      }
    }
    return out as Link;
  });
}

export function parseAddresses(items: readonly Json[]): Address[] {
  const out: Address[] = [];
  for (const it of items) {
    const dev = str(it.ifname);
    if (!dev || !Array.isArray(it.addr_info)) continue;
    for (const a of it.addr_info as Json[]) {
      const fam = str(a.family);
      const local = str(a.local);
      const len = num(a.prefixlen);
      if ((fam !== "inet" && fam !== "inet6") || !local || len === undefined) continue;
      const scope = str(a.scope);
      out.push({
        dev,
        address: `${canonicalIp(local)}/${len}`,
        family: fam === "inet" ? "v4" : "v6",
        ...(scope ? { scope } : {}),
        ...(a.deprecated === true || a.preferred_life_time === 0 ? { deprecated: true as const } : {}),
      });
    }
  }
  return out;
}

/** Fallbacks for names, in case a route read ever comes back without -N. */
const TABLE_NAMES: Readonly<Record<string, number>> = { unspec: 0, default: 253, main: 254, local: 255 };
const PROTO_NAMES: Readonly<Record<string, number>> = {
  unspec: 0, redirect: 1, kernel: 2, boot: 3, static: 4, gated: 8, ra: 9, mrt: 10, zebra: 11, bird: 12, dnrouted: 13,
  xorp: 14, ntk: 15, dhcp: 16, keepalived: 18, babel: 42, openr: 99, bgp: 186, isis: 187, ospf: 188, rip: 189, eigrp: 192,
};
const SCOPE_NUMBERS: Readonly<Record<string, number>> = { global: 0, universe: 0, site: 200, link: 253, host: 254, nowhere: 255 };
const TYPE_NUMBERS: Readonly<Record<string, number>> = {
  unspec: 0, unicast: 1, local: 2, broadcast: 3, anycast: 4, multicast: 5, blackhole: 6, unreachable: 7, prohibit: 8, throw: 9, nat: 10,
};
const LISTED_TYPES: ReadonlyMap<number, RouteType> = new Map([[1, "unicast"], [6, "blackhole"], [7, "unreachable"], [8, "prohibit"]]);
const SCOPES: ReadonlyMap<number, RouteScope> = new Map([[0, "global"], [253, "link"], [254, "host"]]);

function numeric(x: unknown, names: Readonly<Record<string, number>>): number | undefined {
  if (typeof x === "number") return x;
  const s = str(x);
  if (s === undefined) return undefined;
  if (/^\d+$/.test(s)) return Number(s);
  return names[s];
}

/** The first (only) entry of `ip -json route get`; undefined for a route type Weft cannot use. */
export function parseRouteGet(items: readonly Json[]): RouteLookup | undefined {
  const r = items[0];
  if (!r) return undefined;
  const type = str(r.type) ?? "unicast";
  const dev = str(r.dev);
  if ((type !== "unicast" && type !== "local") || !dev) return undefined;
  const out: { -readonly [K in keyof RouteLookup]?: RouteLookup[K] } = { type, dev };
  const gw = str(r.gateway);
  if (gw) out.gateway = canonicalIp(gw);
  const src = str(r.prefsrc);
  if (src) out.src = canonicalIp(src);
  return out as RouteLookup;
}

export function parseRoutes(items: readonly Json[], query: RouteQuery): RouteSpec[] {
  const family: Family = query.family;
  const out: RouteSpec[] = [];
  for (const r of items) {
    const type = LISTED_TYPES.get(numeric(r.type, TYPE_NUMBERS) ?? 1);
    if (!type) continue;
    if (Array.isArray(r.nexthops)) continue; // multipath: not representable as a RouteSpec
    const rawDst = str(r.dst);
    if (!rawDst) continue;
    let dst: string;
    if (rawDst === "default") dst = family === "v4" ? "0.0.0.0/0" : "::/0";
    else if (rawDst.includes("/")) {
      const [a, len] = rawDst.split("/");
      dst = `${canonicalIp(a!)}/${len}`;
    } else dst = `${canonicalIp(rawDst)}/${family === "v4" ? 32 : 128}`;

    const table = numeric(r.table, TABLE_NAMES) ?? (typeof query.table === "number" ? query.table : 254);
    const protocol = numeric(r.protocol, PROTO_NAMES) ?? query.protocol ?? 0;
    const scope = SCOPES.get(numeric(r.scope, SCOPE_NUMBERS) ?? 0);
    const route: { -readonly [K in keyof RouteSpec]?: RouteSpec[K] } = { family, dst, type, table, protocol };
    if (scope) route.scope = scope;
    const gw = str(r.gateway);
    if (gw) route.gateway = canonicalIp(gw);
    const dev = str(r.dev);
    if (dev && type === "unicast") route.dev = dev;
    if (Array.isArray(r.flags) && r.flags.includes("onlink")) route.onlink = true;
    const metric = num(r.metric);
    if (metric !== undefined && (family === "v6" || metric !== 0)) route.metric = metric;
    const src = str(r.prefsrc);
    if (src) route.src = canonicalIp(src);
    if (Array.isArray(r.metrics)) {
      for (const m of r.metrics as Json[]) {
        const mtu = num(m?.mtu);
        if (mtu !== undefined) route.mtu = mtu;
      }
    }
    out.push(route as RouteSpec);
  }
  return out;
}

export function parseNeighbours(items: readonly Json[], dev?: string): Neighbour[] {
  const out: Neighbour[] = [];
  for (const n of items) {
    const dst = str(n.dst);
    if (!dst) continue;
    // Kernel-made NOARP entries for multicast groups (224/4, ff00::/8) and 0.0.0.0 on lo are not neighbours
    // anybody configured; listing them would invite a reconciler to delete them forever.
    let ip: string;
    if (isCanonicalV4(dst)) {
      const first = Number(dst.slice(0, dst.indexOf(".")));
      if (dst === "0.0.0.0" || (first >= 224 && first <= 239)) continue;
      ip = dst;
    } else {
      const a = IPAddress.tryParse(dst);
      if (!a || a.value === 0n || (a.family === "v4" ? a.value >> 28n === 0xen : a.value >> 120n === 0xffn)) continue;
      ip = a.toString();
    }
    const d = str(n.dev) ?? dev;
    if (!d) continue;
    const state = Array.isArray(n.state) ? (n.state as unknown[]).map((s) => String(s).toLowerCase()).join(",") : "none";
    const lladdr = mac(n.lladdr);
    out.push({ dev: d, ip, state, ...(lladdr ? { lladdr } : {}) });
  }
  return out;
}

export function parseFdb(items: readonly Json[], dev: string): FdbSpec[] {
  const out: FdbSpec[] = [];
  for (const f of items) {
    const m = mac(f.mac);
    if (!m) continue;
    const flags = Array.isArray(f.flags) ? (f.flags as unknown[]) : [];
    const dst = str(f.dst);
    out.push({
      dev: str(f.dev) ?? dev,
      mac: m,
      ...(dst ? { dst: canonicalIp(dst) } : {}),
      self: flags.includes("self"),
      permanent: f.state === "permanent",
    });
  }
  return out;
}
