/**
 * The SubnetManager contract (DESIGN §5): the cluster store, the only channel between nodes. Implemented by
 * packages/subnet-etcd and packages/subnet-kube; both deliver the same stream: a snapshot, then added/removed
 * events about other nodes.
 */
import type { Lease, LeaseAttrs, LeaseEvent } from "./lease.js";
import type { NetworkConfig } from "./network-config.js";

/**
 * The cluster store (etcd or the Kubernetes API): network config, this node's lease, and the stream of other
 * nodes' leases. The agent uses it; a backend never does.
 */
export interface SubnetManager {
  /** For logs: `etcd http://...` or `kube node n1`. */
  readonly name: string;
  /** Reads and validates the network config, retrying (with a clear log line) while it is missing. */
  getNetworkConfig(signal: AbortSignal): Promise<NetworkConfig>;
  /** Claims (or re-claims) this node's subnet and publishes `attrs`. */
  acquireLease(attrs: LeaseAttrs, signal: AbortSignal): Promise<Lease>;
  /** Re-publishes this node's attributes (e.g. backend data known only after registerSubnet). */
  updateLease(lease: Lease, attrs: LeaseAttrs, signal: AbortSignal): Promise<Lease>;
  /**
   * Keeps the lease alive until `signal` aborts (etcd: renew before expiry; kube: watch the node). The agent
   * starts it right after registering the subnet. Rejects with WeftError LEASE_LOST when the lease
   * disappears, so the agent stops cleanly.
   */
  completeLease(lease: Lease, signal: AbortSignal): Promise<void>;
  /**
   * Tells the cluster this node's network works (kube: the node condition NetworkUnavailable=False). The
   * agent calls it once, when the datapath is first programmed for every known peer, or after a grace period
   * with a warning. Optional: etcd has nothing to announce.
   */
  markReady?(lease: Lease, signal: AbortSignal): Promise<void>;
  /** Snapshot first, then events; never about the local lease. Ends when `signal` aborts. */
  watchLeases(local: Lease, signal: AbortSignal): AsyncIterable<LeaseEvent>;
  /** When this node's lease expires unless renewed, as of the last renewal; null when it never expires. */
  leaseExpiration?(): Date | null | undefined;
  /**
   * The backend types whose modules declare `dualStack` (BackendModule). The agent calls it once, before
   * getNetworkConfig; a store that decides per backend type whether IPv6 runs (kube) uses it. Optional.
   */
  setIPv6BackendTypes?(types: readonly string[]): void;
  /** Releases connections; the lease itself stays (it is renewed by the next agent or expires). */
  close?(): Promise<void>;
}
