/**
 * EtcdSubnetManager: the SubnetManager on etcd v3, in Flannel's key layout (reference/flannel.md §4.2) so a
 * Weft cluster and a Flannel cluster can share one prefix.
 *
 *   <prefix>/config                         net-conf JSON (parsed with core's parseNetworkConfig)
 *   <prefix>/subnets/198.19.3.0-24          LeaseAttrs JSON, attached to an etcd lease with a TTL
 *   <prefix>/subnets/198.19.3.0-24&2001:2:0:3::-64   the dual-stack form
 *
 * Where it departs from Flannel, on purpose:
 * - a lost compare-and-swap race is retried (Flannel's retry never fires, so its daemon exits);
 * - reservations (keys without a lease) are never deleted and never get a TTL attached;
 * - the own-key watch and the renewal loop both report LEASE_LOST, so the agent stops cleanly;
 * - after a compaction the watch re-lists and emits the difference as added/removed events. A `snapshot`
 *   event therefore only ever comes first; the consumer can treat every snapshot as "the full set".
 */
import {
  Backoff,
  type Clock,
  ConfigError,
  type IPNet,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type Logger,
  type NetworkConfig,
  SerialQueue,
  type SubnetManager,
  WeftError,
  encodeLeaseAttrs,
  errorMessage,
  parseNetworkConfig,
  sameSubnets,
  subnetKey,
  systemClock,
} from "@weft/core";
import { allocateSubnet } from "./allocate.js";
import { type EtcdTlsOptions, EtcdStore, redactEndpoint } from "./etcd-store.js";
import { type ListedLease, decodePeer, showKey, toExisting } from "./peers.js";
import type { StoreEvent, StoredKV, StoreWatch, SubnetStore } from "./store.js";

export const DEFAULT_ETCD_PREFIX = "/weft.io/network";
/** Flannel's prefix, for clusters that share a store with Flannel. */
export const FLANNEL_ETCD_PREFIX = "/coreos.com/network";
export const DEFAULT_ETCD_ENDPOINTS: readonly string[] = ["http://127.0.0.1:2379"];

export interface EtcdSubnetManagerOptions {
  /** etcd client URLs (`http://`, `https://` or `unix:///path`). Default `http://127.0.0.1:2379`. */
  readonly endpoints?: readonly string[];
  /** Key prefix; default `/weft.io/network`. Use `/coreos.com/network` to share Flannel's store. */
  readonly prefix?: string;
  /** TLS: client cert + key (both or neither) and an optional CA file. */
  readonly tls?: EtcdTlsOptions;
  readonly username?: string;
  /** Never logged. */
  readonly password?: string;
  /** TTL of a subnet lease in seconds. Default 86400 (24 h), as Flannel. */
  readonly leaseTtlSeconds?: number;
  /**
   * Renew this long before expiry, in seconds; must be below the TTL. Default 3600 (Flannel's
   * --subnet-lease-renew-margin), or half the TTL when the TTL is 2 h or less.
   */
  readonly renewMarginSeconds?: number;
  /** FLANNEL_SUBNET of the previous run (network address), tried before a random pick. */
  readonly previousSubnet?: IPNet;
  /** FLANNEL_IPV6_SUBNET of the previous run. */
  readonly previousIPv6Subnet?: IPNet;
  /** How many lost compare-and-swap races acquireLease retries before giving up. Default 30. */
  readonly raceRetries?: number;
  /** Deadline of each etcd request. Default 5000 ms. */
  readonly requestTimeoutMs?: number;
  /** How often to look for a missing `<prefix>/config`. Default 1000 ms. */
  readonly configPollMs?: number;
  readonly clock?: Clock;
  readonly random?: () => number;
  /** Replaces the etcd client (tests use MemoryStore). */
  readonly store?: SubnetStore;
}

export interface EtcdSubnetManagerStats {
  /** Subnet entries skipped because their key or value could not be used (each key revision counted once). */
  malformedPeers: number;
  /** Times a broken watch stream came back. */
  watchReconnects: number;
  /** Times a watch fell behind compaction (or was canceled) and the leases were re-listed. */
  watchResyncs: number;
  /** Lost compare-and-swap races while acquiring. */
  raceRetries: number;
  /** Successful lease renewals. */
  renewals: number;
  /** Failed renewal attempts (etcd unreachable); retried. */
  renewFailures: number;
  /** False while the peer watch stream is down and reconnecting (weftd is then not ready); unset before the first watch. */
  watchConnected?: boolean;
}

/** What this manager holds: the key it acquired and how to keep it. */
interface OwnedLease {
  readonly key: string;
  readonly createRevision: bigint;
  modRevision: bigint;
  /** "0" for a reservation (no TTL, nothing to renew). */
  leaseId: string;
  attrs: LeaseAttrs;
  /** ms since epoch; undefined for a reservation. */
  expiresAt?: number;
}

function leaseLost(key: string, what: string): WeftError {
  return new WeftError("LEASE_LOST", `lease ${key} ${what}; stopping so the agent restarts and acquires a subnet again`);
}

/** A tiny single-consumer queue the watch callbacks feed and the async generator drains. */
class Inbox<T> {
  private readonly items: T[] = [];
  private wake: (() => void) | undefined;
  push(item: T): void {
    this.items.push(item);
    this.wake?.();
    this.wake = undefined;
  }
  async take(signal: AbortSignal): Promise<T | undefined> {
    while (this.items.length === 0) {
      if (signal.aborted) return undefined;
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener("abort", done);
          resolve();
        };
        this.wake = done;
        signal.addEventListener("abort", done, { once: true });
      });
    }
    return this.items.shift();
  }
}

type WatchMsg = { readonly kind: "events"; readonly events: readonly StoreEvent[] } | { readonly kind: "resync"; readonly error: unknown };

export class EtcdSubnetManager implements SubnetManager {
  readonly name: string;
  readonly stats: EtcdSubnetManagerStats = { malformedPeers: 0, watchReconnects: 0, watchResyncs: 0, raceRetries: 0, renewals: 0, renewFailures: 0 };
  /** `<prefix>` without a trailing slash. */
  readonly prefix: string;
  readonly configKey: string;
  /** `<prefix>/subnets/` */
  readonly subnetsPrefix: string;

  private readonly store: SubnetStore;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly log: Logger;
  private readonly ttlSeconds: number;
  private readonly marginMs: number;
  private readonly raceRetries: number;
  private readonly configPollMs: number;
  private readonly previousSubnet: IPNet | undefined;
  private readonly previousIPv6Subnet: IPNet | undefined;
  private config: NetworkConfig | undefined;
  private readonly owned = new Map<string, OwnedLease>();
  /** Serializes writes to our own key (renewal vs updateLease) so neither overwrites the other's attrs. */
  private readonly ownChain = new SerialQueue();
  private reachability: "unknown" | "up" | "down" = "unknown";
  private readonly malformedSeen = new Map<string, bigint>();

  constructor(options: EtcdSubnetManagerOptions, logger: Logger) {
    const bad = (field: string, msg: string) => new ConfigError("etcd subnet manager options", field, msg);
    const prefix = (options.prefix ?? DEFAULT_ETCD_PREFIX).replace(/\/+$/, "");
    if (prefix === "") throw bad("prefix", `prefix ${JSON.stringify(options.prefix)} is empty: use e.g. ${DEFAULT_ETCD_PREFIX}`);
    this.ttlSeconds = options.leaseTtlSeconds ?? 86_400;
    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds < 1) {
      throw bad("leaseTtlSeconds", `lease TTL ${options.leaseTtlSeconds} must be a whole number of seconds >= 1 (default 86400)`);
    }
    const margin = options.renewMarginSeconds ?? Math.min(3_600, this.ttlSeconds / 2);
    if (!(margin > 0 && margin < this.ttlSeconds)) {
      throw bad("renewMarginSeconds", `renew margin ${margin} s must be above 0 and below the lease TTL ${this.ttlSeconds} s`);
    }
    this.marginMs = margin * 1000;
    this.raceRetries = options.raceRetries ?? 30;
    this.configPollMs = options.configPollMs ?? 1000;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.previousSubnet = options.previousSubnet;
    this.previousIPv6Subnet = options.previousIPv6Subnet;
    this.prefix = prefix;
    this.configKey = `${prefix}/config`;
    this.subnetsPrefix = `${prefix}/subnets/`;
    const endpoints = options.endpoints ?? DEFAULT_ETCD_ENDPOINTS;
    this.store =
      options.store ??
      new EtcdStore({
        endpoints,
        ...(options.tls ? { tls: options.tls } : {}),
        ...(options.username !== undefined ? { username: options.username } : {}),
        ...(options.password !== undefined ? { password: options.password } : {}),
        requestTimeoutMs: options.requestTimeoutMs ?? 5_000,
        dialTimeoutMs: options.requestTimeoutMs ?? 5_000,
        watchBackoffMinMs: 100,
        watchBackoffMaxMs: 5_000,
      });
    this.name = `${this.store.label} ${prefix}`;
    this.log = logger.child({ component: "subnet-etcd", store: this.store.label, prefix });
    const secure = !!options.tls?.certFile || !!options.tls?.caFile || endpoints.some((e) => e.startsWith("https://"));
    if (!options.store && !secure && endpoints.some((e) => !e.startsWith("unix:"))) {
      this.log.warn("connecting to etcd without TLS: set the etcd certificate, key and CA options in production", {
        endpoints: endpoints.map(redactEndpoint),
      });
    }
  }

  /** The config read by the last getNetworkConfig (used to vet peers). */
  get networkConfig(): NetworkConfig | undefined {
    return this.config;
  }

  // ---------------------------------------------------------------- store access with retry

  private markDown(what: string, e: WeftError): void {
    if (this.reachability !== "down") this.log.warn(`etcd unreachable while trying to ${what}: ${e.message}; retrying with backoff (100 ms to 1 s)`);
    this.reachability = "down";
  }

  private markUp(): void {
    if (this.reachability === "down") this.log.info("etcd reachable again");
    this.reachability = "up";
  }

  /** Runs `fn`, retrying transient store errors with backoff until it works or `signal` aborts. */
  private async retry<T>(what: string, fn: () => Promise<T>, signal: AbortSignal): Promise<T> {
    const backoff = new Backoff({ minMs: 100, maxMs: 1_000, random: this.random }); // ready within ~1 s of etcd's return
    for (;;) {
      signal.throwIfAborted();
      try {
        const out = await fn();
        this.markUp();
        return out;
      } catch (e) {
        if (!(e instanceof WeftError) || !e.transient) throw e;
        this.markDown(what, e);
        await this.clock.sleep(backoff.next(), signal);
      }
    }
  }

  private async revokeQuietly(id: string): Promise<void> {
    if (id === "0") return;
    try {
      await this.store.revokeLease(id);
    } catch (e) {
      this.log.debug(`could not revoke etcd lease ${id} (it expires by itself): ${errorMessage(e)}`);
    }
  }

  // ---------------------------------------------------------------- config

  async getNetworkConfig(signal: AbortSignal): Promise<NetworkConfig> {
    let missing = false;
    for (;;) {
      const { kv } = await this.retry(`read ${this.configKey}`, () => this.store.get(this.configKey), signal);
      if (!kv) {
        if (!missing) {
          this.log.warn(
            `no network config at ${this.configKey}: write one with etcdctl put ${this.configKey} '{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}'; checking again every ${this.configPollMs} ms`,
          );
          missing = true;
        }
        await this.clock.sleep(this.configPollMs, signal);
        continue;
      }
      // A malformed config is permanent: parseNetworkConfig throws ConfigError naming the field.
      const config = parseNetworkConfig(kv.value, { source: `etcd ${this.configKey}`, checkSubnets: true });
      for (const w of config.warnings) this.log.warn(w);
      if (missing) this.log.info(`found network config at ${this.configKey}`);
      this.config = config;
      return config;
    }
  }

  // ---------------------------------------------------------------- acquire

  async acquireLease(attrs: LeaseAttrs, signal: AbortSignal): Promise<Lease> {
    const config = this.config ?? (await this.getNetworkConfig(signal));
    const value = encodeLeaseAttrs(attrs);
    const hints = {
      ...(attrs.publicIP ? { publicIP: attrs.publicIP } : {}),
      ...(attrs.publicIPv6 ? { publicIPv6: attrs.publicIPv6 } : {}),
      ...(this.previousSubnet ? { previousSubnet: this.previousSubnet } : {}),
      ...(this.previousIPv6Subnet ? { previousIPv6Subnet: this.previousIPv6Subnet } : {}),
    };
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) {
        this.stats.raceRetries++;
        if (attempt > this.raceRetries) {
          throw new WeftError(
            "STORE_CONFLICT",
            `gave up acquiring a subnet under ${this.subnetsPrefix} after ${this.raceRetries} lost races with other nodes writing at the same time; restart the agent to try again`,
          );
        }
        // Spread the retries of nodes that collided so they do not collide again.
        await this.clock.sleep(Math.round(this.random() * Math.min(1_000, 20 * attempt)), signal);
      }
      const listing = await this.retry(`list ${this.subnetsPrefix}`, () => this.store.list(this.subnetsPrefix), signal);
      const existing: ListedLease[] = [];
      for (const kv of listing.kvs) {
        const e = toExisting(kv, this.subnetsPrefix);
        if (e) existing.push(e);
        else this.noteMalformed(kv, "bad subnet key");
      }
      const alloc = allocateSubnet(config, existing, hints, this.random, `${this.store.label} ${this.subnetsPrefix}`);

      for (const stale of alloc.incompatible) {
        const gone = await this.retry(`delete ${stale.key}`, () => this.store.deleteIf(stale.key, { modRevision: stale.kv.modRevision }), signal);
        if (gone) this.log.info(`deleted ${stale.key}: it carries this node's public IP but no longer fits the network config`);
      }

      if (alloc.kind === "reuse") {
        const e = alloc.lease;
        if (e.reserved) {
          // A reservation keeps no TTL: re-put without a lease.
          const r = await this.retry(`update ${e.key}`, () => this.store.replace(e.key, value, { modRevision: e.kv.modRevision }, "none"), signal);
          if (!r.ok) continue;
          return this.took(e.key, e, e.kv.createRevision, r.revision, "0", attrs, "the reservation for this node's public IP");
        }
        // Grant and write in one retried step: a retry after a failure gets a fresh lease, never one that may
        // have expired in the meantime (etcd would reject the put with "requested lease not found").
        const { leaseId, r } = await this.retry(
          `update ${e.key}`,
          async () => {
            const id = await this.store.grantLease(this.ttlSeconds);
            return { leaseId: id, r: await this.store.replace(e.key, value, { modRevision: e.kv.modRevision }, { lease: id }) };
          },
          signal,
        );
        if (!r.ok && !(await this.committedAnyway(e.key, leaseId, signal))) {
          await this.revokeQuietly(leaseId);
          continue;
        }
        return this.took(e.key, e, e.kv.createRevision, r.revision, leaseId, attrs, "the existing lease for this node's public IP");
      }

      const nets = { ...(alloc.subnet ? { subnet: alloc.subnet } : {}), ...(alloc.ipv6Subnet ? { ipv6Subnet: alloc.ipv6Subnet } : {}) };
      const key = this.subnetsPrefix + subnetKey(nets);
      const { leaseId, r } = await this.retry(
        `create ${key}`,
        async () => {
          const id = await this.store.grantLease(this.ttlSeconds);
          return { leaseId: id, r: await this.store.create(key, value, { lease: id }) };
        },
        signal,
      );
      let createRevision = r.revision;
      if (!r.ok) {
        const kv = await this.committedAnyway(key, leaseId, signal);
        if (!kv) {
          // Lost the race for this subnet: someone created it between our list and our transaction.
          await this.revokeQuietly(leaseId);
          this.log.debug(`lost the race for ${key}; retrying`, { attempt: attempt + 1 });
          continue;
        }
        createRevision = kv.createRevision;
      }
      // A dual-stack key names both subnets, so the create above only guards the PAIR: two nodes that listed at
      // the same moment can take the same IPv4 subnet with different IPv6 ones (two keys, both creates succeed).
      // Look again: the key created first keeps the subnet, a later one steps back and allocates anew.
      if (nets.subnet && nets.ipv6Subnet) {
        const rival = await this.earlierOverlap(key, nets, createRevision, signal);
        if (rival) {
          await this.retry(`delete ${key}`, () => this.store.deleteIf(key, { createRevision }), signal);
          await this.revokeQuietly(leaseId);
          this.log.debug(`${key} overlaps ${rival}, which was created first; allocating again`, { attempt: attempt + 1 });
          continue;
        }
      }
      const how = [alloc.source.v4 ? `${alloc.source.v4} IPv4` : "", alloc.source.v6 ? `${alloc.source.v6} IPv6` : ""].filter(Boolean).join(", ");
      return this.took(key, nets, createRevision, createRevision, leaseId, attrs, `a new subnet (${how})`);
    }
  }

  /** Another subnet key, created before `createRevision`, that shares a subnet (of either family) with `nets`. */
  private async earlierOverlap(key: string, nets: { subnet?: IPNet; ipv6Subnet?: IPNet }, createRevision: bigint, signal: AbortSignal): Promise<string | undefined> {
    const listing = await this.retry(`list ${this.subnetsPrefix}`, () => this.store.list(this.subnetsPrefix), signal);
    for (const kv of listing.kvs) {
      if (kv.key === key || kv.createRevision >= createRevision) continue;
      const other = toExisting(kv, this.subnetsPrefix);
      if (!other) continue;
      const v4 = nets.subnet && other.subnet?.overlaps(nets.subnet);
      const v6 = nets.ipv6Subnet && other.ipv6Subnet?.overlaps(nets.ipv6Subnet);
      if (v4 || v6) return kv.key;
    }
    return undefined;
  }

  /**
   * After a failed (or timed-out and retried) transaction: did our write land after all? True when the key
   * now carries our etcd lease, which only our own transaction can have put there.
   */
  private async committedAnyway(key: string, leaseId: string, signal: AbortSignal): Promise<StoredKV | undefined> {
    const { kv } = await this.retry(`read ${key}`, () => this.store.get(key), signal);
    return kv && kv.lease === leaseId ? kv : undefined;
  }

  private took(
    key: string,
    nets: { subnet?: IPNet; ipv6Subnet?: IPNet },
    createRevision: bigint,
    modRevision: bigint,
    leaseId: string,
    attrs: LeaseAttrs,
    how: string,
  ): Lease {
    const expiresAt = leaseId === "0" ? undefined : this.clock.now() + this.ttlSeconds * 1000;
    this.owned.set(key, { key, createRevision, modRevision, leaseId, attrs, ...(expiresAt !== undefined ? { expiresAt } : {}) });
    this.log.info(`acquired ${key}: ${how}`, {
      subnet: nets.subnet?.toString(),
      ipv6Subnet: nets.ipv6Subnet?.toString(),
      ttlSeconds: leaseId === "0" ? undefined : this.ttlSeconds,
    });
    return {
      ...(nets.subnet ? { subnet: nets.subnet } : {}),
      ...(nets.ipv6Subnet ? { ipv6Subnet: nets.ipv6Subnet } : {}),
      attrs,
      ...(expiresAt !== undefined ? { expiration: new Date(expiresAt) } : {}),
      revision: modRevision.toString(),
    };
  }

  private ownedFor(lease: Lease): OwnedLease {
    const key = this.subnetsPrefix + subnetKey(lease);
    const own = this.owned.get(key);
    if (!own) throw leaseLost(key, "was not acquired by this manager (call acquireLease first)");
    return own;
  }

  // ---------------------------------------------------------------- update

  async updateLease(lease: Lease, attrs: LeaseAttrs, signal: AbortSignal): Promise<Lease> {
    const own = this.ownedFor(lease);
    const value = encodeLeaseAttrs(attrs);
    return this.ownChain.run(async () => {
      // "keep": the key stays on its etcd lease (or stays lease-less if it is a reservation).
      const r = await this.retry(`update ${own.key}`, () => this.store.replace(own.key, value, { createRevision: own.createRevision }, "keep"), signal);
      if (!r.ok) throw leaseLost(own.key, "is gone (expired or deleted)");
      own.attrs = attrs;
      own.modRevision = r.revision;
      return { ...lease, attrs, revision: r.revision.toString() };
    });
  }

  // ---------------------------------------------------------------- keep alive

  async completeLease(lease: Lease, signal: AbortSignal): Promise<void> {
    const own = this.ownedFor(lease);
    const lost = new AbortController();
    let lostError: WeftError | undefined;
    const markLost = (e: WeftError) => {
      if (lostError) return;
      lostError = e;
      lost.abort(e);
    };
    const both = AbortSignal.any([signal, lost.signal]);
    let watch: StoreWatch | undefined;
    let resyncing = false;
    const watchOwn = (from: bigint) => {
      watch = this.store.watch(own.key, false, from, {
        onEvents: (events) => {
          for (const ev of events) if (ev.type === "delete") markLost(leaseLost(own.key, `was deleted at revision ${ev.modRevision} (TTL expiry or an operator)`));
        },
        onConnected: () => {},
        onDisconnected: () => {},
        onCanceled: () => {
          // Fell behind compaction: look at the key itself, then watch again from now.
          if (resyncing) return;
          resyncing = true;
          void this.retry(`read ${own.key}`, () => this.store.get(own.key), both)
            .then(({ kv, revision }) => {
              if (!kv || kv.createRevision !== own.createRevision) markLost(leaseLost(own.key, "disappeared while the watch was behind compaction"));
              else if (!both.aborted) watchOwn(revision + 1n);
            })
            .catch(() => undefined)
            .finally(() => {
              resyncing = false;
            });
        },
      });
    };
    watchOwn(own.modRevision + 1n);
    try {
      for (;;) {
        if (own.leaseId === "0" || own.expiresAt === undefined) {
          // A reservation has no TTL to renew; only its deletion matters.
          await new Promise<void>((_, reject) => {
            if (both.aborted) reject(both.reason);
            else both.addEventListener("abort", () => reject(both.reason), { once: true });
          });
          continue;
        }
        const due = own.expiresAt - this.marginMs;
        await this.clock.sleep(Math.max(0, due - this.clock.now()), both);
        await this.renew(own, both);
      }
    } catch (e) {
      if (lostError) throw lostError;
      if (signal.aborted) return;
      throw e;
    } finally {
      await watch?.close().catch(() => undefined);
    }
  }

  /** Flannel's renewal: a fresh etcd lease and a re-put of the key, retried while etcd is unreachable. */
  private async renew(own: OwnedLease, signal: AbortSignal): Promise<void> {
    const retryMs = Math.max(100, Math.min(60_000, this.marginMs / 4));
    let failing = false;
    for (;;) {
      try {
        const ok = await this.ownChain.run(async () => {
          const newId = await this.store.grantLease(this.ttlSeconds);
          const r = await this.store.replace(own.key, encodeLeaseAttrs(own.attrs), { createRevision: own.createRevision }, { lease: newId });
          if (!r.ok) {
            await this.revokeQuietly(newId);
            return false;
          }
          const old = own.leaseId;
          own.leaseId = newId;
          own.modRevision = r.revision;
          own.expiresAt = this.clock.now() + this.ttlSeconds * 1000;
          // The key moved to the new lease; the old one holds nothing now.
          await this.revokeQuietly(old);
          return true;
        });
        if (!ok) throw leaseLost(own.key, "is gone (expired or deleted) at renewal");
        this.stats.renewals++;
        this.markUp();
        if (failing) this.log.info(`renewed ${own.key} after failures`, { expires: new Date(own.expiresAt!).toISOString() });
        else this.log.debug(`renewed ${own.key}`, { expires: new Date(own.expiresAt!).toISOString() });
        return;
      } catch (e) {
        if (!(e instanceof WeftError) || !e.transient) throw e;
        this.stats.renewFailures++;
        if (!failing) {
          this.log.warn(`renewing ${own.key} failed: ${e.message}; retrying every ${retryMs} ms`, {
            expires: own.expiresAt !== undefined ? new Date(own.expiresAt).toISOString() : undefined,
          });
        }
        failing = true;
        this.markDown(`renew ${own.key}`, e);
        await this.clock.sleep(retryMs, signal);
      }
    }
  }

  // ---------------------------------------------------------------- watch

  private noteMalformed(kv: StoredKV, reason: string): void {
    if (this.malformedSeen.get(kv.key) === kv.modRevision) return;
    this.malformedSeen.set(kv.key, kv.modRevision);
    this.stats.malformedPeers++;
    this.log.warn(`skipping peer ${showKey(kv.key)}: ${reason}`, { revision: kv.modRevision.toString() });
  }

  async *watchLeases(local: Lease, signal: AbortSignal): AsyncIterable<LeaseEvent> {
    /** Peers we told the consumer about, by key, with the value they were decoded from. */
    const known = new Map<string, { lease: Lease; value: string }>();
    const inbox = new Inbox<WatchMsg>();
    const isLocal = (l: Lease) => sameSubnets(local, l);
    let watch: StoreWatch | undefined;
    let generation = 0;
    let connected = true;
    let resumeFrom = 0n;
    const where = `${this.subnetsPrefix}`;

    /** Applies a put to `known`; returns the event to emit, if any. */
    const applyPut = (kv: StoredKV): LeaseEvent | undefined => {
      const d = decodePeer(kv, this.subnetsPrefix, this.config);
      const prev = known.get(kv.key);
      if (!d.ok) {
        this.noteMalformed(kv, d.reason);
        if (prev) {
          known.delete(kv.key);
          return { type: "removed", lease: prev.lease };
        }
        return undefined;
      }
      this.malformedSeen.delete(kv.key);
      if (isLocal(d.lease)) return undefined;
      known.set(kv.key, { lease: d.lease, value: kv.value });
      // A renewal re-puts the same value: nothing the consumer needs to hear again.
      if (prev && prev.value === kv.value) return undefined;
      return { type: "added", lease: d.lease };
    };
    const applyDelete = (key: string): LeaseEvent | undefined => {
      this.malformedSeen.delete(key);
      const prev = known.get(key);
      if (!prev) return undefined;
      known.delete(key);
      return { type: "removed", lease: prev.lease };
    };

    const startWatch = (from: bigint) => {
      const gen = ++generation;
      resumeFrom = from;
      this.stats.watchConnected = true;
      watch = this.store.watch(this.subnetsPrefix, true, from, {
        onEvents: (events) => {
          if (gen !== generation) return;
          const last = events[events.length - 1]!;
          resumeFrom = (last.type === "put" ? last.kv.modRevision : last.modRevision) + 1n;
          inbox.push({ kind: "events", events });
        },
        onConnected: () => {
          if (gen !== generation || connected) return;
          connected = true;
          this.stats.watchConnected = true;
          this.stats.watchReconnects++;
          this.log.info(`watch on ${where} reconnected; resuming from revision ${resumeFrom}`);
        },
        onDisconnected: (err) => {
          if (gen !== generation || !connected) return;
          connected = false;
          this.stats.watchConnected = false;
          this.log.warn(`watch on ${where} disconnected: ${errorMessage(err)}; reconnecting with backoff (100 ms to 5 s) from revision ${resumeFrom}`);
        },
        onCanceled: (err) => {
          if (gen !== generation) return;
          inbox.push({ kind: "resync", error: err });
        },
      });
    };

    const resyncBackoff = new Backoff({ minMs: 100, maxMs: 5_000, random: this.random });
    try {
      const first = await this.retry(`list ${where}`, () => this.store.list(this.subnetsPrefix), signal);
      for (const kv of first.kvs) applyPut(kv);
      // Watch before yielding: the generator sleeps at a yield until the consumer asks for more.
      startWatch(first.revision + 1n);
      yield { type: "snapshot", leases: [...known.values()].map((v) => v.lease) };

      for (;;) {
        const msg = await inbox.take(signal);
        if (!msg) return;
        if (msg.kind === "events") {
          resyncBackoff.reset();
          for (const ev of msg.events) {
            const out = ev.type === "put" ? applyPut(ev.kv) : applyDelete(ev.key);
            if (out) yield out;
          }
          continue;
        }
        // The watch was canceled (behind compaction): re-list, emit the difference, watch from the listing.
        this.stats.watchResyncs++;
        this.log.info(`watch on ${where} was canceled (${errorMessage(msg.error) || "compacted"}); re-listing leases`, {
          resumeFrom: resumeFrom.toString(),
        });
        generation++;
        await watch?.close().catch(() => undefined);
        await this.clock.sleep(resyncBackoff.next(), signal);
        const listing = await this.retry(`list ${where}`, () => this.store.list(this.subnetsPrefix), signal);
        const seen = new Set<string>();
        const out: LeaseEvent[] = [];
        for (const kv of listing.kvs) {
          seen.add(kv.key);
          const ev = applyPut(kv);
          if (ev) out.push(ev);
        }
        for (const key of [...known.keys()]) {
          if (seen.has(key)) continue;
          const ev = applyDelete(key);
          if (ev) out.push(ev);
        }
        connected = true;
        startWatch(listing.revision + 1n);
        for (const ev of out) yield ev;
      }
    } catch (e) {
      if (signal.aborted) return;
      throw e;
    } finally {
      generation++;
      await watch?.close().catch(() => undefined);
    }
  }

  /** When this node's lease expires unless renewed (updated by every renewal); null for a reservation. */
  leaseExpiration(): Date | null | undefined {
    const own = [...this.owned.values()][0];
    if (!own) return undefined;
    return own.expiresAt === undefined ? null : new Date(own.expiresAt);
  }

  /** Closes the etcd client (and every watch). The leases stay: a restarted agent finds them again. */
  async close(): Promise<void> {
    await this.store.close();
  }
}
