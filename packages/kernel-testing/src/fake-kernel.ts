/**
 * FakeKernel: a stateful, in-memory KernelPort for unit tests (Felix's netlink shim fake is the model).
 *
 * It keeps links, addresses, routes (per table), neighbours and FDB entries, and reproduces the kernel
 * behaviour that Weft's reconcilers and backends depend on. Every rule below was observed on the dev VM
 * (kernel 6.x, iproute2 6.1) and is checked against the real kernel by the same contract suite
 * (`describeKernelPortContract`), so a test that passes here means something:
 * - duplicate add: KERNEL_EXISTS; replace: create or update; del of a missing object: KERNEL_NOT_FOUND;
 * - a route via a gateway that no connected subnet / scope-link route on that device covers, without
 *   `onlink`: KERNEL_INVALID ("Nexthop has invalid gateway" / "No route to host"); via a down device:
 *   KERNEL_INVALID ("Nexthop device is not up");
 * - an address on an up link adds its connected route (proto kernel; IPv4 scope link + src, IPv6 metric 256);
 * - an IPv6 address added without `nodad` is tentative (DAD), and a tentative address is refused as a route's
 *   src (KERNEL_INVALID). The kernel ends DAD after ~1 s; the fake has no timers, so here it never ends;
 * - a link going down loses every route through it, its IPv6 addresses (keep_addr_on_down=0) and all its
 *   neighbours, permanent ones too; coming up restores the connected routes only. A MAC change also
 *   flushes its neighbours. Permanent vxlan FDB entries survive both;
 * - deleting a link removes its addresses, routes, neighbours and FDB entries, its veth peer, and every vxlan
 *   bound to it (`dev`); its bridge ports are released;
 * - a vxlan bound to `dev` has at most dev MTU - 50 (IPv4) / - 70 (IPv6): created larger it is clamped, set
 *   larger it is refused (KERNEL_INVALID); two vxlans with one VNI, port and local family: KERNEL_EXISTS;
 * - vxlan FDB: `append` of an existing (mac, dst) succeeds silently; `del` of a dst the MAC does not have
 *   succeeds silently (but a missing MAC is KERNEL_NOT_FOUND); `replace` of the all-zero MAC is
 *   KERNEL_UNSUPPORTED; a dst of the other family is KERNEL_INVALID;
 * - link kinds in `unsupportedKinds` (default: wireguard, no module here) fail with KERNEL_UNSUPPORTED;
 * - contributed link kinds (`linkKinds`, from BackendModule.linkKinds) are created as their definition's
 *   `fake` model says (default: the kernel keeps `attrs` as given) and read back with those fields; a kind
 *   nobody defined is refused like the adapter refuses it (KERNEL_INVALID). Kinds this machine's kernel lacks
 *   (gre, ipip, geneve) are therefore testable here only: their real-kernel behaviour is the author's claim.
 * Values are validated with the adapter's own rules (`validateKernelOp`), so an op the adapter refuses is
 * refused here too.
 *
 * There are no timers inside; time-based behaviour (neighbour ageing, ...) is not modelled.
 */
import {
  type FdbSpec,
  type Family,
  IPAddress,
  IPNet,
  type Link,
  type LinkKind,
  type LinkKindDefinition,
  type LinkKindFields,
  type LinkSpec,
  type NeighbourSpec,
  type RouteScope,
  type RouteSpec,
  type RouteType,
  type VxlanAttrs,
  normalizeMac,
} from "@weft/core";
import {
  type Address,
  describeOp,
  KernelError,
  type KernelErrorCode,
  type KernelOp,
  type KernelPort,
  type Neighbour,
  type OpResult,
  type RouteLookup,
  type RouteQuery,
  LinkKinds,
  validateKernelOp,
} from "@weft/kernel";

export interface FakeKernelOptions {
  /** Link kinds whose creation fails with KERNEL_UNSUPPORTED. Default ["wireguard"] (no module on the dev VM). */
  readonly unsupportedKinds?: readonly string[];
  /** Extra sysctls (dotted or slash keys) on top of the built-in defaults. */
  readonly sysctls?: Readonly<Record<string, string>>;
  /** Link kinds backends contribute (BackendModule.linkKinds), on top of the built-in ones. */
  readonly linkKinds?: readonly LinkKindDefinition[];
}

/** Everything the fake holds, in a stable order; what unit tests assert on. */
export interface FakeKernelSnapshot {
  readonly links: Link[];
  readonly addresses: Address[];
  /** All tables, both families. */
  readonly routes: RouteSpec[];
  readonly neighbours: Neighbour[];
  readonly fdb: FdbSpec[];
}

export type OpMatcher = (op: KernelOp) => boolean;

/** A link the fake can hold: the core kinds, or any other kind name for planted foreign links ("dummy", ...). */
export type ExternalLinkSpec = Omit<LinkSpec, "kind"> & { readonly kind: LinkKind | (string & {}) };

interface LinkState {
  name: string;
  index: number;
  kind: string;
  up: boolean;
  mtu: number;
  address?: string;
  master?: string;
  vxlan?: { vni: number; port: number; local?: string; dev?: string; learning: boolean; gbp: boolean };
  veth?: { peer: string; peerNetns?: string };
  tun?: { mode: "tun" | "tap" };
  /** The fields a contributed kind's model keeps (read back as they are). */
  fields?: LinkKindFields;
  addrGenMode: NonNullable<LinkSpec["addrGenMode"]>;
}

interface AddrState {
  dev: string;
  ip: IPAddress;
  prefix: number;
  scope: string;
  /** IPv6 added without nodad: Duplicate Address Detection never ends here (no timers), so it stays tentative. */
  tentative: boolean;
  /** Planted with preferred lifetime 0 (addExternalAddress). */
  deprecated?: boolean;
}

interface RouteState {
  family: Family;
  dst: IPNet;
  type: RouteType;
  table: number;
  protocol: number;
  scope: RouteScope;
  metric: number;
  gateway?: string;
  dev?: string;
  onlink?: boolean;
  src?: string;
  mtu?: number;
}

interface FdbState {
  dev: string;
  mac: string;
  /** Remote VTEPs in kernel order (one FDB line each); [undefined] for an entry without dst. */
  dsts: Array<string | undefined>;
  self: boolean;
  permanent: boolean;
}

interface FaultRule {
  readonly match: OpMatcher;
  readonly code: KernelErrorCode;
  readonly message?: string;
  remaining: number;
}

const PROTO_BOOT = 3;
const PROTO_KERNEL = 2;
const MAIN = 254;
const VXLAN_OVERHEAD = { v4: 50, v6: 70 } as const;

const SYSCTL_DEFAULTS: Readonly<Record<string, string>> = {
  "net/ipv4/ip_forward": "0",
  "net/ipv4/conf/all/forwarding": "0",
  "net/ipv4/conf/default/forwarding": "0",
  "net/ipv4/conf/all/rp_filter": "0",
  "net/ipv4/conf/default/rp_filter": "0",
  "net/ipv6/conf/all/forwarding": "0",
  "net/ipv6/conf/default/forwarding": "0",
  "net/ipv6/conf/all/disable_ipv6": "0",
  "net/ipv6/conf/default/disable_ipv6": "0",
};
const PER_LINK_SYSCTLS: Readonly<Record<string, string>> = {
  "net/ipv4/conf/{}/forwarding": "0",
  "net/ipv4/conf/{}/rp_filter": "0",
  "net/ipv4/conf/{}/proxy_arp": "0",
  "net/ipv4/conf/{}/send_redirects": "1",
  "net/ipv4/conf/{}/accept_local": "0",
  "net/ipv6/conf/{}/forwarding": "0",
  "net/ipv6/conf/{}/disable_ipv6": "0",
  "net/ipv6/conf/{}/accept_ra": "1",
};

/** Thrown inside the fake to fail one op; turned into an OpResult. */
class OpFailure extends Error {
  constructor(
    readonly code: KernelErrorCode,
    message: string,
  ) {
    super(message);
  }
}
const failOp = (code: KernelErrorCode, message: string): never => {
  throw new OpFailure(code, message);
};

const cmp = (a: string | number, b: string | number) => (a < b ? -1 : a > b ? 1 : 0);

export class FakeKernel implements KernelPort {
  private readonly links = new Map<string, LinkState>();
  private addrs: AddrState[] = [];
  /** Routes by "family|table|dst", each list sorted by metric. */
  private readonly routes = new Map<string, RouteState[]>();
  private readonly neighs = new Map<string, NeighbourSpec>();
  /** FDB entries by device, then by "self|mac" / "master|mac" (insertion order = kernel order). */
  private readonly fdbs = new Map<string, Map<string, FdbState>>();
  private readonly sysctls = new Map<string, string>();
  private readonly unsupported: ReadonlySet<string>;
  private readonly kinds: LinkKinds;
  private faults: FaultRule[] = [];
  private transportFailures: Array<string> = [];
  private nextIndex = 1;
  private macCounter = 0;

  constructor(opts: FakeKernelOptions = {}) {
    this.unsupported = new Set(opts.unsupportedKinds ?? ["wireguard"]);
    this.kinds = new LinkKinds(opts.linkKinds ?? []);
    for (const [k, v] of Object.entries(SYSCTL_DEFAULTS)) this.sysctls.set(k, v);
    for (const [k, v] of Object.entries(opts.sysctls ?? {})) this.sysctls.set(sysctlPath(k).join("/"), v);
    // `lo` exists in every namespace (up: the test labs bring it up too).
    this.createLink({ name: "lo", index: this.nextIndex++, kind: "loopback", up: true, mtu: 65536, address: "00:00:00:00:00:00", addrGenMode: "eui64" });
    this.addrs.push({ dev: "lo", ip: IPAddress.parse("127.0.0.1"), prefix: 8, scope: "host", tentative: false });
    this.addrs.push({ dev: "lo", ip: IPAddress.parse("::1"), prefix: 128, scope: "host", tentative: false });
  }

  // ---------------------------------------------------------------- fault injection

  /** The next op matching `match` fails with `code` (and is not applied). */
  failNext(match: OpMatcher, code: KernelErrorCode = "KERNEL_FAILED", message?: string): void {
    this.faults.push({ match, code, ...(message ? { message } : {}), remaining: 1 });
  }

  /** Every op matching `match` fails with `code` until the returned function is called. */
  failAlways(match: OpMatcher, code: KernelErrorCode = "KERNEL_FAILED", message?: string): () => void {
    const rule: FaultRule = { match, code, ...(message ? { message } : {}), remaining: Number.POSITIVE_INFINITY };
    this.faults.push(rule);
    return () => {
      this.faults = this.faults.filter((r) => r !== rule);
    };
  }

  /** The next `count` ops matching `match` (default: any) fail with KERNEL_TRANSIENT, as under ENOBUFS. */
  transientFailures(count: number, match: OpMatcher = () => true): void {
    this.faults.push({ match, code: "KERNEL_TRANSIENT", message: "RTNETLINK answers: No buffer space available", remaining: count });
  }

  /** The next `times` calls of any KernelPort method throw, as when ip cannot run at all. */
  breakTransport(times = 1, message = "ip -batch stopped without an error message (killed)"): void {
    for (let i = 0; i < times; i++) this.transportFailures.push(message);
  }

  clearFaults(): void {
    this.faults = [];
    this.transportFailures = [];
  }

  // ---------------------------------------------------------------- planting and inspection

  /** Creates a link nobody asked Weft for (an underlay `eth0`, a foreign `dummy`, ...). Throws on failure. */
  addExternalLink(spec: ExternalLinkSpec): void {
    if (this.kinds.get(spec.kind)) {
      this.plant({ op: "link.add", link: spec as LinkSpec });
      return;
    }
    if (this.links.has(spec.name)) throw new KernelError("KERNEL_EXISTS", `addExternalLink: ${spec.name} exists`);
    this.createLink({
      name: spec.name,
      index: this.nextIndex++,
      kind: spec.kind,
      up: spec.up ?? false,
      mtu: spec.mtu ?? 1500,
      address: spec.address ? normalizeMac(spec.address) : this.newMac(),
      addrGenMode: spec.addrGenMode ?? "eui64",
    });
  }

  /** Plants an address that has been there a while: an IPv6 one has finished DAD (is not tentative). */
  /** Plants an address (usable at once); `deprecated` as after `ip addr add ... preferred_lft 0`. */
  addExternalAddress(addr: { dev: string; address: string; deprecated?: boolean }): void {
    const { deprecated, ...spec } = addr;
    this.plant({ op: "addr.add", addr: { ...spec, nodad: true } });
    if (deprecated) {
      const ip = IPAddress.parse(spec.address.split("/")[0]!);
      const a = this.addrs.find((x) => x.dev === spec.dev && x.ip.equals(ip));
      if (a) a.deprecated = true;
    }
  }

  /** Plants a route (protocol defaults to boot, as `ip route add` gives). Throws when the kernel would refuse it. */
  addExternalRoute(route: RouteSpec): void {
    this.plant({ op: "route.add", route });
  }

  addExternalNeighbour(neigh: NeighbourSpec): void {
    this.plant({ op: "neigh.replace", neigh });
  }

  addExternalFdb(fdb: FdbSpec): void {
    this.plant({ op: "fdb.append", fdb });
  }

  private plant(op: KernelOp): void {
    const r = this.applyOne(op, false);
    if (!r.ok) throw r.error;
  }

  /** Every sysctl the fake holds (slash keys, e.g. `net/ipv4/conf/eth0/rp_filter`), sorted by key. */
  sysctlTable(): Record<string, string> {
    return Object.fromEntries([...this.sysctls.entries()].sort(([a], [b]) => cmp(a, b)));
  }

  snapshot(): FakeKernelSnapshot {
    const routes: RouteSpec[] = [];
    for (const list of this.routes.values()) for (const r of list) routes.push(routeOut(r));
    routes.sort((a, b) => cmp(a.family, b.family) || cmp(a.table!, b.table!) || cmp(a.dst, b.dst) || cmp(a.metric ?? 0, b.metric ?? 0));
    const fdb: FdbSpec[] = [];
    for (const dev of [...this.fdbs.keys()].sort()) fdb.push(...this.fdbOut(dev));
    return {
      links: [...this.links.values()].sort((a, b) => a.index - b.index).map(linkOut),
      addresses: this.addrs.map(addrOut).sort((a, b) => cmp(a.dev, b.dev) || cmp(a.address, b.address)),
      routes,
      neighbours: [...this.neighs.values()].map(neighOut).sort((a, b) => cmp(a.dev, b.dev) || cmp(a.ip, b.ip)),
      fdb,
    };
  }

  // ---------------------------------------------------------------- KernelPort reads

  async listLinks(): Promise<Link[]> {
    this.transport();
    return [...this.links.values()].sort((a, b) => a.index - b.index).map(linkOut);
  }

  async listAddresses(dev?: string): Promise<Address[]> {
    this.transport();
    if (dev !== undefined) this.mustExist(dev, `Device "${dev}" does not exist.`);
    return this.addrs.filter((a) => dev === undefined || a.dev === dev).map(addrOut);
  }

  async listRoutes(query: RouteQuery): Promise<RouteSpec[]> {
    this.transport();
    const table = query.table ?? MAIN;
    const out: RouteSpec[] = [];
    for (const list of this.routes.values()) {
      for (const r of list) {
        if (r.family !== query.family) continue;
        if (table !== "all" && r.table !== table) continue;
        if (query.protocol !== undefined && r.protocol !== query.protocol) continue;
        out.push(routeOut(r));
      }
    }
    return out;
  }

  /** `ip route get` without policy rules: a local address, else the main table's longest match (lowest metric). */
  async routeGet(dst: string): Promise<RouteLookup | undefined> {
    this.transport();
    const ip = IPAddress.tryParse(dst);
    if (!ip) throw new KernelError("KERNEL_INVALID", `dst ${JSON.stringify(dst)}: must be an IPv4 or IPv6 address`);
    const own = this.addrs.find((a) => a.ip.equals(ip));
    if (own) return { type: "local", dev: "lo", src: ip.toString() };
    let best: RouteState | undefined;
    for (const list of this.routes.values()) {
      for (const r of list) {
        if (r.family !== ip.family || r.table !== MAIN || !r.dst.contains(ip)) continue;
        if (!best || r.dst.prefix > best.dst.prefix || (r.dst.prefix === best.dst.prefix && r.metric < best.metric)) best = r;
      }
    }
    const route = best;
    if (!route || route.type !== "unicast" || !route.dev) return undefined;
    // The kernel's source choice: the route's prefsrc, else an address of the device on the next hop's subnet,
    // else its first (never a tentative IPv6 one).
    const hop = (route.gateway && IPAddress.tryParse(route.gateway)) || ip;
    const usable = this.addrs.filter((a) => a.dev === route.dev && a.ip.family === ip.family && !a.tentative && !a.deprecated);
    const src = route.src ?? (usable.find((a) => IPNet.of(a.ip, a.prefix).contains(hop)) ?? usable[0])?.ip.toString();
    return { type: "unicast", dev: route.dev, ...(route.gateway ? { gateway: route.gateway } : {}), ...(src ? { src } : {}) };
  }

  async listNeighbours(query: { readonly dev?: string; readonly family?: Family }): Promise<Neighbour[]> {
    this.transport();
    if (query.dev !== undefined) this.mustExist(query.dev, `Cannot find device "${query.dev}"`);
    return [...this.neighs.values()]
      .filter((n) => (query.dev === undefined || n.dev === query.dev) && (query.family === undefined || IPAddress.parse(n.ip).family === query.family))
      .map(neighOut);
  }

  async listFdb(query: { readonly dev: string }): Promise<FdbSpec[]> {
    this.transport();
    this.mustExist(query.dev, `Cannot find device "${query.dev}"`);
    return this.fdbOut(query.dev);
  }

  async getSysctl(key: string): Promise<string> {
    this.transport();
    const path = this.sysctlKey(key);
    const v = this.sysctls.get(path);
    if (v === undefined) throw new KernelError("KERNEL_NOT_FOUND", `sysctl read ${key}: cannot stat /proc/sys/${path}: No such file or directory`);
    return v;
  }

  async setSysctl(key: string, value: string): Promise<void> {
    this.transport();
    const path = this.sysctlKey(key);
    if (!this.sysctls.has(path)) throw new KernelError("KERNEL_NOT_FOUND", `sysctl write ${key}: cannot stat /proc/sys/${path}: No such file or directory`);
    if (!/^-?\d+$/.test(value.trim())) throw new KernelError("KERNEL_INVALID", `sysctl write ${key}: setting key "${key}": Invalid argument`);
    this.sysctls.set(path, value.trim());
  }

  // ---------------------------------------------------------------- KernelPort writes

  async apply(ops: readonly KernelOp[]): Promise<OpResult[]> {
    this.transport();
    return ops.map((op) => this.applyOne(op, true));
  }

  private applyOne(op: KernelOp, faults: boolean): OpResult {
    const invalid = validateKernelOp(op, this.kinds);
    if (invalid) return { ok: false, error: invalid };
    if (faults) {
      const rule = this.faults.find((r) => r.remaining > 0 && r.match(op));
      if (rule) {
        rule.remaining--;
        if (rule.remaining <= 0) this.faults = this.faults.filter((r) => r !== rule);
        return { ok: false, error: new KernelError(rule.code, `${describeOp(op)}: ${rule.message ?? `injected ${rule.code}`}`, op) };
      }
    }
    try {
      this.execute(op);
      return { ok: true };
    } catch (err) {
      if (err instanceof OpFailure) return { ok: false, error: new KernelError(err.code, `${describeOp(op)}: ${err.message}`, op) };
      throw err;
    }
  }

  private execute(op: KernelOp): void {
    switch (op.op) {
      case "link.add":
        return this.linkAdd(op.link);
      case "link.set":
        return this.linkSet(op);
      case "link.del":
        return this.linkDel(op.name);
      case "addr.add":
      case "addr.replace":
      case "addr.del":
        return this.addr(op.op, op.addr.dev, op.addr.address, op.addr.nodad === true);
      case "route.add":
      case "route.replace":
        return this.routeAdd(op.route, op.op === "route.replace");
      case "route.del":
        return this.routeDel(op.route);
      case "neigh.add":
      case "neigh.replace":
      case "neigh.del":
        return this.neigh(op.op, op.neigh);
      case "fdb.add":
      case "fdb.append":
      case "fdb.replace":
      case "fdb.del":
        return this.fdb(op.op, op.fdb);
    }
  }

  // ---------------------------------------------------------------- links

  private linkAdd(spec: LinkSpec): void {
    if (this.unsupported.has(spec.kind)) failOp("KERNEL_UNSUPPORTED", "Error: Unknown device type.");
    if (spec.kind === "tun") {
      if (this.links.has(spec.name)) failOp("KERNEL_EXISTS", "ioctl(TUNSETIFF): Device or resource busy");
    } else if (this.links.has(spec.name)) failOp("KERNEL_EXISTS", "RTNETLINK answers: File exists");
    if (spec.address !== undefined) checkUnicastMac(spec.address);
    if (spec.mtu !== undefined) checkMtu(spec.mtu);
    const master = spec.master !== undefined ? this.masterFor(spec.master) : undefined;

    const base = {
      up: false,
      mtu: spec.mtu ?? 1500,
      addrGenMode: spec.addrGenMode ?? "eui64",
      ...(master ? { master } : {}),
    } as const;
    switch (spec.kind) {
      case "bridge":
      case "wireguard":
        this.createLink({ ...base, name: spec.name, index: this.nextIndex++, kind: spec.kind, address: spec.address ? normalizeMac(spec.address)! : this.newMac() });
        break;
      case "tun":
        this.createLink({ ...base, name: spec.name, index: this.nextIndex++, kind: "tun", tun: { mode: spec.tun?.mode ?? "tun" } });
        break;
      case "veth": {
        const peer = spec.veth!.peer;
        const local = spec.veth!.peerNetns === undefined;
        if (local && (this.links.has(peer) || peer === spec.name)) failOp("KERNEL_EXISTS", "RTNETLINK answers: File exists");
        const a = this.createLink({
          ...base,
          name: spec.name,
          index: this.nextIndex++,
          kind: "veth",
          address: spec.address ? normalizeMac(spec.address)! : this.newMac(),
          veth: local ? { peer } : { peer, peerNetns: spec.veth!.peerNetns! },
        });
        // A peer created in another namespace is not visible here (and not readable: no veth.peer on read).
        if (local) this.createLink({ name: peer, index: this.nextIndex++, kind: "veth", up: false, mtu: a.mtu, address: this.newMac(), addrGenMode: "eui64", veth: { peer: spec.name } });
        break;
      }
      default: {
        // A contributed kind: its model says what the kernel keeps (default: attrs as given).
        const model = this.kinds.get(spec.kind)?.fake;
        const made = model ? model.create(spec, [...this.links.values()].sort((a, b) => a.index - b.index).map(linkOut)) : { fields: spec.attrs ? { attrs: { ...spec.attrs } } : {} };
        if ("refuse" in made) failOp(made.refuse.code, made.refuse.message);
        const ok = made as { fields: LinkKindFields; mtu?: number };
        this.createLink({
          ...base,
          ...(ok.mtu !== undefined ? { mtu: ok.mtu } : {}),
          name: spec.name,
          index: this.nextIndex++,
          kind: spec.kind,
          address: spec.address ? normalizeMac(spec.address)! : this.newMac(),
          fields: ok.fields,
        });
        break;
      }
      case "vxlan": {
        const x = spec.vxlan!;
        const local = x.local !== undefined ? IPAddress.parse(x.local) : undefined;
        const family: Family = local?.family ?? "v4";
        const port = x.port ?? 8472;
        let mtu = spec.mtu ?? 1500;
        if (x.dev !== undefined) {
          const lower = this.links.get(x.dev) ?? failOp("KERNEL_NOT_FOUND", `Cannot find device "${x.dev}"`);
          // Bound to a device, the kernel derives the MTU from it and silently clamps a larger request.
          const max = lower.mtu - VXLAN_OVERHEAD[family];
          mtu = spec.mtu === undefined ? max : Math.min(spec.mtu, max);
        }
        for (const other of this.links.values()) {
          if (other.vxlan && other.vxlan.vni === x.vni && other.vxlan.port === port && (other.vxlan.local ? IPAddress.parse(other.vxlan.local).family : "v4") === family) {
            failOp("KERNEL_EXISTS", "Error: A VXLAN device with the specified VNI already exists.");
          }
        }
        this.createLink({
          ...base,
          mtu,
          name: spec.name,
          index: this.nextIndex++,
          kind: "vxlan",
          address: spec.address ? normalizeMac(spec.address)! : this.newMac(),
          vxlan: {
            vni: x.vni,
            port,
            ...(local ? { local: local.toString() } : {}),
            ...(x.dev !== undefined ? { dev: x.dev } : {}),
            learning: x.learning === true,
            gbp: x.gbp === true,
          },
        });
        break;
      }
    }
    if (spec.up === true) this.setUp(this.links.get(spec.name)!, true);
  }

  private createLink(l: LinkState): LinkState {
    this.links.set(l.name, l);
    for (const [tmpl, v] of Object.entries(PER_LINK_SYSCTLS)) this.sysctls.set(tmpl.replace("{}", l.name), v);
    return l;
  }

  private masterFor(name: string): string {
    const m = this.links.get(name) ?? failOp("KERNEL_NOT_FOUND", `Error: argument "${name}" is wrong: Device does not exist`);
    if (m.kind !== "bridge") failOp("KERNEL_UNSUPPORTED", "RTNETLINK answers: Operation not supported");
    return name;
  }

  private linkSet(op: Extract<KernelOp, { op: "link.set" }>): void {
    const l = this.links.get(op.name) ?? failOp("KERNEL_NOT_FOUND", `Cannot find device "${op.name}"`);
    // Check everything first, then change: the fake never half-applies one op.
    if (op.address !== undefined) checkUnicastMac(op.address);
    if (op.mtu !== undefined) {
      checkMtu(op.mtu);
      if (l.vxlan?.dev !== undefined) {
        const lower = this.links.get(l.vxlan.dev);
        const family: Family = l.vxlan.local ? IPAddress.parse(l.vxlan.local).family : "v4";
        if (lower && op.mtu > lower.mtu - VXLAN_OVERHEAD[family]) failOp("KERNEL_INVALID", "RTNETLINK answers: Invalid argument");
      }
    }
    let master: string | undefined;
    if (typeof op.master === "string") {
      master = this.masterFor(op.master);
      if (master === l.name) failOp("KERNEL_UNSUPPORTED", "RTNETLINK answers: Operation not supported");
    }

    if (op.address !== undefined) {
      const mac = normalizeMac(op.address)!;
      if (mac !== l.address) {
        l.address = mac;
        this.flushNeighbours(l.name);
      }
    }
    if (op.mtu !== undefined) l.mtu = op.mtu;
    if (op.master === null) delete l.master;
    else if (master !== undefined) l.master = master;
    if (op.addrGenMode !== undefined) l.addrGenMode = op.addrGenMode;
    if (op.up !== undefined) this.setUp(l, op.up);
  }

  private setUp(l: LinkState, up: boolean): void {
    if (l.up === up) return;
    l.up = up;
    if (!up) {
      // Down: routes through it go (all tables, both families), IPv6 addresses go (keep_addr_on_down=0),
      // neighbours go (permanent too), non-permanent FDB entries go.
      this.removeRoutes((r) => r.dev === l.name);
      this.addrs = this.addrs.filter((a) => !(a.dev === l.name && a.ip.family === "v6"));
      this.flushNeighbours(l.name);
      const f = this.fdbs.get(l.name);
      if (f) for (const [key, e] of f) if (!e.permanent) f.delete(key);
      return;
    }
    for (const a of this.addrs) if (a.dev === l.name) this.addConnectedRoute(a);
  }

  private linkDel(name: string): void {
    const l = this.links.get(name) ?? failOp("KERNEL_NOT_FOUND", `Cannot find device "${name}"`);
    if (l.kind === "loopback") failOp("KERNEL_UNSUPPORTED", "RTNETLINK answers: Operation not supported");
    this.removeLink(l);
  }

  private removeLink(l: LinkState): void {
    if (!this.links.has(l.name)) return;
    this.links.delete(l.name);
    const gone = this.addrs.filter((a) => a.dev === l.name);
    this.addrs = this.addrs.filter((a) => a.dev !== l.name);
    this.removeRoutes((r) => r.dev === l.name);
    for (const a of gone) this.dropPrefsrc(a.ip);
    this.flushNeighbours(l.name);
    this.fdbs.delete(l.name);
    for (const k of [...this.sysctls.keys()]) if (k.split("/")[3] === l.name && k.startsWith("net/ipv")) this.sysctls.delete(k);
    for (const other of [...this.links.values()]) {
      if (other.master === l.name) delete other.master;
      // The veth peer dies with it; so does every vxlan bound to it (the kernel unregisters them).
      if (l.veth && !l.veth.peerNetns && other.name === l.veth.peer) this.removeLink(other);
      else if (other.vxlan?.dev === l.name) this.removeLink(other);
    }
  }

  // ---------------------------------------------------------------- addresses

  private addr(verb: "addr.add" | "addr.replace" | "addr.del", dev: string, text: string, nodad: boolean): void {
    const [ipText, lenText] = text.split("/");
    const ip = IPAddress.parse(ipText!);
    const prefix = Number(lenText);
    const l = this.links.get(dev) ?? failOp("KERNEL_NOT_FOUND", `Cannot find device "${dev}"`);
    // IPv4 addresses are keyed by (address, prefix), IPv6 ones by address alone.
    const same = (a: AddrState) => a.dev === dev && a.ip.equals(ip) && (ip.family === "v6" || a.prefix === prefix);
    const existing = this.addrs.find(same);
    const fam = ip.family === "v4" ? "ipv4" : "ipv6";
    if (verb === "addr.del") {
      if (!existing || existing.prefix !== prefix) failOp("KERNEL_NOT_FOUND", `Error: ${fam}: ${ip.family === "v4" ? "Address" : "address"} not found.`);
      this.addrs = this.addrs.filter((a) => a !== existing);
      this.removeConnectedRoute(existing!);
      this.dropPrefsrc(existing!.ip);
      return;
    }
    if (existing) {
      if (verb === "addr.add") failOp("KERNEL_EXISTS", `Error: ${fam}: ${ip.family === "v4" ? "Address" : "address"} already assigned.`);
      if (existing.prefix !== prefix) {
        this.removeConnectedRoute(existing);
        existing.prefix = prefix;
        if (l.up) this.addConnectedRoute(existing);
      }
      return;
    }
    const a: AddrState = { dev, ip, prefix, scope: "global", tentative: ip.family === "v6" && !nodad };
    this.addrs.push(a);
    if (l.up) this.addConnectedRoute(a);
  }

  private connectedRoute(a: AddrState): RouteState | undefined {
    if (a.prefix >= a.ip.bits || a.dev === "lo") return undefined;
    const base = { family: a.ip.family, dst: IPNet.of(a.ip, a.prefix), type: "unicast", table: MAIN, protocol: PROTO_KERNEL, dev: a.dev } as const;
    return a.ip.family === "v4" ? { ...base, scope: "link", metric: 0, src: a.ip.toString() } : { ...base, scope: "global", metric: 256 };
  }

  private addConnectedRoute(a: AddrState): void {
    const r = this.connectedRoute(a);
    if (!r) return;
    const list = this.routeList(r);
    if (list.some((x) => x.metric === r.metric && x.dev === r.dev)) return;
    this.insertRoute(r);
  }

  private removeConnectedRoute(a: AddrState): void {
    const r = this.connectedRoute(a);
    if (!r) return;
    // Another address in the same subnet on the same device keeps the route.
    if (this.addrs.some((o) => o.dev === a.dev && o.ip.family === a.ip.family && o.prefix === a.prefix && IPNet.of(o.ip, o.prefix).equals(r.dst))) return;
    this.removeRoutes((x) => x.protocol === PROTO_KERNEL && x.dev === a.dev && x.family === r.family && x.table === MAIN && x.dst.equals(r.dst));
  }

  /** IPv4 routes using a deleted address as their source go with it (fib_sync_down_addr). */
  private dropPrefsrc(ip: IPAddress): void {
    if (ip.family !== "v4") return;
    const s = ip.toString();
    if (this.addrs.some((a) => a.ip.equals(ip))) return;
    this.removeRoutes((r) => r.src === s);
  }

  // ---------------------------------------------------------------- routes

  private routeKey(r: { family: Family; table: number; dst: IPNet }): string {
    return `${r.family}|${r.table}|${r.dst.toString()}`;
  }

  private routeList(r: { family: Family; table: number; dst: IPNet }): RouteState[] {
    return this.routes.get(this.routeKey(r)) ?? [];
  }

  private insertRoute(r: RouteState): void {
    const key = this.routeKey(r);
    const list = this.routes.get(key) ?? [];
    list.push(r);
    list.sort((a, b) => a.metric - b.metric);
    this.routes.set(key, list);
  }

  private removeRoutes(pred: (r: RouteState) => boolean): void {
    for (const [k, list] of this.routes) {
      const keep = list.filter((r) => !pred(r));
      if (keep.length === 0) this.routes.delete(k);
      else if (keep.length !== list.length) this.routes.set(k, keep);
    }
  }

  private routeAdd(spec: RouteSpec, replace: boolean): void {
    const family = spec.family;
    const type = spec.type ?? "unicast";
    const r: RouteState = {
      family,
      dst: IPNet.parse(spec.dst, true),
      type,
      table: spec.table ?? MAIN,
      protocol: spec.protocol ?? PROTO_BOOT,
      metric: spec.metric ?? (family === "v6" ? 1024 : 0),
      // IPv6 ignores scope; IPv4 defaults to link for a device route without gateway (iproute2 sets it).
      scope: family === "v6" ? "global" : (spec.scope ?? (type === "unicast" && spec.gateway === undefined ? "link" : "global")),
      ...(spec.mtu !== undefined ? { mtu: spec.mtu } : {}),
    };
    if (type === "unicast") {
      if (spec.gateway === undefined && spec.dev === undefined) failOp("KERNEL_INVALID", "Error: Device for nexthop is not up.");
      let dev: LinkState | undefined;
      if (spec.dev !== undefined) {
        dev = this.links.get(spec.dev) ?? failOp("KERNEL_NOT_FOUND", `Cannot find device "${spec.dev}"`);
        if (!dev.up) failOp("KERNEL_INVALID", spec.gateway === undefined ? "Error: Device for nexthop is not up." : "Error: Nexthop device is not up.");
      }
      if (spec.gateway !== undefined) {
        const gw = IPAddress.parse(spec.gateway);
        if (family === "v4" && spec.scope !== undefined && spec.scope !== "global") {
          failOp("KERNEL_INVALID", spec.onlink ? "Error: Nexthop has invalid scope." : "Error: Nexthop has invalid gateway.");
        }
        if (spec.onlink) {
          if (!dev) failOp("KERNEL_INVALID", "Error: Nexthop device required for onlink.");
          r.onlink = true;
        } else {
          const via = this.resolveGateway(gw, spec.dev, r.table);
          if (!via) failOp("KERNEL_INVALID", family === "v4" ? "Error: Nexthop has invalid gateway." : "RTNETLINK answers: No route to host");
          dev = this.links.get(via!);
        }
        r.gateway = gw.toString();
      }
      r.dev = dev!.name;
    }
    if (spec.src !== undefined) {
      const src = IPAddress.parse(spec.src);
      if (!this.addrs.some((a) => a.ip.equals(src) && !a.tentative)) {
        failOp("KERNEL_INVALID", family === "v4" ? "Error: Invalid prefsrc address." : "Error: Invalid source address.");
      }
      r.src = src.toString();
    }

    const list = this.routeList(r);
    const existing = list.find((x) => x.metric === r.metric);
    if (existing) {
      if (!replace) failOp("KERNEL_EXISTS", "RTNETLINK answers: File exists");
      this.routes.set(
        this.routeKey(r),
        list.map((x) => (x === existing ? r : x)),
      );
      return;
    }
    this.insertRoute(r);
  }

  /** The device through which `gw` is directly reachable: a connected subnet, else a gateway-less route. */
  private resolveGateway(gw: IPAddress, dev: string | undefined, table: number): string | undefined {
    // IPv6 link-local gateways: every up link has fe80::/64 (the fake does not hold link-local addresses).
    if (gw.family === "v6" && dev !== undefined && IPNet.parse("fe80::/10").contains(gw)) return dev;
    for (const a of this.addrs) {
      if (a.ip.family !== gw.family || (dev !== undefined && a.dev !== dev) || a.prefix >= a.ip.bits) continue;
      if (this.links.get(a.dev)?.up && IPNet.of(a.ip, a.prefix).contains(gw)) return a.dev;
    }
    for (const list of this.routes.values()) {
      for (const r of list) {
        if (r.family !== gw.family || (r.table !== MAIN && r.table !== table) || r.type !== "unicast" || r.gateway || !r.dev) continue;
        if (gw.family === "v4" && r.scope !== "link") continue;
        if ((dev === undefined || r.dev === dev) && r.dst.contains(gw)) return r.dev;
      }
    }
    return undefined;
  }

  private routeDel(spec: RouteSpec): void {
    const dst = IPNet.parse(spec.dst, true);
    const table = spec.table ?? MAIN;
    const gw = spec.gateway !== undefined ? IPAddress.parse(spec.gateway).toString() : undefined;
    // The fields `ip route del` sends narrow the match; unset ones match anything. Lowest metric first.
    const victim = this.routeList({ family: spec.family, table, dst }).find(
      (r) =>
        (spec.metric === undefined || r.metric === spec.metric) &&
        (gw === undefined || r.gateway === gw) &&
        (spec.dev === undefined || r.dev === spec.dev) &&
        (spec.protocol === undefined || r.protocol === spec.protocol) &&
        (spec.type === undefined || spec.type === "unicast" || r.type === spec.type),
    );
    if (!victim) failOp("KERNEL_NOT_FOUND", "RTNETLINK answers: No such process");
    this.removeRoutes((r) => r === victim);
  }

  // ---------------------------------------------------------------- neighbours

  private neigh(verb: "neigh.add" | "neigh.replace" | "neigh.del", n: NeighbourSpec): void {
    if (!this.links.has(n.dev)) failOp("KERNEL_NOT_FOUND", `Cannot find device "${n.dev}"`);
    const ip = IPAddress.parse(n.ip).toString();
    const key = `${n.dev} ${ip}`;
    const existing = this.neighs.get(key);
    if (verb === "neigh.del") {
      if (!existing) failOp("KERNEL_NOT_FOUND", "RTNETLINK answers: No such file or directory");
      this.neighs.delete(key);
      return;
    }
    if (existing && verb === "neigh.add") failOp("KERNEL_EXISTS", "RTNETLINK answers: File exists");
    this.neighs.set(key, { dev: n.dev, ip, lladdr: normalizeMac(n.lladdr)!, state: n.state });
  }

  private flushNeighbours(dev: string): void {
    for (const [k, n] of this.neighs) if (n.dev === dev) this.neighs.delete(k);
  }

  // ---------------------------------------------------------------- fdb

  private fdb(verb: "fdb.add" | "fdb.append" | "fdb.replace" | "fdb.del", f: FdbSpec): void {
    const l = this.links.get(f.dev) ?? failOp("KERNEL_NOT_FOUND", `Cannot find device "${f.dev}"`);
    const mac = normalizeMac(f.mac)!;
    const dst = f.dst !== undefined ? IPAddress.parse(f.dst) : undefined;
    if (l.vxlan && dst) {
      const family: Family = l.vxlan.local ? IPAddress.parse(l.vxlan.local).family : "v4";
      if (dst.family !== family) failOp("KERNEL_INVALID", "RTNETLINK answers: Address family not supported by protocol");
    }
    const d = dst?.toString();
    let table = this.fdbs.get(f.dev);
    if (!table) this.fdbs.set(f.dev, (table = new Map()));
    const key = `${f.self ? "self" : "master"}|${mac}`;
    const entry = table.get(key);
    switch (verb) {
      case "fdb.del": {
        if (!entry) failOp("KERNEL_NOT_FOUND", "RTNETLINK answers: No such file or directory");
        // Without dst the whole entry goes; a dst the entry does not have is silently ignored by vxlan.
        if (d === undefined) table.delete(key);
        else {
          entry!.dsts = entry!.dsts.filter((x) => x !== d);
          if (entry!.dsts.length === 0) table.delete(key);
        }
        return;
      }
      case "fdb.add":
        if (entry) failOp("KERNEL_EXISTS", "RTNETLINK answers: File exists");
        break;
      case "fdb.append":
        if (entry) {
          if (!entry.dsts.includes(d)) entry.dsts.push(d);
          return;
        }
        break;
      case "fdb.replace":
        if (entry) {
          if (l.vxlan && (mac === "00:00:00:00:00:00" || (parseInt(mac.slice(0, 2), 16) & 1) === 1)) {
            failOp("KERNEL_UNSUPPORTED", "RTNETLINK answers: Operation not supported");
          }
          if (!entry.dsts.includes(d)) entry.dsts[0] = d;
          entry.permanent = f.permanent;
          return;
        }
        break;
    }
    table.set(key, { dev: f.dev, mac, dsts: [d], self: f.self, permanent: f.permanent });
  }

  private fdbOut(dev: string): FdbSpec[] {
    const out: FdbSpec[] = [];
    for (const e of this.fdbs.get(dev)?.values() ?? []) {
      for (const d of e.dsts) out.push({ dev, mac: e.mac, ...(d !== undefined ? { dst: d } : {}), self: e.self, permanent: e.permanent });
    }
    return out;
  }

  // ---------------------------------------------------------------- helpers

  private transport(): void {
    const msg = this.transportFailures.shift();
    if (msg !== undefined) throw new KernelError("KERNEL_FAILED", msg);
  }

  private mustExist(dev: string, message: string): void {
    if (!this.links.has(dev)) throw new KernelError("KERNEL_NOT_FOUND", message);
  }

  private sysctlKey(key: string): string {
    try {
      return sysctlPath(key).join("/");
    } catch {
      throw new KernelError("KERNEL_INVALID", `sysctl key ${JSON.stringify(key)} is invalid: use a dotted or slash-separated key`);
    }
  }

  private newMac(): string {
    const n = ++this.macCounter;
    const b = [0x02, 0xfa, (n >> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
    return b.map((x) => x.toString(16).padStart(2, "0")).join(":");
  }
}

function sysctlPath(key: string): string[] {
  const parts = key.includes("/") ? key.split("/") : key.split(".");
  if (parts.some((p) => !/^[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$/.test(p))) throw new Error("invalid sysctl key");
  return parts;
}

function checkMtu(mtu: number): void {
  if (mtu < 68 || mtu > 65535) failOp("KERNEL_INVALID", "RTNETLINK answers: Invalid argument");
}

function checkUnicastMac(mac: string): void {
  const m = normalizeMac(mac)!;
  if (m === "00:00:00:00:00:00" || (parseInt(m.slice(0, 2), 16) & 1) === 1) failOp("KERNEL_INVALID", "RTNETLINK answers: Cannot assign requested address");
}

function linkOut(l: LinkState): Link {
  return {
    name: l.name,
    kind: l.kind as LinkKind,
    index: l.index,
    up: l.up,
    mtu: l.mtu,
    rawKind: l.kind,
    operState: l.kind === "loopback" ? "UNKNOWN" : l.up ? "UP" : "DOWN",
    addrGenMode: l.addrGenMode,
    ...(l.address !== undefined ? { address: l.address } : {}),
    ...(l.master !== undefined ? { master: l.master } : {}),
    ...(l.vxlan ? { vxlan: { ...l.vxlan } as VxlanAttrs } : {}),
    ...(l.veth && !l.veth.peerNetns ? { veth: { peer: l.veth.peer } } : {}),
    ...(l.tun ? { tun: { ...l.tun } } : {}),
    ...(l.fields ? structuredClone(l.fields) : {}),
  };
}

function addrOut(a: AddrState): Address {
  return { dev: a.dev, address: `${a.ip.toString()}/${a.prefix}`, family: a.ip.family, scope: a.scope, ...(a.deprecated ? { deprecated: true as const } : {}) };
}

function routeOut(r: RouteState): RouteSpec {
  return {
    family: r.family,
    dst: r.dst.toString(),
    type: r.type,
    table: r.table,
    protocol: r.protocol,
    scope: r.scope,
    ...(r.gateway !== undefined ? { gateway: r.gateway } : {}),
    ...(r.dev !== undefined ? { dev: r.dev } : {}),
    ...(r.onlink ? { onlink: true } : {}),
    ...(r.family === "v6" || r.metric !== 0 ? { metric: r.metric } : {}),
    ...(r.src !== undefined ? { src: r.src } : {}),
    ...(r.mtu !== undefined ? { mtu: r.mtu } : {}),
  };
}

function neighOut(n: NeighbourSpec): Neighbour {
  return { dev: n.dev, ip: n.ip, lladdr: n.lladdr, state: n.state };
}
