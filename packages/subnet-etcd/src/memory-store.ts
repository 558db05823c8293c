/**
 * An in-memory SubnetStore with etcd's semantics where the manager depends on them: one global revision,
 * create/mod revisions per key, leases with TTLs on an injected clock (a key goes with its lease), watches
 * that replay history from a revision, compaction (a watch that must resume from a compacted revision is
 * canceled), and a switch that makes the store unreachable (every call fails with STORE_UNAVAILABLE and every
 * watch is disconnected until it is switched back; then watches resume from where they were).
 *
 * For unit tests of the manager and of code built on it. Expiry happens when `expire()` is called (tests do
 * so after moving their fake clock) and at the start of every call.
 */
import { type Clock, WeftError, systemClock } from "@weft/core";
import type { KeyCondition, LeaseChoice, StoreEvent, StoredKV, StoreWatch, SubnetStore, WatchHandlers } from "./store.js";

interface MemLease {
  readonly ttlMs: number;
  expiresAt: number;
  readonly keys: Set<string>;
}

interface MemWatch {
  readonly key: string;
  readonly prefix: boolean;
  next: bigint;
  readonly handlers: WatchHandlers;
  closed: boolean;
  connected: boolean;
}

export class MemoryStore implements SubnetStore {
  readonly label = "memory-etcd";
  private rev = 1n;
  private compacted = 0n;
  private leaseSeq = 0x1000n;
  private available = true;
  private readonly kvs = new Map<string, StoredKV>();
  private readonly leases = new Map<string, MemLease>();
  private readonly history: Array<{ rev: bigint; ev: StoreEvent }> = [];
  private readonly watches = new Set<MemWatch>();

  constructor(private readonly clock: Clock = systemClock) {}

  /** The current revision (of the last write). */
  get revision(): bigint {
    return this.rev;
  }

  /** Keys and values, for assertions. */
  snapshot(prefix = ""): Map<string, StoredKV> {
    this.expire();
    return new Map([...this.kvs].filter(([k]) => k.startsWith(prefix)));
  }

  /** Deletes the keys of every lease whose TTL has passed on the clock. */
  expire(): void {
    const now = this.clock.now();
    for (const [id, l] of [...this.leases]) {
      if (l.expiresAt > now) continue;
      this.leases.delete(id);
      const events: StoreEvent[] = [];
      for (const k of l.keys) {
        if (!this.kvs.has(k)) continue;
        this.kvs.delete(k);
        this.rev++;
        events.push({ type: "delete", key: k, modRevision: this.rev });
      }
      this.publish(events);
    }
  }

  /** Makes every call fail and disconnects every watch (false), or brings the store back (true). */
  setAvailable(up: boolean): void {
    if (this.available === up) return;
    this.available = up;
    for (const w of this.watches) {
      if (up) this.resume(w);
      else if (w.connected) {
        w.connected = false;
        queueMicrotask(() => w.closed || w.handlers.onDisconnected(new Error("memory store unavailable")));
      }
    }
  }

  /** Forgets history up to `revision` (default: now), as `etcdctl compact`. */
  compact(revision: bigint = this.rev): void {
    this.compacted = revision;
    while (this.history.length > 0 && this.history[0]!.rev <= revision) this.history.shift();
  }

  /** Writes outside any lease or condition, as an operator with etcdctl would (`ttlSeconds` attaches a lease). */
  put(key: string, value: string, ttlSeconds?: number): StoredKV {
    this.expire();
    const lease = ttlSeconds === undefined ? "0" : this.grantNow(ttlSeconds);
    return this.write(key, value, lease === "0" ? "none" : { lease });
  }

  delete(key: string): boolean {
    this.expire();
    return this.remove(key);
  }

  private check(op: string): void {
    if (!this.available) throw new WeftError("STORE_UNAVAILABLE", `${this.label}: ${op} failed: unavailable`);
    this.expire();
  }

  private grantNow(ttlSeconds: number): string {
    const id = (this.leaseSeq++).toString();
    this.leases.set(id, { ttlMs: ttlSeconds * 1000, expiresAt: this.clock.now() + ttlSeconds * 1000, keys: new Set() });
    return id;
  }

  private write(key: string, value: string, lease: LeaseChoice): StoredKV {
    const prev = this.kvs.get(key);
    let leaseId: string;
    if (lease === "keep") leaseId = prev?.lease ?? "0";
    else if (lease === "none") leaseId = "0";
    else {
      if (!this.leases.has(lease.lease)) throw new WeftError("STORE_CONFLICT", `${this.label}: lease ${lease.lease} not found`);
      leaseId = lease.lease;
    }
    if (prev && prev.lease !== "0") this.leases.get(prev.lease)?.keys.delete(key);
    if (leaseId !== "0") this.leases.get(leaseId)!.keys.add(key);
    this.rev++;
    const kv: StoredKV = { key, value, createRevision: prev?.createRevision ?? this.rev, modRevision: this.rev, lease: leaseId };
    this.kvs.set(key, kv);
    this.publish([{ type: "put", kv }]);
    return kv;
  }

  private remove(key: string): boolean {
    const prev = this.kvs.get(key);
    if (!prev) return false;
    if (prev.lease !== "0") this.leases.get(prev.lease)?.keys.delete(key);
    this.kvs.delete(key);
    this.rev++;
    this.publish([{ type: "delete", key, modRevision: this.rev }]);
    return true;
  }

  private matches(key: string, cond: KeyCondition): boolean {
    const kv = this.kvs.get(key);
    if (!kv) return false;
    return "modRevision" in cond ? kv.modRevision === cond.modRevision : kv.createRevision === cond.createRevision;
  }

  private publish(events: StoreEvent[]): void {
    for (const ev of events) this.history.push({ rev: ev.type === "put" ? ev.kv.modRevision : ev.modRevision, ev });
    for (const w of this.watches) if (w.connected) this.deliver(w);
  }

  private selects(w: MemWatch, key: string): boolean {
    return w.prefix ? key.startsWith(w.key) : key === w.key;
  }

  /** Sends `w` everything from its `next` revision on, asynchronously (as a network would). */
  private deliver(w: MemWatch): void {
    const evs = this.history.filter((h) => h.rev >= w.next && this.selects(w, h.ev.type === "put" ? h.ev.kv.key : h.ev.key));
    if (evs.length === 0) return;
    w.next = evs[evs.length - 1]!.rev + 1n;
    const events = evs.map((h) => h.ev);
    queueMicrotask(() => {
      if (!w.closed) w.handlers.onEvents(events);
    });
  }

  private resume(w: MemWatch): void {
    if (w.closed) return;
    if (w.next <= this.compacted) {
      w.closed = true;
      this.watches.delete(w);
      queueMicrotask(() => {
        w.handlers.onConnected();
        w.handlers.onCanceled(new Error(`required revision ${w.next} has been compacted (compact revision ${this.compacted})`));
      });
      return;
    }
    w.connected = true;
    queueMicrotask(() => w.closed || w.handlers.onConnected());
    this.deliver(w);
  }

  async get(key: string): Promise<{ kv?: StoredKV; revision: bigint }> {
    this.check(`get ${key}`);
    const kv = this.kvs.get(key);
    return { ...(kv ? { kv } : {}), revision: this.rev };
  }

  async list(prefix: string): Promise<{ kvs: StoredKV[]; revision: bigint }> {
    this.check(`list ${prefix}`);
    const kvs = [...this.kvs.values()].filter((kv) => kv.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : 1));
    return { kvs, revision: this.rev };
  }

  async grantLease(ttlSeconds: number): Promise<string> {
    this.check("lease grant");
    return this.grantNow(ttlSeconds);
  }

  async revokeLease(id: string): Promise<void> {
    this.check(`lease revoke ${id}`);
    const l = this.leases.get(id);
    if (!l) return;
    this.leases.delete(id);
    for (const k of [...l.keys]) this.remove(k);
  }

  async create(key: string, value: string, lease: LeaseChoice): Promise<{ ok: boolean; revision: bigint }> {
    this.check(`create ${key}`);
    if (this.kvs.has(key)) return { ok: false, revision: this.rev };
    this.write(key, value, lease === "keep" ? "none" : lease);
    return { ok: true, revision: this.rev };
  }

  async replace(key: string, value: string, cond: KeyCondition, lease: LeaseChoice): Promise<{ ok: boolean; revision: bigint }> {
    this.check(`update ${key}`);
    if (!this.matches(key, cond)) return { ok: false, revision: this.rev };
    this.write(key, value, lease);
    return { ok: true, revision: this.rev };
  }

  async deleteIf(key: string, cond: KeyCondition): Promise<boolean> {
    this.check(`delete ${key}`);
    if (!this.matches(key, cond)) return false;
    return this.remove(key);
  }

  watch(key: string, prefix: boolean, fromRevision: bigint, handlers: WatchHandlers): StoreWatch {
    const w: MemWatch = { key, prefix, next: fromRevision, handlers, closed: false, connected: false };
    this.watches.add(w);
    if (this.available) this.resume(w);
    return {
      close: async () => {
        w.closed = true;
        this.watches.delete(w);
      },
    };
  }

  async close(): Promise<void> {
    for (const w of this.watches) w.closed = true;
    this.watches.clear();
  }
}
