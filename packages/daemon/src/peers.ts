/**
 * PeerSet: what the agent knows about other nodes, turned into backend calls. A store snapshot is a full set:
 * peers missing from it are removed, new or changed ones (re)added. A backend failure or a malformed peer is
 * recorded against that peer only; it never stops the others.
 */
import { type Backend, type Lease, type Logger, type PeerStatus, encodeLeaseAttrs, errorMessage, subnetKey, type LeaseEvent } from "@weft/core";

export type PeerState = PeerStatus | { readonly state: "failed"; readonly reason: string };

interface Known {
  lease: Lease;
  fingerprint: string;
  status: PeerState;
}

const fingerprint = (l: Lease) => `${subnetKey(l)} ${encodeLeaseAttrs(l.attrs)}`;

export class PeerSet {
  private readonly known = new Map<string, Known>();
  snapshotSeen = false;

  constructor(
    private readonly backend: Backend,
    private readonly logger: Logger,
  ) {}

  /** Applies one store event; returns true when the backend was called (a datapath flush is due). */
  async apply(ev: LeaseEvent): Promise<boolean> {
    switch (ev.type) {
      case "snapshot": {
        const incoming = new Map(ev.leases.map((l) => [subnetKey(l), l]));
        let changed = false;
        for (const [key, k] of [...this.known]) if (!incoming.has(key)) changed = (await this.remove(k.lease)) || changed;
        for (const l of incoming.values()) changed = (await this.add(l)) || changed;
        this.snapshotSeen = true;
        return changed;
      }
      case "added":
        return this.add(ev.lease);
      case "removed":
        return this.remove(ev.lease);
    }
  }

  private async add(lease: Lease): Promise<boolean> {
    const key = subnetKey(lease);
    const fp = fingerprint(lease);
    const prev = this.known.get(key);
    if (prev && prev.fingerprint === fp && prev.status.state !== "failed") return false;
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
      status = await this.backend.addPeer(lease);
    } catch (err) {
      status = { state: "failed", reason: errorMessage(err) };
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

  counts(): Record<string, number> {
    const c: Record<string, number> = { programmed: 0, pending: 0, unreachable: 0, skipped: 0, failed: 0 };
    for (const k of this.known.values()) c[k.status.state] = (c[k.status.state] ?? 0) + 1;
    return c;
  }

  statuses(): { peer: string; publicIP?: string; state: string; reason?: string }[] {
    return [...this.known].map(([peer, k]) => ({
      peer,
      ...(k.lease.attrs.publicIP ? { publicIP: k.lease.attrs.publicIP.toString() } : {}),
      state: k.status.state,
      ...("reason" in k.status ? { reason: k.status.reason } : {}),
    }));
  }
}
