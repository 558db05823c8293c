/**
 * PeerSet: what the agent knows about other nodes, turned into backend calls. A store snapshot is a full set:
 * peers missing from it are removed, new or changed ones (re)added. Each lease is screened once (screenPeer of
 * @weft/core: registered, bounded data, same Backend.Type, no overlap with this node, a family in common, a
 * usable PublicIP that is not this node's) before the backend sees it; a refused lease retracts whatever the peer
 * had. A backend failure or a malformed peer is recorded against that peer only; it never stops the others. A
 * restarting peer keeps its datapath while it re-publishes its data.
 *
 * Conflicts between peers are settled here, deterministically and whatever the order leases arrive in: two
 * peers whose subnets overlap, or that claim the same backend identity (vxlan's VtepMAC: see
 * PeerIdentityClaims), cannot both be programmed. The winner is the more specific claim (the longer prefixes,
 * summed over the routed families), then the lower subnet key; the loser is skipped with one line (reason
 * `conflict`) and programmed again when the winner goes away. A lease the screen or the backend refuses never
 * takes part, so a well-formed lease never loses to a malformed one.
 */
import { createHash } from "node:crypto";
import {
  type Backend,
  type Family,
  type IPNet,
  type Lease,
  type LeaseEvent,
  type Logger,
  Peer,
  type PeerRefusal,
  type PeerSkipReason,
  type PeerStatus,
  encodeLeaseAttrs,
  errorMessage,
  leaseAttrsProblem,
  peerLabel,
  peerSkipReason,
  skippedStatus,
  subnetKey,
} from "@weft/core";

/**
 * A peer's state as the agent reports it: the backend's PeerStatus, or `failed` when the backend threw or the
 * kernel refused the peer's objects (`kernel`: the kernel's error code; such a peer is not retried by
 * retryFailed, the engine retries its objects every pass).
 */
export type PeerState = PeerStatus | { readonly state: "failed"; readonly reason: string; readonly cause?: unknown; readonly kernel?: string };

/**
 * Optional on a Backend: identities a peer claims that no two peers may share, as opaque strings (vxlan: its
 * VtepMAC per family; two peers with one MAC would make the FDB flip between them at every pass). Must not
 * throw; a peer whose data cannot be read claims nothing.
 */
export interface PeerIdentityClaims {
  /** The identities `peer` claims (e.g. `vtep-mac:<mac>`); two peers with one identity: the one PeerSet orders first keeps it. */
  peerIdentities(peer: Peer): readonly string[];
}

/** A kernel failure of one owner's objects, as the datapath engine attributes it (see DatapathEngine.failuresByOwner). */
export interface OwnerFailure {
  readonly kind: string;
  readonly key: string;
  readonly error: { readonly code?: string; readonly message: string };
}

/**
 * Kernel error codes that mean "the kernel will not take this object as described" (not "try again"): a peer
 * whose objects fail with one of them is reported failed in /status and does not hold readiness (see
 * PeerSet.retryableFailures).
 */
export const PERMANENT_KERNEL_CODES: ReadonlySet<string> = new Set(["KERNEL_INVALID", "KERNEL_UNSUPPORTED", "KERNEL_EXISTS"]);

interface Known {
  lease: Lease;
  fingerprint: string;
  status: PeerState;
  /** The screened peer when it takes part in conflicts (it passed the screen and the backend did not refuse it). */
  peer?: Peer;
  /** Its claims in the indexes: subnet strings and identity strings. */
  nets?: readonly IPNet[];
  idents?: readonly string[];
  /** Skipped because it lost a conflict: re-evaluated when a rival goes away. */
  conflict?: boolean;
}

/** Screens one lease: the Peer a backend may see, or the status it gets instead (core's screenPeer). */
export type PeerScreen = (lease: Lease) => { readonly peer: Peer } | { readonly status: PeerRefusal };

/** The change fingerprint of a lease; a lease whose data is too deep or large to walk gets a bounded one. */
function fingerprint(l: Lease): string {
  const key = subnetKey(l);
  const problem = leaseAttrsProblem(l.attrs);
  if (problem) return `${key} malformed: ${problem}`;
  try {
    const text = encodeLeaseAttrs(l.attrs);
    // Kept per peer for as long as the peer exists: a digest, not a copy of up to 64 KiB of someone's data.
    return `${key} ${text.length <= 256 ? text : createHash("sha256").update(text).digest("base64")}`;
  } catch (err) {
    return `${key} unreadable: ${errorMessage(err)}`;
  }
}

const netId = (family: Family, prefix: number, value: bigint) => `${family}/${prefix}/${value.toString(16)}`;
const truncate = (n: IPNet, prefix: number) => (n.ip.value >> BigInt(n.ip.bits - prefix)) << BigInt(n.ip.bits - prefix);

/** Sum of the peer's prefix lengths: the more specific claim wins a conflict. */
function specificity(p: Peer): number {
  let n = 0;
  for (const s of p.subnets.values()) n += s.prefix;
  return n;
}

/** True when `a` wins a conflict against `b`: the more specific claim, then the lower subnet key. */
function beats(a: Peer, b: Peer): boolean {
  const sa = specificity(a);
  const sb = specificity(b);
  if (sa !== sb) return sa > sb;
  return a.key < b.key;
}

const SKIP_REASONS: readonly PeerSkipReason[] = ["early", "malformed", "address", "own-address", "backend-type", "overlap", "family", "conflict", "other"];

/**
 * The agent's peers: applies the store's lease events to the backend (screened first when a screen context is
 * given), settles conflicts between peers, logs each peer's state once per change (pending at info, anything
 * else not programmed at warn), counts skips by reason, and retries the peers whose backend call threw.
 */
export class PeerSet {
  private readonly known = new Map<string, Known>();
  /** Exact subnets of peers taking part in conflicts, by `family/prefix/value`. */
  private readonly exactNets = new Map<string, Set<string>>();
  /** Every proper supernet of those subnets, by `family/prefix/value`: which peers lie inside a given net. */
  private readonly insideNets = new Map<string, Set<string>>();
  private readonly identities = new Map<string, Set<string>>();
  /** True once a full snapshot was applied. */
  snapshotSeen = false;
  /**
   * Peers skipped so far, by reason (see PeerSkipReason): counted once per change of a peer's state, like the
   * log line, never per resync. weftd exports it as weft_peer_skips_total{reason}.
   */
  readonly skips: Record<PeerSkipReason, number> = Object.fromEntries(SKIP_REASONS.map((r) => [r, 0])) as Record<PeerSkipReason, number>;
  private kernelView?: { source: unknown; failures: ReadonlyMap<string, OwnerFailure> };

  /**
   * `screen`: the screening every lease passes before the backend sees it (the agent core gives screenPeer
   * against this node's lease). Without it every lease goes to the backend unscreened, as a Peer with all of
   * its families. `kernelFailures`: the kernel failures of the last datapath pass by owner (the agent core
   * gives the engine's), so /status says which peer the kernel refused and why.
   */
  constructor(
    private readonly backend: Backend,
    private readonly logger: Logger,
    private readonly screen?: PeerScreen,
    private readonly kernelFailures?: () => { readonly source: unknown; readonly failures: () => ReadonlyMap<string, OwnerFailure> },
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
        for (const l of incoming.values()) changed = (await this.safeAdd(l, again)) || changed;
        this.snapshotSeen = true;
        return changed;
      }
      case "added":
        return this.safeAdd(ev.lease, again);
      case "removed":
        return this.remove(ev.lease);
    }
  }

  /** The state recorded for the peer with subnet key `key`, if known (a kernel refusal shows as failed). */
  status(key: string): PeerState | undefined {
    const k = this.known.get(key);
    return k ? this.effective(key, k) : undefined;
  }

  /**
   * add, but a lease that makes anything throw is recorded as failed against its own key: one lease never stops
   * the others (a stack overflow in one once made the watch re-list every 100 ms and starve every later peer).
   */
  private async safeAdd(lease: Lease, again: boolean): Promise<boolean> {
    try {
      return await this.add(lease, again);
    } catch (err) {
      let key: string;
      try {
        key = subnetKey(lease);
      } catch {
        return false;
      }
      const prev = this.known.get(key);
      const entry: Known = { lease, fingerprint: `${key} unreadable`, status: { state: "failed", reason: `peer ${key} could not be handled: ${errorMessage(err)}`, cause: err } };
      this.note(key, entry, prev, entry.fingerprint);
      this.known.set(key, entry);
      return false;
    }
  }

  /** `cascade`: look again at the conflict losers this peer kept out (off when re-looking at a loser itself). */
  private async add(lease: Lease, again = false, cascade = true): Promise<boolean> {
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
    // Whatever it claimed before is released; rivals it kept out are looked at again below.
    const freed = prev ? this.unclaim(key, prev) : [];
    const entry: Known = { lease, fingerprint: fp, status: { state: "pending", reason: "" } };
    let demote: Known[] = [];
    try {
      const screened = this.screen ? this.screen(lease) : { peer: Peer.of(lease) };
      if ("peer" in screened) {
        const peer = screened.peer;
        const idents = this.identitiesOf(peer);
        const rivals = this.rivals(key, peer, idents);
        const winner = rivals.find((r) => beats(r.known.peer!, peer));
        if (winner) {
          await this.backend.removePeer(lease);
          entry.status = skippedStatus(`${peer.label} ${winner.what} ${winner.known.peer!.label}, which wins (the more specific subnet, then the lower key): fix or delete one of the two leases`, "conflict");
          entry.conflict = true;
        } else {
          entry.status = await this.backend.addPeer(peer);
          demote = rivals.filter((r) => !r.known.conflict).map((r) => r.known);
        }
        if (entry.status.state !== "skipped" || entry.conflict) {
          entry.peer = peer;
          this.claim(key, entry, peer, idents);
        }
      } else {
        // A lease that was fine and no longer is must not keep its old entries.
        await this.backend.removePeer(lease);
        entry.status = screened.status;
      }
    } catch (err) {
      entry.status = { state: "failed", reason: errorMessage(err), cause: err };
    }
    this.note(key, entry, prev, fp);
    this.known.set(key, entry);
    for (const loser of demote) await this.demote(loser, entry);
    if (cascade) for (const rival of freed) if (rival !== key) await this.reconsider(rival);
    return true;
  }

  /** Logs a peer's state once per change of state or lease, and counts a skip by its reason. */
  private note(key: string, entry: Known, prev: Known | undefined, fp: string): void {
    const status = entry.status;
    if (status.state !== "programmed" && (!prev || prev.status.state !== status.state || prev.fingerprint !== fp || prev.conflict !== entry.conflict)) {
      // Logged once per change of state, not on every resync: Flannel's endless log loop is what we avoid.
      // A peer that is still starting is normal, not a problem: info. Everything else is worth a warning, once.
      if (status.state === "pending") this.logger.info(`peer ${key} waiting: ${status.reason}`, { peer: key });
      else this.logger.warn(`peer ${key} not programmed: ${status.reason}`, { peer: key, state: status.state });
      if (status.state === "skipped") this.skips[peerSkipReason(status)]++;
    }
  }

  /** The loser of a conflict with `winner`, which arrived later: its objects retracted, skipped with one line. */
  private async demote(loser: Known, winner: Known): Promise<void> {
    const key = subnetKey(loser.lease);
    if (this.known.get(key) !== loser) return;
    try {
      await this.backend.removePeer(loser.lease);
    } catch (err) {
      this.logger.error(`removing peer ${key} failed: ${errorMessage(err)}`, { peer: key });
    }
    const what = winner.nets && loser.nets && winner.nets.some((a) => loser.nets!.some((b) => a.overlaps(b))) ? "overlaps" : "shares a backend identity with";
    const next: Known = { ...loser, status: skippedStatus(`${loser.peer!.label} ${what} ${winner.peer!.label}, which wins (the more specific subnet, then the lower key): fix or delete one of the two leases`, "conflict"), conflict: true };
    this.note(key, next, loser, loser.fingerprint);
    this.known.set(key, next);
  }

  /** A peer that lost a conflict, looked at again because a rival went away or changed. */
  private async reconsider(key: string): Promise<void> {
    const k = this.known.get(key);
    if (k?.conflict) await this.add(k.lease, true, false);
  }

  /** The backend's identity claims for `peer` (none when the backend has none, or they cannot be read). */
  private identitiesOf(peer: Peer): readonly string[] {
    const claims = (this.backend as Partial<PeerIdentityClaims>).peerIdentities;
    if (typeof claims !== "function") return [];
    try {
      return claims.call(this.backend, peer);
    } catch {
      return [];
    }
  }

  /** Peers (taking part in conflicts) whose subnets overlap `peer`'s or that share one of `idents`. */
  private rivals(key: string, peer: Peer, idents: readonly string[]): { known: Known; what: string }[] {
    const out = new Map<string, string>();
    for (const [family, net] of peer.subnets) {
      for (let q = 0; q <= net.prefix; q++) for (const k of this.exactNets.get(netId(family, q, truncate(net, q))) ?? []) out.set(k, "overlaps");
      for (const k of this.insideNets.get(netId(family, net.prefix, net.ip.value)) ?? []) out.set(k, "overlaps");
    }
    for (const id of idents) for (const k of this.identities.get(id) ?? []) if (!out.has(k)) out.set(k, "shares a backend identity with");
    out.delete(key);
    const rivals: { known: Known; what: string }[] = [];
    for (const [k, what] of out) {
      const known = this.known.get(k);
      if (known?.peer) rivals.push({ known, what });
    }
    return rivals;
  }

  private claim(key: string, entry: Known, peer: Peer, idents: readonly string[]): void {
    const nets = [...peer.subnets.values()];
    entry.nets = nets;
    entry.idents = idents;
    const add = (m: Map<string, Set<string>>, id: string) => {
      let s = m.get(id);
      if (!s) m.set(id, (s = new Set()));
      s.add(key);
    };
    for (const n of nets) {
      add(this.exactNets, netId(n.family, n.prefix, n.ip.value));
      for (let q = 0; q < n.prefix; q++) add(this.insideNets, netId(n.family, q, truncate(n, q)));
    }
    for (const id of idents) add(this.identities, id);
  }

  /** Releases a peer's claims; returns the keys of conflict losers that may now win. */
  private unclaim(key: string, k: Known): string[] {
    if (!k.peer) return [];
    const rivals = this.rivals(key, k.peer, k.idents ?? [])
      .filter((r) => r.known.conflict)
      .map((r) => subnetKey(r.known.lease));
    const del = (m: Map<string, Set<string>>, id: string) => {
      const s = m.get(id);
      if (!s) return;
      s.delete(key);
      if (s.size === 0) m.delete(id);
    };
    for (const n of k.nets ?? []) {
      del(this.exactNets, netId(n.family, n.prefix, n.ip.value));
      for (let q = 0; q < n.prefix; q++) del(this.insideNets, netId(n.family, q, truncate(n, q)));
    }
    for (const id of k.idents ?? []) del(this.identities, id);
    k.peer = undefined;
    return rivals;
  }

  private async remove(lease: Lease): Promise<boolean> {
    const key = subnetKey(lease);
    const k = this.known.get(key);
    const freed = k ? this.unclaim(key, k) : [];
    this.known.delete(key);
    try {
      await this.backend.removePeer(k?.lease ?? lease);
    } catch (err) {
      this.logger.error(`removing peer ${key} failed: ${errorMessage(err)}`, { peer: key });
    }
    for (const rival of freed) await this.reconsider(rival);
    return true;
  }

  /** Retries peers whose backend call threw (e.g. a transient failure). */
  async retryFailed(): Promise<boolean> {
    let any = false;
    for (const k of [...this.known.values()]) if (k.status.state === "failed") any = (await this.add(k.lease)) || any;
    return any;
  }

  /** The kernel failures of the last pass by owner, computed once per pass. */
  private kernelRefusals(): ReadonlyMap<string, OwnerFailure> {
    const view = this.kernelFailures?.();
    if (!view) return new Map();
    let cached = this.kernelView;
    if (cached?.source !== view.source || !cached) cached = this.kernelView = { source: view.source, failures: view.failures() };
    return cached.failures;
  }

  /** A programmed peer whose objects the kernel refused in the last pass is failed, with the kernel's line. */
  private effective(key: string, k: Known, refusals = this.kernelRefusals()): PeerState {
    if (k.status.state !== "programmed") return k.status;
    const f = refusals.get(key);
    if (!f) return k.status;
    return { state: "failed", reason: `${peerLabel(k.lease)}: the kernel refused ${f.kind} ${f.key}: ${f.error.message}`, kernel: f.error.code ?? "unknown" };
  }

  /** How many peers are in each state (every state present, 0 when none). */
  counts(): Record<string, number> {
    const c: Record<string, number> = { programmed: 0, pending: 0, unreachable: 0, skipped: 0, failed: 0 };
    const refusals = this.kernelRefusals();
    for (const [key, k] of this.known) {
      const s = this.effective(key, k, refusals).state;
      c[s] = (c[s] ?? 0) + 1;
    }
    return c;
  }

  /**
   * Failed peers that hold readiness: those whose backend call threw (retried every resync) or whose objects
   * failed with a kernel error that may clear by itself. A peer whose objects the kernel refuses outright
   * (PERMANENT_KERNEL_CODES, e.g. host-gw's "Nexthop has invalid gateway") is reported failed in /status and
   * weft_peers{state="failed"} but does not hold readiness: one unprogrammable peer must not keep the node out
   * of service, and nothing this node does can program it until its lease or the network changes.
   */
  retryableFailures(): number {
    let n = 0;
    const refusals = this.kernelRefusals();
    for (const [key, k] of this.known) {
      const s = this.effective(key, k, refusals);
      if (s.state === "failed" && !(s.kernel !== undefined && PERMANENT_KERNEL_CODES.has(s.kernel))) n++;
    }
    return n;
  }

  /** Every known peer with its PublicIP, state and reason, as /status shows them. */
  statuses(): { peer: string; publicIP?: string; state: string; reason?: string }[] {
    const refusals = this.kernelRefusals();
    return [...this.known].map(([peer, k]) => {
      const s = this.effective(peer, k, refusals);
      return {
        peer,
        ...(k.lease.attrs.publicIP ? { publicIP: k.lease.attrs.publicIP.toString() } : {}),
        state: s.state,
        ...("reason" in s ? { reason: s.reason } : {}),
      };
    });
  }
}
