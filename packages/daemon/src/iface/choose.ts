/**
 * Choosing the external (underlay) interface and the addresses a node advertises: flannel.md §7.4, with
 * IPv6 handled where Flannel's `ipmatch` is IPv4-minded.
 *
 *   1. None of --iface, --iface-regex, --iface-can-reach:
 *      - a known public IP (--public-ip, else --public-ipv6; the agent passes the node annotation's value
 *        here when there is one) selects the interface that holds it; it must be local;
 *      - otherwise the interface of the default route; in dual-stack the IPv4 and IPv6 default routes must
 *        use the same interface.
 *   2. Otherwise, in order, the first that yields an interface with a usable address in every enabled family:
 *      a. each --iface: an IP (the interface holding it; that IP is then the interface address) or a name;
 *      b. each --iface-regex: first against the usable addresses of all interfaces (dual-stack: an interface
 *         qualifies only when the regex matches one of its IPv4 AND one of its IPv6 addresses; the matched
 *         addresses are used), then against interface names;
 *      c. --iface-can-reach (IPv4 or IPv6): the route the kernel would take to it (`ip route get`, so policy
 *         rules and every table count, as Flannel's netlink RouteGet); its device and the source address the
 *         kernel picks.
 *   3. Interface address per family: the explicitly matched one, else the first usable one (global unicast
 *      before link-local, never deprecated).
 *   4. Advertised address: --public-ip / --public-ipv6 when given, else the interface address. A given public
 *      IP must be held by an interface of this node (a NAT address goes in the public-ip-overwrite node
 *      annotation), and an advertised IPv6 address must not be link-local (other nodes cannot reach fe80::/10
 *      without a zone): such a choice is refused rather than advertised.
 *
 * Every failure is a ConfigError (CONFIG_INVALID) in one line naming the flag, the value and the fix.
 */
import { ConfigError, describeValue, type ExternalInterface, type Family, IPAddress, type Link, type RouteSpec } from "@weft/core";
import type { Address, KernelPort } from "@weft/kernel";
import { defaultRoute, isGlobalUnicast, isLinkLocalUnicast, ownerOf, usableAddresses } from "./addresses.js";

export interface InterfaceChoiceOptions {
  /** --iface values (names or IPs), tried in order. */
  readonly iface: readonly string[];
  /** --iface-regex values (JavaScript regular expressions, unanchored like Go's MatchString), tried in order. */
  readonly ifaceRegex: readonly string[];
  /** --iface-can-reach: an IPv4 or IPv6 address. */
  readonly ifaceCanReach?: string;
  /** --public-ip (or the stored node annotation). */
  readonly publicIP?: string;
  /** --public-ipv6 (or the stored node annotation). */
  readonly publicIPv6?: string;
  /** The network's address families (EnableIPv4 / EnableIPv6). */
  readonly families: { readonly v4: boolean; readonly v6: boolean };
}

const FAMILY_NAME: Record<Family, string> = { v4: "IPv4", v6: "IPv6" };
const USABLE = "global unicast or link-local, not deprecated";

/** Explicitly matched addresses, per family. */
type Matched = Partial<Record<Family, IPAddress>>;

/** A candidate that failed, and why (collected for the final error line). */
type Miss = string;

export async function chooseExternalInterface(kernel: KernelPort, opts: InterfaceChoiceOptions): Promise<ExternalInterface> {
  const families = (["v4", "v6"] as const).filter((f) => opts.families[f]);
  if (families.length === 0) {
    throw new ConfigError("net-conf.json", "EnableIPv4", "EnableIPv4 and EnableIPv6 are both false; fix: enable at least one family");
  }
  const publicIP = parsePublic("--public-ip", opts.publicIP, "v4", opts.families);
  const publicIPv6 = parsePublic("--public-ipv6", opts.publicIPv6, "v6", opts.families);
  const regexes = opts.ifaceRegex.map((text) => compileRegex(text));
  const canReach = opts.ifaceCanReach !== undefined && opts.ifaceCanReach !== "" ? parseCanReach(opts.ifaceCanReach, opts.families) : undefined;

  const [links, addrs] = await Promise.all([kernel.listLinks(), kernel.listAddresses()]);
  const ctx: Ctx = { links, addrs, families };

  let chosen: { link: Link; matched: Matched } | undefined;
  if (opts.iface.length === 0 && regexes.length === 0 && !canReach) {
    const lookup = publicIP ? { flag: "--public-ip", ip: publicIP } : publicIPv6 ? { flag: "--public-ipv6", ip: publicIPv6 } : undefined;
    if (lookup) {
      const dev = ownerOf(addrs, lookup.ip);
      if (!dev) {
        throw new ConfigError(
          lookup.flag,
          lookup.flag.slice(2),
          `${lookup.ip} is not an address of any interface of this node; fix: give a local address, or pass --iface to pick the interface ` +
            `(to advertise a NAT address, set the public-ip-overwrite node annotation instead of ${lookup.flag})`,
        );
      }
      chosen = requireUsable(ctx, linkNamed(ctx, dev)!, { [lookup.ip.family]: lookup.ip }, lookup.flag, `${lookup.flag} ${lookup.ip}`);
    } else {
      chosen = await byDefaultRoute(kernel, ctx);
    }
  } else {
    const misses: Miss[] = [];
    chosen = byIface(ctx, opts.iface, misses) ?? byRegex(ctx, opts.ifaceRegex, regexes, misses);
    if (!chosen && canReach) chosen = await byCanReach(kernel, ctx, canReach, misses);
    if (!chosen) {
      const given = [
        ...opts.iface.map((v) => `--iface ${clip(v)}`),
        ...opts.ifaceRegex.map((v) => `--iface-regex ${clip(v)}`),
        ...(canReach ? [`--iface-can-reach ${canReach}`] : []),
      ];
      throw new ConfigError(
        flagOf(opts),
        flagOf(opts).slice(2),
        `no interface matches ${given.join(", ")}: ${misses.join("; ")}; interfaces: ${describeLinks(ctx)}; fix: name an existing interface with a usable ${families.map((f) => FAMILY_NAME[f]).join(" and ")} address (${USABLE})`,
      );
    }
  }

  return build(ctx, chosen.link, chosen.matched, publicIP, publicIPv6);
}

// ------------------------------------------------------------------------------------------------- parsing

/** A flag value in a message: as is when short and printable, else quoted, escaped and cut (describeValue). */
function clip(v: string): string {
  return /^[\x21-\x7e]{1,80}$/.test(v) ? v : describeValue(v);
}

function parsePublic(flag: string, value: string | undefined, family: Family, enabled: { v4: boolean; v6: boolean }): IPAddress | undefined {
  if (value === undefined || value === "") return undefined;
  const ip = IPAddress.tryParse(value);
  if (!ip || ip.family !== family) {
    throw new ConfigError(flag, flag.slice(2), `${describeValue(value)} is not an ${FAMILY_NAME[family]} address; fix: give one like ${family === "v4" ? "198.18.0.1" : "2001:2::1"}`);
  }
  if (!isGlobalUnicast(ip) && !(family === "v4" && isLinkLocalUnicast(ip))) {
    throw new ConfigError(flag, flag.slice(2), `${ip} is not a unicast address other nodes can reach (loopback, multicast, unspecified, broadcast or IPv6 link-local); fix: give this node's underlay address`);
  }
  if (!enabled[family]) {
    throw new ConfigError(flag, flag.slice(2), `${value} is ${FAMILY_NAME[family]} but the network has ${FAMILY_NAME[family]} disabled; fix: drop ${flag} or enable ${FAMILY_NAME[family]} in net-conf.json`);
  }
  return ip;
}

function compileRegex(text: string): RegExp {
  try {
    return new RegExp(text);
  } catch (err) {
    const why = err instanceof Error ? err.message.replace(/^Invalid regular expression: /, "") : String(err);
    throw new ConfigError("--iface-regex", "iface-regex", `${describeValue(text)} is not a valid regular expression (${why}); fix: correct the expression (JavaScript syntax)`);
  }
}

function parseCanReach(value: string, enabled: { v4: boolean; v6: boolean }): IPAddress {
  const ip = IPAddress.tryParse(value);
  if (!ip) throw new ConfigError("--iface-can-reach", "iface-can-reach", `${describeValue(value)} is not an IP address; fix: give the IPv4 or IPv6 address of a host the underlay must reach`);
  if (!enabled[ip.family]) {
    throw new ConfigError("--iface-can-reach", "iface-can-reach", `${value} is ${FAMILY_NAME[ip.family]} but the network has ${FAMILY_NAME[ip.family]} disabled; fix: give an address of an enabled family`);
  }
  return ip;
}

function flagOf(opts: InterfaceChoiceOptions): string {
  return opts.iface.length > 0 ? "--iface" : opts.ifaceRegex.length > 0 ? "--iface-regex" : "--iface-can-reach";
}

// ------------------------------------------------------------------------------------------------- choosing

interface Ctx {
  readonly links: readonly Link[];
  readonly addrs: readonly Address[];
  readonly families: readonly Family[];
}

function linkNamed(ctx: Ctx, name: string): Link | undefined {
  return ctx.links.find((l) => l.name === name);
}

function describeLinks(ctx: Ctx): string {
  return ctx.links.map((l) => l.name).join(", ") || "(none)";
}

/** The families in which `link` has no usable address (ignoring families already matched explicitly). */
function missingFamilies(ctx: Ctx, link: Link, matched: Matched): Family[] {
  return ctx.families.filter((f) => !matched[f] && usableAddresses(ctx.addrs, link.name, f).length === 0);
}

function lacks(link: Link, missing: readonly Family[]): string {
  return `${link.name} has no usable ${missing.map((f) => FAMILY_NAME[f]).join(" or ")} address`;
}

/** For the paths that pick exactly one interface: it must have a usable address in every enabled family. */
function requireUsable(ctx: Ctx, link: Link, matched: Matched, flag: string, why: string): { link: Link; matched: Matched } {
  const missing = missingFamilies(ctx, link, matched);
  if (missing.length > 0) {
    throw new ConfigError(flag, flag.slice(2), `${why} selects ${link.name}, but ${lacks(link, missing)} (${USABLE}); fix: add one, or pick another interface with --iface`);
  }
  return { link, matched };
}

async function byDefaultRoute(kernel: KernelPort, ctx: Ctx): Promise<{ link: Link; matched: Matched }> {
  const found: Array<{ family: Family; route: RouteSpec }> = [];
  for (const f of ctx.families) {
    const route = defaultRoute(await kernel.listRoutes({ family: f, table: 254 }), f);
    if (!route) {
      throw new ConfigError(
        "--iface",
        "iface",
        `no ${FAMILY_NAME[f]} default route in the main table (multipath default routes are not considered) and none of --iface, --iface-regex, --iface-can-reach given; fix: add a default route or pass --iface <name>`,
      );
    }
    found.push({ family: f, route });
  }
  const devs = [...new Set(found.map((x) => x.route.dev!))];
  if (devs.length > 1) {
    throw new ConfigError(
      "--iface",
      "iface",
      `the default routes use different interfaces (${found.map((x) => `${FAMILY_NAME[x.family]} via ${x.route.dev}`).join(", ")}); fix: pass --iface <name> to choose the underlay interface for both families`,
    );
  }
  const link = linkNamed(ctx, devs[0]!);
  if (!link) throw new ConfigError("--iface", "iface", `the default route uses ${devs[0]}, which is not in the link list (${describeLinks(ctx)}); fix: pass --iface <name>`);
  return requireUsable(ctx, link, {}, "--iface", `the default route via ${link.name}`);
}

function byIface(ctx: Ctx, values: readonly string[], misses: Miss[]): { link: Link; matched: Matched } | undefined {
  for (const value of values) {
    const ip = IPAddress.tryParse(value);
    let link: Link | undefined;
    const matched: Matched = {};
    if (ip) {
      const dev = ownerOf(ctx.addrs, ip);
      if (!dev) {
        misses.push(`--iface ${clip(value)}: no interface has this address`);
        continue;
      }
      link = linkNamed(ctx, dev);
      matched[ip.family] = ip;
    } else {
      link = linkNamed(ctx, value);
      if (!link) {
        misses.push(`--iface ${clip(value)}: no such interface`);
        continue;
      }
    }
    if (!link) continue;
    const missing = missingFamilies(ctx, link, matched);
    if (missing.length > 0) {
      misses.push(`--iface ${clip(value)}: ${lacks(link, missing)}`);
      continue;
    }
    return { link, matched };
  }
  return undefined;
}

function byRegex(ctx: Ctx, texts: readonly string[], regexes: readonly RegExp[], misses: Miss[]): { link: Link; matched: Matched } | undefined {
  for (let i = 0; i < regexes.length; i++) {
    const re = regexes[i]!;
    const text = texts[i]!;
    // 1. Addresses: an interface qualifies when, in every enabled family, one of its usable addresses matches.
    for (const link of ctx.links) {
      const matched: Matched = {};
      for (const f of ctx.families) {
        const hit = usableAddresses(ctx.addrs, link.name, f).find((a) => re.test(a.ip.toString()));
        if (hit) matched[f] = hit.ip;
      }
      if (ctx.families.every((f) => matched[f])) return { link, matched };
    }
    // 2. Names.
    let named = false;
    for (const link of ctx.links) {
      if (!re.test(link.name)) continue;
      named = true;
      const missing = missingFamilies(ctx, link, {});
      if (missing.length > 0) {
        misses.push(`--iface-regex ${clip(text)}: ${lacks(link, missing)}`);
        continue;
      }
      return { link, matched: {} };
    }
    if (!named) misses.push(`--iface-regex ${clip(text)}: matches no interface name and no ${ctx.families.length > 1 ? "IPv4+IPv6 address pair" : `${FAMILY_NAME[ctx.families[0]!]} address`}`);
  }
  return undefined;
}

async function byCanReach(kernel: KernelPort, ctx: Ctx, target: IPAddress, misses: Miss[]): Promise<{ link: Link; matched: Matched } | undefined> {
  // The kernel's own answer (ip route get): policy rules, every table, its source address choice.
  const route = await kernel.routeGet(target.toString());
  const flag = `--iface-can-reach ${target}`;
  if (!route) {
    misses.push(`${flag}: the kernel has no usable route to it (\`ip route get ${target}\` fails: no route, or an unreachable, prohibit or blackhole one)`);
    return undefined;
  }
  if (route.type === "local") {
    misses.push(`${flag}: it is an address of this node; give a host on the other side of the underlay`);
    return undefined;
  }
  const link = linkNamed(ctx, route.dev);
  if (!link) {
    misses.push(`${flag}: its route uses ${route.dev}, which is not in the link list`);
    return undefined;
  }
  const matched: Matched = {};
  const src = route.src ? IPAddress.tryParse(route.src) : undefined;
  if (src) matched[target.family] = src;
  const missing = missingFamilies(ctx, link, matched);
  if (missing.length > 0) {
    misses.push(`${flag}: its route uses ${link.name}${route.gateway ? ` via ${route.gateway}` : ""}, but ${lacks(link, missing)}`);
    return undefined;
  }
  return { link, matched };
}

// ------------------------------------------------------------------------------------------------- result

function build(ctx: Ctx, link: Link, matched: Matched, publicIP: IPAddress | undefined, publicIPv6: IPAddress | undefined): ExternalInterface {
  if (!link.mtu || link.mtu <= 0) {
    throw new ConfigError("--iface", "iface", `interface ${link.name} reports MTU ${link.mtu}; fix: set its MTU or pick another interface with --iface`);
  }
  const pick = (f: Family) => matched[f] ?? usableAddresses(ctx.addrs, link.name, f)[0]?.ip;
  const v4 = ctx.families.includes("v4") ? pick("v4") : undefined;
  const v6 = ctx.families.includes("v6") ? pick("v6") : undefined;
  for (const [flag, ip] of [["--public-ip", publicIP], ["--public-ipv6", publicIPv6]] as const) {
    if (ip && !ownerOf(ctx.addrs, ip)) {
      throw new ConfigError(
        flag,
        flag.slice(2),
        `${ip} is not an address of any interface of this node; fix: give a local address (the underlay uses ${link.name}) ` +
          `or drop ${flag} (to advertise a NAT address, set the public-ip-overwrite node annotation instead of ${flag})`,
      );
    }
  }
  const extV6 = publicIPv6 ?? v6;
  if (extV6 && isLinkLocalUnicast(extV6)) {
    throw new ConfigError(
      "--iface",
      "iface",
      `interface ${link.name} has no global IPv6 address, only the link-local ${extV6}, which other nodes cannot reach; fix: add a global or ULA IPv6 address to ${link.name}, pick another interface with --iface, or set EnableIPv6 false`,
    );
  }
  return {
    name: link.name,
    index: link.index,
    mtu: link.mtu,
    ...(v4 ? { ifaceAddr: v4, extAddr: publicIP ?? v4 } : {}),
    ...(v6 ? { ifaceV6Addr: v6, extV6Addr: publicIPv6 ?? v6 } : {}),
  };
}
