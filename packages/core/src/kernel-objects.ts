/**
 * Kernel object value types: what backends describe and reconcilers apply. Plain, serialisable data with
 * canonical string forms (addresses via IPAddress/IPNet.toString(), MACs lower-case) so that desired and actual
 * objects compare by value and diff by key. The kernel adapter (packages/kernel) turns them into iproute2
 * batch lines; the fake kernel (packages/kernel-testing) keeps them in tables.
 */
import type { Family } from "./ip.js";

/** Route protocol number that marks a route as Weft's (rt_protos has nothing at 87; 'W' is 0x57). */
export const WEFT_ROUTE_PROTOCOL = 87;
/** Device names Weft creates start with this; Weft only ever deletes devices it owns. */
export const WEFT_LINK_PREFIX = "weft";

/** Device kinds a backend may declare. */
export type LinkKind = "bridge" | "veth" | "vxlan" | "tun" | "wireguard";

/**
 * VXLAN attributes of a `vxlan` link. A change to any of them needs the device recreated (the kernel cannot
 * change them in place).
 */
export interface VxlanAttrs {
  readonly vni: number;
  /** UDP destination port; Linux's default is 8472 when unset. */
  readonly port?: number;
  /** Source (local) address: the node's public IP. */
  readonly local?: string;
  /** Underlay device the tunnel is bound to; binding makes the kernel enforce MTU <= dev MTU - overhead. */
  readonly dev?: string;
  readonly learning?: boolean;
  readonly gbp?: boolean;
}

/**
 * A network device a backend wants. An existing device of that name is adopted when compatible. Weft deletes or
 * recreates only devices whose names start with WEFT_LINK_PREFIX, so a backend names its devices with it.
 */
export interface LinkSpec {
  readonly name: string;
  readonly kind: LinkKind;
  readonly mtu?: number;
  /** MAC address, lower-case colon form. */
  readonly address?: string;
  /** Administrative state wanted; undefined = leave as is (new links are created down). */
  readonly up?: boolean;
  /** Bridge to enslave to. */
  readonly master?: string;
  readonly vxlan?: VxlanAttrs;
  /** veth: the peer's name and, optionally, the namespace (name or /proc path) to create it in. */
  readonly veth?: { readonly peer: string; readonly peerNetns?: string };
  readonly tun?: { readonly mode: "tun" | "tap" };
  /** IPv6 link-local address generation; "none" keeps autoconf/MLD noise off tunnels. */
  readonly addrGenMode?: "eui64" | "none" | "stable_secret" | "random";
}

/** A link as read back from the kernel. */
export interface Link extends LinkSpec {
  readonly index: number;
  readonly up: boolean;
  readonly mtu: number;
  readonly address?: string;
  readonly operState?: string;
  /** Link kind the kernel reported, including kinds Weft does not create (e.g. "dummy", "loopback"). */
  readonly rawKind?: string;
}

/** An address wanted on a device. */
export interface AddressSpec {
  readonly dev: string;
  /** Address with prefix length, e.g. "198.19.1.0/32". */
  readonly address: string;
  /**
   * IPv6 only (ignored for IPv4): skip Duplicate Address Detection (iproute2 `nodad`), so the address is usable
   * at once instead of "tentative" for the 1-2 s DAD takes. For addresses whose uniqueness is known (IPAM).
   * An option of add/replace: it is not read back.
   */
  readonly nodad?: boolean;
}

/** Route scope (iproute2 `scope`). */
export type RouteScope = "global" | "link" | "host";
/** Route type (iproute2 route type): unicast, or one of the three that drop traffic. */
export type RouteType = "unicast" | "blackhole" | "unreachable" | "prohibit";

/**
 * A route a backend wants. The engine stamps every declared route with WEFT_ROUTE_PROTOCOL and an explicit
 * table, which is how Weft finds its routes again.
 */
export interface RouteSpec {
  readonly family: Family;
  /** Destination CIDR in canonical form ("198.19.2.0/24", "0.0.0.0/0"). */
  readonly dst: string;
  readonly gateway?: string;
  readonly dev?: string;
  readonly onlink?: boolean;
  /** Routing table id; 254 (main) when unset. */
  readonly table?: number;
  /** Protocol number; Weft's routes carry WEFT_ROUTE_PROTOCOL. */
  readonly protocol?: number;
  readonly scope?: RouteScope;
  readonly type?: RouteType;
  readonly metric?: number;
  readonly src?: string;
  readonly mtu?: number;
}

/** Neighbour (ARP/NDP) entry state a backend may declare; Weft declares `permanent` entries. */
export type NeighbourState = "permanent" | "noarp" | "reachable" | "stale";

/** A neighbour (ARP/NDP) entry: `ip` on `dev` resolves to the link-layer address `lladdr`. */
export interface NeighbourSpec {
  readonly dev: string;
  readonly ip: string;
  readonly lladdr: string;
  readonly state: NeighbourState;
}

/** A bridge forwarding database entry: frames for `mac` on `dev` go to `dst` (the remote VTEP, for vxlan). */
export interface FdbSpec {
  readonly dev: string;
  readonly mac: string;
  /** Remote VTEP address for vxlan entries. */
  readonly dst?: string;
  /** `self` (the device's own table, as vxlan needs) rather than `master` (the bridge's). */
  readonly self: boolean;
  readonly permanent: boolean;
}

/** The kinds reconciled by the built-in reconcilers, in apply order (devices before what hangs off them). */
export const CORE_OBJECT_KINDS = ["links", "addresses", "neighbours", "fdb", "routes"] as const;
/** One of CORE_OBJECT_KINDS. */
export type CoreObjectKind = (typeof CORE_OBJECT_KINDS)[number];

/**
 * A set of desired kernel objects. The core kinds are typed; backends with other kernel objects (WireGuard
 * peers, IPsec connections, nftables rules) add kinds under `extra` and register a reconciler for each.
 */
export interface KernelObjects {
  readonly links?: readonly LinkSpec[];
  readonly addresses?: readonly AddressSpec[];
  readonly neighbours?: readonly NeighbourSpec[];
  readonly fdb?: readonly FdbSpec[];
  readonly routes?: readonly RouteSpec[];
  readonly extra?: Readonly<Record<string, readonly unknown[]>>;
}

/** Canonical MAC: lower-case, colon separated. Returns undefined when not a 48-bit MAC. */
export function normalizeMac(mac: string): string | undefined {
  const m = /^([0-9a-fA-F]{2})([:-]?)([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})$/.exec(mac.trim());
  if (!m) return undefined;
  return [m[1], m[3], m[4], m[5], m[6], m[7]].join(":").toLowerCase();
}

/** The route's table id: 254 (main) when unset. */
export function routeTable(r: Pick<RouteSpec, "table">): number {
  return r.table ?? 254;
}
