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

/** The link kinds Weft ships a LinkKindDefinition for. */
export type BuiltinLinkKind = "bridge" | "veth" | "vxlan" | "tun" | "wireguard" | "dummy";

/**
 * Device kinds a backend may declare: a built-in one, or any kind a backend package contributes with a
 * LinkKindDefinition (`BackendModule.linkKinds`), e.g. "gre". Read back, a link carries the kernel's own kind
 * name, also for kinds Weft never creates ("dummy", "loopback").
 */
export type LinkKind = BuiltinLinkKind | (string & {});

/** A kind-specific attribute value of a contributed link kind: plain data, compared by value. */
export type LinkAttrValue = string | number | boolean;

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
  /**
   * Attributes of a contributed link kind (gre: `{ remote: "198.18.0.2", local: "198.18.0.1", ttl: 64 }`), as
   * its LinkKindDefinition turns them into `ip link add` arguments and reads them back. Built-in kinds use the
   * typed fields above instead.
   */
  readonly attrs?: Readonly<Record<string, LinkAttrValue>>;
  /** IPv6 link-local address generation; "none" keeps autoconf/MLD noise off tunnels. */
  readonly addrGenMode?: "eui64" | "none" | "stable_secret" | "random";
}

/**
 * Value checks for LinkKindDefinition.createArgs. Each returns the value as ONE safe argv token, or throws an
 * error whose message names the field, the value and the fix (the kernel adapter turns it into KERNEL_INVALID
 * and sends nothing).
 */
export interface LinkArgChecks {
  /** An interface name (1-15 characters, no "/", whitespace or ":"). */
  ifname(field: string, value: string): string;
  /** An IP address in canonical form; of `family` when given. */
  address(field: string, value: string, family?: "v4" | "v6"): string;
  /** An integer in [min, max]. */
  integer(field: string, value: number, min: number, max: number): string;
  /** A 48-bit MAC address. */
  mac(field: string, value: string): string;
  /** One of `allowed`. */
  oneOf<T extends string>(field: string, value: string, allowed: readonly T[]): T;
  /** A netns name or path (for `netns` arguments). */
  netnsRef(field: string, value: string): string;
}

/** Helpers for LinkKindDefinition.read. */
export interface LinkReadContext {
  /** The name of a device referenced by ifindex (number) or name in linkinfo (a tunnel's lower `link`). */
  devName(ref: unknown): string | undefined;
  /** An IP address string in canonical form, or undefined when `text` is not one. */
  ip(text: unknown): string | undefined;
}

/** What LinkKindDefinition.read and FakeLinkModel.create give back: the kind-specific fields of a Link. */
export type LinkKindFields = Partial<Pick<LinkSpec, "vxlan" | "veth" | "tun" | "attrs">>;

/**
 * How the FakeKernel (@weft/kernel-testing) models a link kind: what the kernel keeps of a created link. The
 * fake applies the generic attributes (mtu, address, master, up, addrgenmode) itself.
 */
export interface FakeLinkModel {
  /**
   * The kind-specific fields the kernel holds after creating `link` (what a read gives back), and optionally the
   * MTU it settles on; or `{ refuse }` with the kernel's classification and message (e.g. a second tunnel with
   * the same endpoints: `{ code: "KERNEL_EXISTS", message: "RTNETLINK answers: File exists" }`). `links` are the
   * links the fake holds now, as read back.
   */
  create(
    link: LinkSpec,
    links: readonly Link[],
  ): { readonly fields: LinkKindFields; readonly mtu?: number } | { readonly refuse: { readonly code: "KERNEL_EXISTS" | "KERNEL_INVALID" | "KERNEL_NOT_FOUND" | "KERNEL_UNSUPPORTED"; readonly message: string } };
}

/**
 * A link kind: everything Weft needs to create, read back, compare and fake one kind of network device. The
 * built-in kinds are definitions too (@weft/kernel BUILTIN_LINK_KINDS); a backend package contributes its own
 * through `BackendModule.linkKinds`, without editing Weft. Definitions are plain objects without I/O.
 */
export interface LinkKindDefinition {
  /** The kernel's name of the kind: `ip link add ... type <kind>` and linkinfo.info_kind ("gre"). */
  readonly kind: string;
  /**
   * The argv tail after `ip link add name <name> [address/mtu/master/up] type <kind>`: the kind's own
   * arguments (`remote 198.18.0.2 local 198.18.0.1 ttl 64`), each value passed through `check`. Throw (an
   * Error naming the field and the fix) when a required attribute is missing.
   */
  createArgs(link: LinkSpec, check: LinkArgChecks): readonly string[];
  /**
   * For a kind that `ip link add` cannot create (tun/tap: "tun/tap creation via rtnetlink is not supported"):
   * the whole ip argv that creates it (`tuntap add dev X mode tun`); mtu, address, master and up then follow
   * as `link set`. Leave it out for every kind `ip link add` makes.
   */
  createCommand?(link: LinkSpec, check: LinkArgChecks): readonly string[];
  /**
   * The kind's fields read back from one entry of `ip -details -json link show`: `info` is
   * linkinfo.info_data, `entry` the whole entry (for fields outside info_data, such as a veth's `link`).
   */
  read(info: Readonly<Record<string, unknown>>, entry: Readonly<Record<string, unknown>>, ctx: LinkReadContext): LinkKindFields;
  /**
   * Why an existing link of this kind cannot be adopted as `desired` (attributes the kernel cannot change in
   * place differ): the engine recreates a Weft-owned link, and reports any other. Undefined when compatible.
   * Only called when both have this kind.
   */
  incompatibility(desired: LinkSpec, actual: LinkSpec): string | undefined;
  /** How the FakeKernel models it; default: the kernel keeps `attrs` as given. */
  readonly fake?: FakeLinkModel;
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
