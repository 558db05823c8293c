/**
 * FakeSubnetManager: an in-memory cluster store with the SubnetManager contract (a snapshot, then
 * added/removed events about other nodes). The test agent takes its local lease from it and re-reads the
 * peer set from it on restart, as the real agent does from etcd or the Kubernetes API.
 */
import { IPNet, type Lease, type LeaseAttrs, type LeaseEvent, type NetworkConfig, type SubnetManager, WeftError, sameSubnets, subnetKey } from "@weft/core";

/** Which subnets the local node gets from a FakeSubnetManager. */
export interface LocalLeaseChoice {
  /** IPv4 subnet of this node, e.g. "198.19.1.0/24"; default: the network's SubnetMin. */
  readonly subnet?: string;
  /** IPv6 subnet of this node; default: the IPv6 network's SubnetMin. */
  readonly ipv6Subnet?: string;
  /** Kube node name of this node's lease; unset by default. */
  readonly nodeName?: string;
}

/**
 * An in-memory SubnetManager for tests: the local lease comes from `local`, the other nodes' leases are given
 * up front or added and removed with putPeer/removePeer, which emit `added`/`removed` events to watchers. Share
 * one between agents to model a cluster.
 */
export class FakeSubnetManager implements SubnetManager {
  readonly name = "fake";
  private readonly others = new Map<string, Lease>();
  private own?: Lease;
  private readonly listeners = new Set<(ev: LeaseEvent) => void>();

  constructor(
    private readonly config: NetworkConfig,
    private readonly local: LocalLeaseChoice = {},
    peers: readonly Lease[] = [],
  ) {
    for (const p of peers) this.others.set(subnetKey(p), p);
  }

  /** The other nodes' leases, in insertion order. */
  peers(): Lease[] {
    return [...this.others.values()];
  }

  /** This node's lease as last published (undefined before acquireLease). */
  localLease(): Lease | undefined {
    return this.own;
  }

  /** Adds or replaces another node's lease (an `added` event). */
  putPeer(lease: Lease): void {
    this.others.set(subnetKey(lease), lease);
    this.emit({ type: "added", lease });
  }

  /** Removes another node's lease (a `removed` event); unknown leases are ignored. */
  removePeer(lease: Lease): void {
    const key = subnetKey(lease);
    const had = this.others.get(key);
    if (!had) return;
    this.others.delete(key);
    this.emit({ type: "removed", lease: had });
  }

  async getNetworkConfig(): Promise<NetworkConfig> {
    return this.config;
  }

  async acquireLease(attrs: LeaseAttrs, _signal?: AbortSignal): Promise<Lease> {
    if (this.own) {
      // Re-acquiring returns the same subnet with the attributes this node published last (like etcd/kube).
      this.own = { ...this.own, attrs: { ...this.own.attrs, ...attrs } };
      return this.own;
    }
    const pick = (text: string | undefined, fam: "v4" | "v6"): IPNet | undefined => {
      const net = fam === "v4" ? this.config.v4 : this.config.v6;
      if (!net) return undefined;
      const subnet = text ? IPNet.parse(text, true) : IPNet.of(net.subnetMin, net.subnetLen);
      if (!net.network.contains(subnet)) throw new WeftError("CONFIG_INVALID", `FakeSubnetManager: local subnet ${subnet} is outside the network ${net.network}`);
      return subnet;
    };
    const subnet = pick(this.local.subnet, "v4");
    const ipv6Subnet = pick(this.local.ipv6Subnet, "v6");
    const lease: Lease = {
      ...(subnet ? { subnet } : {}),
      ...(ipv6Subnet ? { ipv6Subnet } : {}),
      attrs,
      ...(this.local.nodeName ? { nodeName: this.local.nodeName } : {}),
    };
    for (const p of this.others.values()) {
      if (sameSubnets(p, lease)) throw new WeftError("STORE_CONFLICT", `FakeSubnetManager: subnet ${subnetKey(lease)} is already leased by a peer`);
    }
    this.own = lease;
    return lease;
  }

  async updateLease(lease: Lease, attrs: LeaseAttrs, _signal?: AbortSignal): Promise<Lease> {
    this.own = { ...lease, attrs };
    return this.own;
  }

  async completeLease(_lease: Lease, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
  }

  async *watchLeases(_local: Lease, signal: AbortSignal): AsyncIterable<LeaseEvent> {
    const queue: LeaseEvent[] = [{ type: "snapshot", leases: this.peers() }];
    let wake: (() => void) | undefined;
    const listener = (ev: LeaseEvent) => {
      queue.push(ev);
      wake?.();
    };
    this.listeners.add(listener);
    const onAbort = () => wake?.();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      while (!signal.aborted) {
        const ev = queue.shift();
        if (ev) {
          yield ev;
          continue;
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      this.listeners.delete(listener);
      signal.removeEventListener("abort", onAbort);
    }
  }

  private emit(ev: LeaseEvent): void {
    for (const l of this.listeners) l(ev);
  }
}
