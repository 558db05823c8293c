/**
 * The peer preamble, written once. Before a backend sees a peer lease the agent screens it (screenPeer): a peer
 * that arrived before registerSubnet, carries backend data too deep or too large to walk, runs another
 * Backend.Type, claims a subnet overlapping this node's own, shares no address family with this node, or
 * advertises a PublicIP that is not a usable unicast address of another node (loopback, multicast, broadcast,
 * unspecified, link-local IPv6, IPv4-mapped IPv6, or this node's own address) is refused with a status, and
 * the backend is never called for it. Every backend gets these rules from this one place.
 * What passes is a Peer: the lease plus, per family this node routes, the peer's subnet, and on request its
 * PublicIP and backend data parsed with the backend's own schema — or the status saying why not (no PublicIP:
 * skipped; no data yet, absent or JSON null: pending; malformed data: skipped). A backend's addPeer then only
 * parses what it needs and describes kernel objects.
 */
import { describeValue, errorMessage } from "./errors.js";
import { type Family, IPAddress, IPNet } from "./ip.js";
import { type JsonValue, type Lease, leaseAttrsProblem, leaseSubnet, subnetKey } from "./lease.js";

/**
 * Why a peer was skipped, as a short stable word for metrics (`weft_peer_skips_total{reason}`):
 * `early` (before registerSubnet), `malformed` (data too deep/large, or the backend's schema refused it),
 * `address` (PublicIP not a usable unicast address), `own-address` (PublicIP is this node's), `backend-type`,
 * `overlap` (with this node's subnet), `family` (no family in common), `conflict` (overlaps or duplicates another
 * peer and loses the deterministic tie-break), `other`.
 */
export type PeerSkipReason = "early" | "malformed" | "address" | "own-address" | "backend-type" | "overlap" | "family" | "conflict" | "other";

/** A PeerStatus other than programmed: why a peer is not (yet) programmed. */
export type PeerRefusal =
  /** The backend cannot reach this peer by design (e.g. host-gw across L2 segments); says why and what to do. */
  | { readonly state: "unreachable"; readonly reason: string }
  /**
   * The peer has not published what this backend needs yet (its agent is starting: its lease exists before its
   * backend data). Programmed when the data arrives; the agent logs it at info, never as a problem.
   */
  | { readonly state: "pending"; readonly reason: string }
  /**
   * The peer's lease is unusable (malformed data, another backend type, a hostile address); skipped, other peers
   * are unaffected. peerSkipReason classifies it for the skip metric.
   */
  | { readonly state: "skipped"; readonly reason: string };

/** The metric word of skipped statuses made here (kept beside the status, so its shape stays `{state, reason}`). */
const SKIP_REASONS = new WeakMap<object, PeerSkipReason>();

/** A skipped status classified as `code` for the skip metric (see peerSkipReason). */
export function skippedStatus(reason: string, code: PeerSkipReason): { readonly state: "skipped"; readonly reason: string } {
  const status = { state: "skipped" as const, reason };
  SKIP_REASONS.set(status, code);
  return status;
}

/** The metric word for a skipped status: what screenPeer / Peer.endpoint / skippedStatus classified it as, else `other`. */
export function peerSkipReason(status: object): PeerSkipReason {
  return SKIP_REASONS.get(status) ?? "other";
}

/** Validates untrusted JSON into a typed value (the shape of core's Schema; any backend schema fits). */
interface DataSchema<T> {
  parse(input: unknown, path: string): T;
}

/** What the agent screens peers against: this node's backend type and its own subnet per routed family. */
export interface PeerScreenContext {
  /** This node's Backend.Type (the module's type); compared case-insensitively. */
  readonly backendType: string;
  /** This node's subnet per address family it routes (its lease's subnets in the enabled families). */
  readonly subnets: ReadonlyMap<Family, IPNet>;
  /**
   * This node's own addresses (its PublicIP, PublicIPv6 and underlay interface addresses): a peer advertising
   * one of them would be routed to this node itself, so it is skipped.
   */
  readonly ownAddresses?: readonly IPAddress[];
}

const V4_UNUSABLE: readonly [IPNet, string][] = [
  [IPNet.parse("0.0.0.0/8"), "an unspecified (\"this network\") address"],
  [IPNet.parse("127.0.0.0/8"), "a loopback address"],
  [IPNet.parse("224.0.0.0/4"), "a multicast address"],
  [IPNet.parse("255.255.255.255/32"), "the broadcast address"],
  [IPNet.parse("240.0.0.0/4"), "a reserved (class E) address"],
];
const V6_UNUSABLE: readonly [IPNet, string][] = [
  [IPNet.parse("::/128"), "the unspecified address"],
  [IPNet.parse("::1/128"), "the loopback address"],
  [IPNet.parse("ff00::/8"), "a multicast address"],
  [IPNet.parse("fe80::/10"), "a link-local address (only valid with an interface, never as a peer's endpoint)"],
  [IPNet.parse("::ffff:0:0/96"), "an IPv4-mapped address (use PublicIP for IPv4)"],
];

/**
 * Why `ip` cannot be a peer's PublicIP (PublicIPv6) of `family`, or undefined when it is a usable unicast
 * address of that family: not loopback, multicast, broadcast, unspecified, class E, IPv6 link-local or
 * IPv4-mapped. The caller checks separately that it is not this node's own address.
 */
export function unusablePeerAddress(ip: IPAddress, family: Family): string | undefined {
  if (ip.family !== family) return `an ${ip.family === "v4" ? "IPv4" : "IPv6"} address where an ${FAMILY_NAME[family]} one belongs`;
  for (const [net, what] of family === "v4" ? V4_UNUSABLE : V6_UNUSABLE) if (net.contains(ip)) return what;
  return undefined;
}

/** A peer's PublicIP and backend data of one family, as a backend needs them to describe its objects. */
export interface PeerEndpoint<T> {
  readonly family: Family;
  /** The peer's PublicIP (PublicIPv6) of this family. */
  readonly publicIP: IPAddress;
  /** The BackendData (BackendV6Data) parsed by the schema; the raw JSON when no schema was given. */
  readonly data: T;
}

const FAMILY_NAME: Record<Family, string> = { v4: "IPv4", v6: "IPv6" };
const FAMILIES: readonly Family[] = ["v4", "v6"];

/** A Peer has every field of its Lease (subnet, ipv6Subnet, attrs, expiration, revision, nodeName). */
export interface Peer extends Lease {}

/**
 * A peer lease that passed the agent's screening: the lease itself (a Peer is a Lease) plus the per-family
 * views a backend needs. Backends receive it in addPeer; tests may build one with `Peer.of(lease)`.
 */
export class Peer {
  /** The subnet key: the owner key the peer's objects are declared under. */
  readonly key: string;
  /** How reasons name the peer: `peer node-2 (198.19.2.0-24)`, or `peer 198.19.2.0-24` without a node name. */
  readonly label: string;
  /**
   * The peer's subnet per address family this node routes too, in family order (v4 first). Never empty for a
   * screened peer; none of them overlaps this node's own subnet.
   */
  readonly subnets: ReadonlyMap<Family, IPNet>;

  private constructor(lease: Lease, subnets: ReadonlyMap<Family, IPNet>) {
    // The lease's own fields (subnet, ipv6Subnet, attrs, expiration, revision, nodeName): a Peer is its Lease.
    Object.assign(this, lease);
    this.key = subnetKey(lease);
    this.label = peerLabel(lease);
    this.subnets = subnets;
  }

  /**
   * A Peer of `lease` without screening: `subnets` holds every family the lease has a subnet in (or only
   * `families`). For tests and tools that call a backend directly; the agent uses screenPeer.
   */
  static of(lease: Lease, families: readonly Family[] = FAMILIES): Peer {
    const subnets = new Map<Family, IPNet>();
    for (const f of families) {
      const s = leaseSubnet(lease, f);
      if (s) subnets.set(f, s);
    }
    return new Peer(lease, subnets);
  }

  /** @internal The screened Peer; see screenPeer. */
  static screened(lease: Lease, subnets: ReadonlyMap<Family, IPNet>): Peer {
    return new Peer(lease, subnets);
  }

  /** The peer's PublicIP (PublicIPv6) of `family`, if it advertises one. */
  publicIP(family: Family): IPAddress | undefined {
    return family === "v4" ? this.attrs.publicIP : this.attrs.publicIPv6;
  }

  /**
   * The peer's PublicIP and backend data of `family`, or the status that says why they are not usable:
   *   - no PublicIP (PublicIPv6): skipped, naming the subnet that has none;
   *   - with a `schema`: no BackendData (BackendV6Data) yet, absent or JSON null (a joining node takes its
   *     lease before it publishes): pending; data the schema rejects: skipped with the schema's message.
   * Without a schema the data is not looked at (a backend that publishes none, like host-gw). Never throws.
   */
  endpoint(family: Family): PeerEndpoint<JsonValue | undefined> | { readonly status: PeerRefusal };
  endpoint<T>(family: Family, schema: DataSchema<T>): PeerEndpoint<T> | { readonly status: PeerRefusal };
  endpoint<T>(family: Family, schema?: DataSchema<T>): PeerEndpoint<T | JsonValue | undefined> | { readonly status: PeerRefusal } {
    const publicIP = this.publicIP(family);
    if (!publicIP) {
      const field = family === "v4" ? "PublicIP" : "PublicIPv6";
      const subnet = leaseSubnet(this, family);
      return this.skipped(subnet ? `has the ${FAMILY_NAME[family]} subnet ${subnet} but no ${field}` : `has no ${field}`);
    }
    const raw = family === "v4" ? this.attrs.backendData : this.attrs.backendV6Data;
    if (!schema) return { family, publicIP, data: raw };
    const field = family === "v4" ? "BackendData" : "BackendV6Data";
    // A joining node takes its lease before it has created its device, so its lease is first seen without data
    // (absent in etcd, the annotation "null" in kube): not malformed, just early.
    if (raw === undefined || raw === null) {
      return { status: { state: "pending", reason: `${this.label} has not published its backend data yet (no ${field}); it is programmed when it does` } };
    }
    try {
      return { family, publicIP, data: schema.parse(raw, `${this.label} ${field}`) };
    } catch (err) {
      return { status: skippedStatus(errorMessage(err), "malformed") };
    }
  }

  /**
   * A skipped status whose reason starts with the peer's label: `peer node-2 (198.19.2.0-24) <reason>`; `code`
   * classifies it for the skip metric (default `other`).
   */
  skipped(reason: string, code?: PeerSkipReason): { readonly status: PeerRefusal } {
    return { status: skippedStatus(`${this.label} ${reason}`, code ?? "other") };
  }
}

/** `peer node-2 (198.19.2.0-24)`, or `peer 198.19.2.0-24` when the store knows no node name. */
export function peerLabel(lease: Lease): string {
  const key = subnetKey(lease);
  const name = lease.nodeName;
  if (!name) return `peer ${key}`;
  // A node name is printed as is when it looks like one; anything else quoted and cut (a log line is one line).
  const shown = /^[\x21-\x7e]{1,253}$/.test(name) ? name : describeValue(name);
  return `peer ${shown} (${key})`;
}

/**
 * The agent's screening of one peer lease, done once before a backend sees it. `local` undefined means this
 * node has not registered yet. Refusals (all `skipped`, with a reason naming the peer and the fix, and a
 * `code` for the skip metric), in this order: arrived before registerSubnet (`early`); backend data nested
 * deeper than MAX_BACKEND_DATA_DEPTH or larger than MAX_LEASE_VALUE_CHARS (`malformed`: checked before anything
 * walks it); another Backend.Type (`backend-type`); a subnet overlapping this node's own (`overlap`); no
 * address family in common (`family`); a PublicIP (PublicIPv6) of a shared family that is not a usable unicast
 * address (`address`, see unusablePeerAddress) or is one of this node's own addresses (`own-address`).
 * Otherwise the Peer, whose `subnets` are the families both nodes route. Never throws.
 */
export function screenPeer(lease: Lease, local: PeerScreenContext | undefined): { readonly peer: Peer } | { readonly status: PeerRefusal } {
  try {
    return screen(lease, local);
  } catch (err) {
    // Nothing above should throw; a lease that makes it throw anyway is skipped, never fatal to the watch.
    return { status: skippedStatus(`${safeLabel(lease)} could not be screened: ${errorMessage(err)}`, "malformed") };
  }
}

function safeLabel(lease: Lease): string {
  try {
    return peerLabel(lease);
  } catch {
    return "peer <unreadable>";
  }
}

function screen(lease: Lease, local: PeerScreenContext | undefined): { readonly peer: Peer } | { readonly status: PeerRefusal } {
  const skip = (reason: string, code: PeerSkipReason) => ({ status: skippedStatus(`${peerLabel(lease)} ${reason}`, code) });
  if (!local) return skip("arrived before registerSubnet; it is retried when the agent re-adds peers", "early");
  const problem = leaseAttrsProblem(lease.attrs);
  if (problem) return skip(`is malformed: ${problem}; fix or delete that lease`, "malformed");
  const type = lease.attrs.backendType;
  if (typeof type !== "string" || type.toLowerCase() !== local.backendType.toLowerCase()) {
    return skip(`uses backend ${describeValue(type)}, this node ${local.backendType}: every node must run the same Backend.Type`, "backend-type");
  }
  const shared = new Map<Family, IPNet>();
  for (const family of FAMILIES) {
    const own = local.subnets.get(family);
    const subnet = leaseSubnet(lease, family);
    if (!own || !subnet) continue;
    if (subnet.overlaps(own)) return skip(`claims ${subnet}, which overlaps this node's own subnet ${own}`, "overlap");
    shared.set(family, subnet);
  }
  if (shared.size === 0) {
    const ours = FAMILIES.filter((f) => local.subnets.has(f))
      .map((f) => FAMILY_NAME[f])
      .join(" and ");
    return skip(`has no subnet in an address family this node routes (${ours})`, "family");
  }
  for (const family of shared.keys()) {
    const ip = family === "v4" ? lease.attrs.publicIP : lease.attrs.publicIPv6;
    if (!ip) continue; // no PublicIP: Peer.endpoint says so when a backend asks for it
    const field = family === "v4" ? "PublicIP" : "PublicIPv6";
    const what = unusablePeerAddress(ip, family);
    if (what) return skip(`has ${field} ${ip}, ${what}: a peer's ${field} must be a unicast address of that node; fix its --public-ip or --iface`, "address");
    if (local.ownAddresses?.some((a) => a.equals(ip))) {
      return skip(
        `has ${field} ${ip}, which is this node's own address: it would be routed to this node itself (a stale or copied lease?); delete that lease or fix its node's --public-ip`,
        "own-address",
      );
    }
  }
  return { peer: Peer.screened(lease, shared) };
}
