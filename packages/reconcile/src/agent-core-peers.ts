/**
 * PeerSet: what the agent knows about other nodes, turned into backend calls. A store snapshot is a full set:
 * peers missing from it are removed, new or changed ones (re)added. Each lease is screened once (screenPeer of
 * @weft/core: registered, same Backend.Type, no overlap, a family in common) before the backend sees it; a
 * refused lease retracts whatever the peer had. A backend failure or a malformed peer is recorded against that
 * peer only; it never stops the others. A restarting peer keeps its datapath while it re-publishes its data.
 */
import {
  type Backend,
  type Lease,
  type LeaseEvent,
  type Logger,
  Peer,
  type PeerRefusal,
  type PeerStatus,
  encodeLeaseAttrs,
  errorMessage,
  subnetKey,
} from "@weft/core";

/** A peer's state as the agent reports it: the backend's PeerStatus, or `failed` when the backend threw. */
export type PeerState = PeerStatus | { readonly state: "failed"; readonly reason: string; readonly cause?: unknown };

interface Known {
  lease: Lease;
  fingerprint: string;
  status: PeerState;
}

/** Screens one lease: the Peer a backend may see, or the status it gets instead (core's screenPeer). */
export type PeerScreen = (lease: Lease) => { readonly peer: Peer } | { readonly status: PeerRefusal };

const fingerprint = (l: Lease) => `${subnetKey(l)} ${encodeLeaseAttrs(l.attrs)}`;

/**
 * The agent's peers: applies the store's lease events to the backend (screened first when a screen context is
 * given), logs each peer's state once per change (pending at info, anything else not programmed at warn), and
 * retries the peers whose backend call threw.
 */
export class PeerSet {
  private readonly known = new Map<string, Known>();
  /** True once a full snapshot was applied. */
  snapshotSeen = false;

  /**
   * `screen`: the screening every lease passes before the backend sees it (the agent core gives screenPeer
   * against this node's lease). Without it every lease goes to the backend unscreened, as a Peer with all of
   * its families.
   */
  constructor(
    private readonly backend: Backend,
    private readonly logger: Logger,
    private readonly screen?: PeerScreen,
  ) {}

  /**
   * Applies one store event; returns true when the backend was called (a datapath flush is due). `again`: also
   * describe peers whose lease did not change (the test kit's addPeer, which checks that a backend's addPeer is
   * idempotent); the restarting-peer policy applies all the same.
   */
  async apply(ev: LeaseEvent, options: { readonly again?: boolean } = {}): Promise<boolean> {
    const again = options.again ?? false;
    switch (ev.type) {
      case "snapshot": {
        const incoming = new Map(ev.leases.map((l) => [subnetKey(l), l]));
        let changed = false;
        for (const [key, k] of [...this.known]) if (!incoming.has(key)) changed = (await this.remove(k.lease)) || changed;
        for (const l of incoming.values()) changed = (await this.add(l, again)) || changed;
        this.snapshotSeen = true;
        return changed;
      }
      case "added":
        return this.add(ev.lease, again);
      case "removed":
        return this.remove(ev.lease);
    }
  }

  /** The state recorded for the peer with subnet key `key`, if known. */
  status(key: string): PeerState | undefined {
    return this.known.get(key)?.status;
  }

  private async add(lease: Lease, again = false): Promise<boolean> {
    const key = subnetKey(lease);
    const fp = fingerprint(lease);
    const prev = this.known.get(key);
    if (!again && prev && prev.fingerprint === fp && prev.status.state !== "failed") return false;
    // No data yet: absent (etcd) or JSON null (a kube annotation "null", as Flannel writes it too).
    const unpublished = lease.attrs.backendData == null && lease.attrs.backendV6Data == null;

    const hadData = prev !== undefined && (prev.lease.attrs.backendData != null || prev.lease.attrs.backendV6Data != null);
    if (unpublished && hadData && prev.status.state === "programmed" && prev.lease.attrs.backendType === lease.attrs.backendType) {
      // A restarting peer re-acquires its lease before it has re-published its backend data (it has to register
      // its devices first). Keep the datapath we have for it: tearing it down would drop its pods' traffic for
      // the few milliseconds until the data comes back, which is exactly what a restart must not do.
      this.logger.debug(`peer ${key} re-acquired its lease; keeping its datapath until it publishes its backend data`, { peer: key });
      return false;
    }
    let status: PeerState;
    try {
      status = await this.describe(lease);
    } catch (err) {
      status = { state: "failed", reason: errorMessage(err), cause: err };
    }
    if (status.state !== "programmed" && (!prev || prev.status.state !== status.state || prev.fingerprint !== fp)) {
      // Logged once per change of state, not on every resync: Flannel's endless log loop is what we avoid.
      // A peer that is still starting is normal, not a problem: info. Everything else is worth a warning, once.
      if (status.state === "pending") this.logger.info(`peer ${key} waiting: ${status.reason}`, { peer: key });
      else this.logger.warn(`peer ${key} not programmed: ${status.reason}`, { peer: key, state: status.state });
    }
    this.known.set(key, { lease, fingerprint: fp, status });
    return true;
  }

  /** Screens the lease and hands a Peer to the backend; a refused lease retracts what the peer had. */
  private async describe(lease: Lease): Promise<PeerStatus> {
    if (!this.screen) return this.backend.addPeer(Peer.of(lease));
    const screened = this.screen(lease);
    if ("peer" in screened) return this.backend.addPeer(screened.peer);
    // A lease that was fine and no longer is must not keep its old entries.
    await this.backend.removePeer(lease);
    return screened.status;
  }

  private async remove(lease: Lease): Promise<boolean> {
    const key = subnetKey(lease);
    const k = this.known.get(key);
    this.known.delete(key);
    try {
      await this.backend.removePeer(k?.lease ?? lease);
    } catch (err) {
      this.logger.error(`removing peer ${key} failed: ${errorMessage(err)}`, { peer: key });
    }
    return true;
  }

  /** Retries peers whose backend call threw (e.g. a transient failure). */
  async retryFailed(): Promise<boolean> {
    let any = false;
    for (const k of [...this.known.values()]) if (k.status.state === "failed") any = (await this.add(k.lease)) || any;
    return any;
  }

  /** How many peers are in each state (every state present, 0 when none). */
  counts(): Record<string, number> {
    const c: Record<string, number> = { programmed: 0, pending: 0, unreachable: 0, skipped: 0, failed: 0 };
    for (const k of this.known.values()) c[k.status.state] = (c[k.status.state] ?? 0) + 1;
    return c;
  }

  /** Every known peer with its PublicIP, state and reason, as /status shows them. */
  statuses(): { peer: string; publicIP?: string; state: string; reason?: string }[] {
    return [...this.known].map(([peer, k]) => ({
      peer,
      ...(k.lease.attrs.publicIP ? { publicIP: k.lease.attrs.publicIP.toString() } : {}),
      state: k.status.state,
      ...("reason" in k.status ? { reason: k.status.reason } : {}),
    }));
  }
}
