/**
 * The peer preamble, written once. Before a backend sees a peer lease the agent screens it (screenPeer): a peer
 * that arrived before registerSubnet, runs another Backend.Type, claims a subnet overlapping this node's own, or
 * shares no address family with this node is refused with a status, and the backend is never called for it.
 * What passes is a Peer: the lease plus, per family this node routes, the peer's subnet, and on request its
 * PublicIP and backend data parsed with the backend's own schema — or the status saying why not (no PublicIP:
 * skipped; no data yet, absent or JSON null: pending; malformed data: skipped). A backend's addPeer then only
 * parses what it needs and describes kernel objects.
 */
import { errorMessage } from "./errors.js";
import type { Family, IPAddress, IPNet } from "./ip.js";
import { type JsonValue, type Lease, leaseSubnet, subnetKey } from "./lease.js";

/** A PeerStatus other than programmed: why a peer is not (yet) programmed. */
export type PeerRefusal =
  /** The backend cannot reach this peer by design (e.g. host-gw across L2 segments); says why and what to do. */
  | { readonly state: "unreachable"; readonly reason: string }
  /**
   * The peer has not published what this backend needs yet (its agent is starting: its lease exists before its
   * backend data). Programmed when the data arrives; the agent logs it at info, never as a problem.
   */
  | { readonly state: "pending"; readonly reason: string }
  /** The peer's lease is unusable (malformed data, another backend type); skipped, other peers are unaffected. */
  | { readonly state: "skipped"; readonly reason: string };

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
      return { status: { state: "skipped", reason: errorMessage(err) } };
    }
  }

  /** A skipped status whose reason starts with the peer's label: `peer node-2 (198.19.2.0-24) <reason>`. */
  skipped(reason: string): { readonly status: PeerRefusal } {
    return { status: { state: "skipped", reason: `${this.label} ${reason}` } };
  }
}

/** `peer node-2 (198.19.2.0-24)`, or `peer 198.19.2.0-24` when the store knows no node name. */
export function peerLabel(lease: Lease): string {
  const key = subnetKey(lease);
  return `peer ${lease.nodeName ? `${lease.nodeName} (${key})` : key}`;
}

/**
 * The agent's screening of one peer lease, done once before a backend sees it. `local` undefined means this
 * node has not registered yet. Refusals (all `skipped`, with a reason naming the peer and the fix):
 * arrived before registerSubnet, another Backend.Type, a subnet overlapping this node's own, no address family
 * in common. Otherwise the Peer, whose `subnets` are the families both nodes route.
 */
export function screenPeer(lease: Lease, local: PeerScreenContext | undefined): { readonly peer: Peer } | { readonly status: PeerRefusal } {
  const skip = (reason: string) => ({ status: { state: "skipped" as const, reason: `${peerLabel(lease)} ${reason}` } });
  if (!local) return skip("arrived before registerSubnet; it is retried when the agent re-adds peers");
  const type = lease.attrs.backendType;
  if (type.toLowerCase() !== local.backendType.toLowerCase()) {
    return skip(`uses backend ${JSON.stringify(type)}, this node ${local.backendType}: every node must run the same Backend.Type`);
  }
  const shared = new Map<Family, IPNet>();
  for (const family of FAMILIES) {
    const own = local.subnets.get(family);
    const subnet = leaseSubnet(lease, family);
    if (!own || !subnet) continue;
    if (subnet.overlaps(own)) return skip(`claims ${subnet}, which overlaps this node's own subnet ${own}`);
    shared.set(family, subnet);
  }
  if (shared.size === 0) {
    const ours = FAMILIES.filter((f) => local.subnets.has(f))
      .map((f) => FAMILY_NAME[f])
      .join(" and ");
    return skip(`has no subnet in an address family this node routes (${ours})`);
  }
  return { peer: Peer.screened(lease, shared) };
}
