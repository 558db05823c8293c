/**
 * The built-in reconcilers: links, addresses, neighbours, FDB entries, routes. Ownership (DESIGN §3, "Weft owns
 * only what it marks"):
 *   - links: the name starts with the owned prefix (`weft` by default);
 *   - addresses, permanent neighbours, `self` permanent FDB entries: on an owned link;
 *   - routes: protocol WEFT_ROUTE_PROTOCOL, in the tables Weft uses.
 * Objects on links Weft does not own are created when desired but never pruned.
 */
import {
  type AddressSpec,
  type FdbSpec,
  type Link,
  type LinkSpec,
  type NeighbourSpec,
  type RouteSpec,
  WEFT_LINK_PREFIX,
  WEFT_ROUTE_PROTOCOL,
  type Family,
  routeTable,
} from "@weft/core";
import { BUILTIN_LINK_KIND_SET, type KernelOp, type KernelPort, type LinkKinds } from "@weft/kernel";
import type { Drift, ObjectReconciler } from "./reconciler.js";

/**
 * Which kernel objects are Weft's to change and delete. Objects outside it are created when declared but never
 * pruned or recreated.
 */
export interface OwnershipPolicy {
  /** Link names Weft owns. */
  ownsLink(name: string): boolean;
  /** Route protocol number that marks Weft's routes. */
  readonly routeProtocol: number;
}

/** The default policy: links whose names start with `prefix`, and routes carrying `routeProtocol`. */
export function prefixOwnership(prefix = WEFT_LINK_PREFIX, routeProtocol = WEFT_ROUTE_PROTOCOL): OwnershipPolicy {
  return { ownsLink: (name) => name.startsWith(prefix), routeProtocol };
}

const differs = (label: string, want: unknown, have: unknown): string | undefined =>
  want !== undefined && want !== have ? `${label} ${String(have ?? "unset")} != ${String(want)}` : undefined;

/**
 * Why an existing link cannot be adopted as `desired` and must be recreated; undefined when compatible. The
 * kinds' own comparison comes from their LinkKindDefinition (`kinds`: default the built-in ones).
 */
export function linkIncompatibility(desired: LinkSpec, actual: LinkSpec, kinds: LinkKinds = BUILTIN_LINK_KIND_SET): string | undefined {
  return kinds.incompatibility(desired, actual);
}

/**
 * Links (kind `links`), keyed by name. Recreates an owned device whose immutable attributes differ (reporting,
 * never touching, an incompatible device Weft does not own).
 */
export class LinkReconciler implements ObjectReconciler<LinkSpec> {
  readonly kind = "links";
  constructor(
    private readonly owner: OwnershipPolicy,
    /** The link kinds known (built-in and contributed); compares through their definitions. */
    private readonly kinds: LinkKinds = BUILTIN_LINK_KIND_SET,
  ) {}
  key(l: LinkSpec): string {
    return l.name;
  }
  async listOwned(kernel: KernelPort, desired: readonly LinkSpec[]): Promise<LinkSpec[]> {
    const wanted = new Set(desired.map((d) => d.name));
    return (await kernel.listLinks()).filter((l: Link) => this.owner.ownsLink(l.name) || wanted.has(l.name));
  }
  drift(d: LinkSpec, a: LinkSpec): Drift {
    const inc = linkIncompatibility(d, a, this.kinds);
    if (inc) return `incompatible (${inc}): recreate`;
    const reasons = [
      differs("mtu", d.mtu, a.mtu),
      differs("up", d.up, a.up),
      differs("master", d.master, a.master),
      differs("address", d.address, a.address),
      differs("addrgenmode", d.addrGenMode, a.addrGenMode),
    ].filter(Boolean);
    return reasons.length ? reasons.join(", ") : undefined;
  }
  addOps(l: LinkSpec): KernelOp[] {
    const ops: KernelOp[] = [{ op: "link.add", link: { ...l, up: undefined } }];
    if (l.up) ops.push({ op: "link.set", name: l.name, up: true });
    return ops;
  }
  refuse(d: LinkSpec, a: LinkSpec): string | undefined {
    const inc = linkIncompatibility(d, a, this.kinds);
    if (inc && !this.owner.ownsLink(a.name)) {
      return `${a.name} exists but is incompatible (${inc}) and is not Weft's to recreate: remove or rename it, or configure another name`;
    }
    return undefined;
  }
  updateOps(d: LinkSpec, a: LinkSpec): KernelOp[] {
    if (linkIncompatibility(d, a, this.kinds)) return [{ op: "link.del", name: a.name }, ...this.addOps(d)];
    const set: { -readonly [K in keyof Extract<KernelOp, { op: "link.set" }>]?: Extract<KernelOp, { op: "link.set" }>[K] } = {};
    if (d.mtu !== undefined && d.mtu !== a.mtu) set.mtu = d.mtu;
    if (d.address !== undefined && d.address !== a.address) set.address = d.address;
    if (d.master !== undefined && d.master !== a.master) set.master = d.master;
    if (d.addrGenMode !== undefined && d.addrGenMode !== a.addrGenMode) set.addrGenMode = d.addrGenMode;
    if (d.up !== undefined && d.up !== a.up) set.up = d.up;
    return [{ op: "link.set", name: d.name, ...set }];
  }
  removeOps(l: LinkSpec): KernelOp[] {
    return [{ op: "link.del", name: l.name }];
  }
}

const isLinkLocalV6 = (addr: string) => /^fe[89ab][0-9a-f]:/i.test(addr);

/** Addresses (kind `addresses`), keyed by device and address; IPv6 link-local addresses are left alone. */
export class AddressReconciler implements ObjectReconciler<AddressSpec> {
  readonly kind = "addresses";
  /** After the devices they hang off. */
  readonly after = ["links"] as const;
  constructor(private readonly owner: OwnershipPolicy) {}
  key(a: AddressSpec): string {
    return `${a.dev} ${a.address}`;
  }
  async listOwned(kernel: KernelPort, desired: readonly AddressSpec[]): Promise<AddressSpec[]> {
    const wantedKeys = new Set(desired.map((d) => this.key(d)));
    return (await kernel.listAddresses())
      .filter((a) => !isLinkLocalV6(a.address))
      .filter((a) => this.owner.ownsLink(a.dev) || wantedKeys.has(this.key(a)))
      .map((a) => ({ dev: a.dev, address: a.address }));
  }
  drift(): Drift {
    return undefined;
  }
  addOps(a: AddressSpec): KernelOp[] {
    return [{ op: "addr.replace", addr: a }];
  }
  updateOps(d: AddressSpec): KernelOp[] {
    return [{ op: "addr.replace", addr: d }];
  }
  removeOps(a: AddressSpec): KernelOp[] {
    return [{ op: "addr.del", addr: a }];
  }
}

/**
 * Static neighbour entries (kind `neighbours`), keyed by device and IP; entries the kernel learned are left
 * alone.
 */
export class NeighbourReconciler implements ObjectReconciler<NeighbourSpec> {
  readonly kind = "neighbours";
  /** After the devices they hang off. */
  readonly after = ["links"] as const;
  constructor(private readonly owner: OwnershipPolicy) {}
  key(n: NeighbourSpec): string {
    return `${n.dev} ${n.ip}`;
  }
  async listOwned(kernel: KernelPort, desired: readonly NeighbourSpec[]): Promise<NeighbourSpec[]> {
    const wantedKeys = new Set(desired.map((d) => this.key(d)));
    const out: NeighbourSpec[] = [];
    for (const n of await kernel.listNeighbours({})) {
      // Only static entries are ours; entries the kernel learned (REACHABLE, STALE, ...) are left alone.
      const state = n.state.toLowerCase();
      if (state !== "permanent" && state !== "noarp") continue;
      if (!n.lladdr) continue;
      if (!this.owner.ownsLink(n.dev) && !wantedKeys.has(this.key({ ...n, lladdr: n.lladdr, state: "permanent" }))) continue;
      out.push({ dev: n.dev, ip: n.ip, lladdr: n.lladdr, state });
    }
    return out;
  }
  drift(d: NeighbourSpec, a: NeighbourSpec): Drift {
    return differs("lladdr", d.lladdr, a.lladdr) ?? differs("state", d.state, a.state);
  }
  addOps(n: NeighbourSpec): KernelOp[] {
    return [{ op: "neigh.replace", neigh: n }];
  }
  updateOps(d: NeighbourSpec): KernelOp[] {
    return [{ op: "neigh.replace", neigh: d }];
  }
  removeOps(n: NeighbourSpec): KernelOp[] {
    return [{ op: "neigh.del", neigh: n }];
  }
}

/**
 * Permanent `self` FDB entries (kind `fdb`) on owned vxlan devices and on devices that desired entries name.
 */
export class FdbReconciler implements ObjectReconciler<FdbSpec> {
  readonly kind = "fdb";
  /** After the devices they hang off. */
  readonly after = ["links"] as const;
  constructor(private readonly owner: OwnershipPolicy) {}
  key(f: FdbSpec): string {
    return `${f.dev} ${f.mac} ${f.dst ?? "-"}`;
  }
  async listOwned(kernel: KernelPort, desired: readonly FdbSpec[]): Promise<FdbSpec[]> {
    const links = await kernel.listLinks();
    const present = new Set(links.map((l) => l.name));
    // FDB entries are reconciled on owned vxlan devices (Weft's tunnels) and on devices named by desired entries.
    const devs = new Set<string>(links.filter((l) => l.kind === "vxlan" && this.owner.ownsLink(l.name)).map((l) => l.name));
    for (const d of desired) if (present.has(d.dev)) devs.add(d.dev);
    const wantedKeys = new Set(desired.map((d) => this.key(d)));
    const out: FdbSpec[] = [];
    for (const dev of devs) {
      for (const f of await kernel.listFdb({ dev })) {
        if (!f.self || !f.permanent) continue;
        if (!this.owner.ownsLink(f.dev) && !wantedKeys.has(this.key(f))) continue;
        out.push(f);
      }
    }
    return out;
  }
  drift(): Drift {
    return undefined;
  }
  addOps(f: FdbSpec): KernelOp[] {
    return [{ op: "fdb.append", fdb: f }];
  }
  updateOps(d: FdbSpec): KernelOp[] {
    return [{ op: "fdb.replace", fdb: d }];
  }
  removeOps(f: FdbSpec): KernelOp[] {
    return [{ op: "fdb.del", fdb: f }];
  }
}

/**
 * Routes (kind `routes`) carrying the owned protocol, keyed by family, table, destination and metric. Adds with
 * `route add`, so a route Weft does not own is reported, never overwritten.
 */
export class RouteReconciler implements ObjectReconciler<RouteSpec> {
  readonly kind = "routes";
  /** After neighbours and FDB (vxlan resolves an onlink gateway through them, never the kernel) and addresses (a route's src). */
  readonly after = ["addresses", "neighbours", "fdb"] as const;
  constructor(private readonly owner: OwnershipPolicy) {}
  key(r: RouteSpec): string {
    // The kernel gives IPv6 routes metric 1024 when none is set; IPv4 routes 0.
    return `${r.family} ${routeTable(r)} ${r.dst} ${r.metric ?? (r.family === "v6" ? 1024 : 0)}`;
  }
  /**
   * Weft's routes (its protocol) in EVERY table: a route a backend put in a policy table and no longer declares
   * must still be found, so prune and teardown can remove it. One read per family.
   */
  async listOwned(kernel: KernelPort): Promise<RouteSpec[]> {
    const out: RouteSpec[] = [];
    for (const family of ["v4", "v6"] as Family[]) out.push(...(await kernel.listRoutes({ family, table: "all", protocol: this.owner.routeProtocol })));
    return out;
  }
  drift(d: RouteSpec, a: RouteSpec): Drift {
    const reasons = [
      d.gateway !== a.gateway ? `via ${a.gateway ?? "none"} != ${d.gateway ?? "none"}` : undefined,
      d.dev !== undefined && d.dev !== a.dev ? `dev ${a.dev ?? "none"} != ${d.dev}` : undefined,
      (d.onlink ?? false) !== (a.onlink ?? false) ? `onlink ${a.onlink ?? false} != ${d.onlink ?? false}` : undefined,
      differs("scope", d.scope, a.scope),
      differs("type", d.type, a.type ?? "unicast"),
      differs("src", d.src, a.src),
      differs("mtu", d.mtu, a.mtu),
    ].filter(Boolean);
    return reasons.length ? reasons.join(", ") : undefined;
  }
  addOps(r: RouteSpec): KernelOp[] {
    // `add`, not `replace`: a route to the same destination that Weft does not own is reported, never overwritten.
    return [{ op: "route.add", route: r }];
  }
  updateOps(d: RouteSpec): KernelOp[] {
    return [{ op: "route.replace", route: d }];
  }
  removeOps(r: RouteSpec): KernelOp[] {
    return [{ op: "route.del", route: r }];
  }
}
