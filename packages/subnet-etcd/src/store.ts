/**
 * The small key-value surface the manager needs from etcd v3. EtcdStore implements it with the etcd3 client;
 * MemoryStore implements it in memory (with TTLs on an injected clock, compaction and disconnects) for unit
 * tests. Every method throws WeftError: STORE_UNAVAILABLE (transient: retry with backoff) or a permanent
 * code (CONFIG_INVALID for rejected credentials).
 */

export interface StoredKV {
  readonly key: string;
  readonly value: string;
  readonly createRevision: bigint;
  readonly modRevision: bigint;
  /** etcd lease ID as a decimal string; "0" when the key has no lease (a reservation). */
  readonly lease: string;
}

export type StoreEvent =
  | { readonly type: "put"; readonly kv: StoredKV }
  | { readonly type: "delete"; readonly key: string; readonly modRevision: bigint };

export interface WatchHandlers {
  /** Events in revision order. Called only between `onConnected` and `onDisconnected`/`onCanceled`. */
  onEvents(events: readonly StoreEvent[]): void;
  /** The stream (re)started. */
  onConnected(): void;
  /** The stream broke; the store reconnects by itself and resumes after the last delivered event. */
  onDisconnected(error: unknown): void;
  /**
   * The store canceled the watch and will not resume it, most often because the resume revision has been
   * compacted away. The caller re-lists and starts a new watch.
   */
  onCanceled(error: unknown): void;
}

export interface StoreWatch {
  close(): Promise<void>;
}

/** Which version of a key a conditional write expects. */
export type KeyCondition = { readonly modRevision: bigint } | { readonly createRevision: bigint };

/** What a conditional put does with the key's etcd lease. */
export type LeaseChoice = { readonly lease: string } | "none" | "keep";

export interface SubnetStore {
  /** For logs; never contains credentials. */
  readonly label: string;
  get(key: string): Promise<{ kv?: StoredKV; revision: bigint }>;
  list(prefix: string): Promise<{ kvs: StoredKV[]; revision: bigint }>;
  grantLease(ttlSeconds: number): Promise<string>;
  revokeLease(id: string): Promise<void>;
  /** Puts iff the key does not exist (version 0). */
  create(key: string, value: string, lease: LeaseChoice): Promise<{ ok: boolean; revision: bigint }>;
  /** Puts iff the key exists and matches `cond`. */
  replace(key: string, value: string, cond: KeyCondition, lease: LeaseChoice): Promise<{ ok: boolean; revision: bigint }>;
  /** Deletes iff the key exists and matches `cond`. */
  deleteIf(key: string, cond: KeyCondition): Promise<boolean>;
  /** Watches `key` (or every key under it when `prefix`) from `fromRevision` on. */
  watch(key: string, prefix: boolean, fromRevision: bigint, handlers: WatchHandlers): StoreWatch;
  close(): Promise<void>;
}
