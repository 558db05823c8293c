/**
 * The built-in IPAM: host-local's allocation rules on host-local's directory layout, so a node can move between
 * weft-cni, Flannel + bridge + host-local, and back without losing or duplicating a reservation.
 *
 * ADD takes one address from each range set (round-robin from last_reserved_ip.<set index>, gateway skipped). A
 * container that already holds an address in a set (an ADD that was killed before it could roll back, retried)
 * gets that address again instead of a second one. DEL releases everything the (container id, ifname) holds.
 * GC releases every reservation whose (container id, ifname) is not among the runtime's valid attachments.
 */
import type { IPAddress } from "@weft/core";
import { CniError, CniErrorCode } from "../errors.js";
import type { LockOptions } from "./lock.js";
import { candidates, type IpRange, type RangeSet, rangeContains, rangeSetContains } from "./range.js";
import { type HostLocalStore, matches, type Reservation } from "./store.js";

export interface Allocation {
  readonly ip: IPAddress;
  /** The range the address came from (its subnet gives the prefix length, its gateway the pod's gateway). */
  readonly range: IpRange;
  readonly rangeSetIndex: number;
  /**
   * Reserved by this call. False when the container already held it (a repeated ADD): a rollback of this ADD
   * must not release it, since a live pod may be using it.
   */
  readonly fresh: boolean;
}

export interface Attachment {
  readonly containerID: string;
  readonly ifname: string;
}

export class HostLocalAllocator {
  constructor(
    readonly store: HostLocalStore,
    readonly rangeSets: readonly RangeSet[],
    private readonly lockOptions: LockOptions = {},
  ) {}

  async allocate(containerID: string, ifname: string): Promise<Allocation[]> {
    return this.store.locked(async () => {
      const mine = await this.store.byContainer(containerID, ifname);
      const out: Allocation[] = [];
      const fresh: IPAddress[] = [];
      try {
        for (let s = 0; s < this.rangeSets.length; s++) {
          const set = this.rangeSets[s]!;
          const held = mine.find((r) => rangeSetContains(set, r.ip));
          if (held) {
            out.push({ ip: held.ip, range: set.find((r) => rangeContains(r, held.ip))!, rangeSetIndex: s, fresh: false });
            continue;
          }
          const ip = await this.take(set, s, containerID, ifname);
          fresh.push(ip);
          out.push({ ip, range: set.find((r) => rangeContains(r, ip))!, rangeSetIndex: s, fresh: true });
        }
      } catch (err) {
        for (const ip of fresh) await this.store.remove(ip);
        throw err;
      }
      return out;
    }, this.lockOptions);
  }

  private async take(set: RangeSet, index: number, containerID: string, ifname: string): Promise<IPAddress> {
    const last = await this.store.lastReserved(index);
    for (const ip of candidates(set, last)) {
      if (await this.store.reserve(ip, containerID, ifname, index)) return ip;
    }
    const span = set.map((r) => `${r.rangeStart}-${r.rangeEnd}`).join(", ");
    throw new CniError(
      CniErrorCode.INTERNAL,
      `no IP addresses available in range set ${span}: every address is reserved in ${this.store.dir}; ` +
        `reservations of deleted pods are released by DEL or GC, or remove the files of containers that no longer exist`,
    );
  }

  /** Releases exactly these addresses (what one ADD reserved, for its rollback); returns those it removed. */
  async releaseAddresses(ips: readonly IPAddress[]): Promise<IPAddress[]> {
    if (ips.length === 0) return [];
    return this.store.locked(async () => {
      const released: IPAddress[] = [];
      for (const ip of ips) if (await this.store.remove(ip)) released.push(ip);
      return released;
    }, this.lockOptions);
  }

  /** Releases the container's addresses; returns them (empty when it held none). */
  async release(containerID: string, ifname: string): Promise<IPAddress[]> {
    return this.store.locked(async () => {
      const released: IPAddress[] = [];
      for (const r of await this.store.byContainer(containerID, ifname)) if (await this.store.remove(r.ip)) released.push(r.ip);
      return released;
    }, this.lockOptions);
  }

  /**
   * Releases every reservation in the network's directory that no valid attachment claims. A legacy reservation
   * (container id only) survives when any valid attachment has that container id.
   */
  async gc(valid: readonly Attachment[]): Promise<Reservation[]> {
    return this.store.locked(async () => {
      const removed: Reservation[] = [];
      for (const r of await this.store.list()) {
        if (valid.some((a) => matches(r, a.containerID, a.ifname))) continue;
        if (await this.store.remove(r.ip)) removed.push(r);
      }
      return removed;
    }, this.lockOptions);
  }
}
