/**
 * Address and route helpers for choosing the external interface: which interface addresses may be used
 * (flannel.md §7.4 point 3), the default route, and a longest-prefix match over the main table.
 */
import { type Family, IPAddress, IPNet, type RouteSpec } from "@weft/core";
import type { Address } from "@weft/kernel";

const V4_LINK_LOCAL = IPNet.parse("169.254.0.0/16");
const V6_LINK_LOCAL = IPNet.parse("fe80::/10");
const V4_LOOPBACK = IPNet.parse("127.0.0.0/8");
const V4_MULTICAST = IPNet.parse("224.0.0.0/4");
const V6_MULTICAST = IPNet.parse("ff00::/8");
const V4_UNSPECIFIED_NET = IPNet.parse("0.0.0.0/8");
const V4_BROADCAST = IPAddress.parse("255.255.255.255");

export function isLinkLocalUnicast(ip: IPAddress): boolean {
  return (ip.family === "v4" ? V4_LINK_LOCAL : V6_LINK_LOCAL).contains(ip);
}

/**
 * Go's net.IP.IsGlobalUnicast, which Flannel uses: anything that is not unspecified, loopback, multicast,
 * link-local or the IPv4 limited broadcast. Private (10/8, 198.18/15) and ULA addresses count as global.
 */
export function isGlobalUnicast(ip: IPAddress): boolean {
  if (ip.family === "v4") {
    return !V4_UNSPECIFIED_NET.contains(ip) && !V4_LOOPBACK.contains(ip) && !V4_MULTICAST.contains(ip) && !V4_LINK_LOCAL.contains(ip) && !ip.equals(V4_BROADCAST);
  }
  return ip.value !== 0n && ip.value !== 1n && !V6_MULTICAST.contains(ip) && !V6_LINK_LOCAL.contains(ip);
}

/** One usable address of an interface. */
export interface UsableAddress {
  readonly ip: IPAddress;
  readonly prefix: number;
  readonly global: boolean;
}

/**
 * The addresses of `dev` in `family` that may be advertised: global unicast or link-local unicast, not
 * deprecated; global ones first, each group in the kernel's order (the primary address first).
 */
export function usableAddresses(addrs: readonly Address[], dev: string, family: Family): UsableAddress[] {
  const global: UsableAddress[] = [];
  const linkLocal: UsableAddress[] = [];
  for (const a of addrs) {
    if (a.dev !== dev || a.family !== family || a.deprecated === true) continue;
    const slash = a.address.indexOf("/");
    const ip = IPAddress.tryParse(slash >= 0 ? a.address.slice(0, slash) : a.address);
    if (!ip || ip.family !== family) continue;
    const prefix = slash >= 0 ? Number(a.address.slice(slash + 1)) : ip.bits;
    if (isGlobalUnicast(ip)) global.push({ ip, prefix, global: true });
    else if (isLinkLocalUnicast(ip)) linkLocal.push({ ip, prefix, global: false });
  }
  return [...global, ...linkLocal];
}

/** The device holding `ip` (any address, usable or not), if any. */
export function ownerOf(addrs: readonly Address[], ip: IPAddress): string | undefined {
  for (const a of addrs) {
    const slash = a.address.indexOf("/");
    const x = IPAddress.tryParse(slash >= 0 ? a.address.slice(0, slash) : a.address);
    if (x && x.equals(ip)) return a.dev;
  }
  return undefined;
}

const isUnicast = (r: RouteSpec) => (r.type ?? "unicast") === "unicast";
const metricOf = (r: RouteSpec) => r.metric ?? 0;

/**
 * The default route of a family in the main table: dst 0.0.0.0/0 or ::/0, unicast, with a device; the
 * lowest metric wins (the one the kernel uses). Multipath routes are not listed by the port, so a host whose
 * only default route is multipath has none here.
 */
export function defaultRoute(routes: readonly RouteSpec[], family: Family): RouteSpec | undefined {
  const any = family === "v4" ? "0.0.0.0/0" : "::/0";
  return routes
    .filter((r) => r.family === family && r.dst === any && isUnicast(r) && r.dev !== undefined && (r.table ?? 254) === 254)
    .sort((a, b) => metricOf(a) - metricOf(b))[0];
}
