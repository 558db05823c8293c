/**
 * PeerDeclarations: the bookkeeping every backend that describes peers as kernel objects needs, in one place.
 * A backend works out, per peer lease, either the objects to declare or a status saying why not; this class
 * declares them under the peer's owner key (its subnet key) or retracts what the peer had, remembers which
 * owners it declared, and retracts them all on teardown. What it never does: log (the agent logs each peer's
 * state once per change) or flush (the agent flushes after each batch of events).
 */
import type { Datapath, PeerStatus } from "./backend.js";
import type { KernelObjects } from "./kernel-objects.js";
import { type Lease, subnetKey } from "./lease.js";

/** What a backend made of one peer lease: objects to declare, or why there are none. */
export type PeerDescription = { readonly objects: KernelObjects } | { readonly status: Exclude<PeerStatus, { state: "programmed" }> };

/**
 * Declares each peer's kernel objects under its owner key (the subnet key) or retracts them, remembers which
 * owners it declared, and retracts them all on teardown. Never logs and never flushes.
 */
export class PeerDeclarations {
  private readonly owners = new Set<string>();

  constructor(private readonly datapath: Datapath) {}

  /**
   * Declares the peer's objects (replacing what it had) and returns `programmed`, or retracts what it had and
   * returns the reason: a lease that was fine and no longer is must not keep its old entries.
   */
  apply(peer: Lease, described: PeerDescription): PeerStatus {
    const owner = subnetKey(peer);
    if ("objects" in described) {
      this.datapath.declare(owner, described.objects);
      this.owners.add(owner);
      return { state: "programmed" };
    }
    this.datapath.retract(owner);
    this.owners.delete(owner);
    return described.status;
  }

  /** Forgets a peer; unknown peers are fine. */
  remove(peer: Lease): void {
    const owner = subnetKey(peer);
    this.datapath.retract(owner);
    this.owners.delete(owner);
  }

  /** Retracts every peer declared through this object (teardown). */
  clear(): void {
    for (const owner of this.owners) this.datapath.retract(owner);
    this.owners.clear();
  }

  /** How many peers currently have objects declared. */
  get size(): number {
    return this.owners.size;
  }
}
