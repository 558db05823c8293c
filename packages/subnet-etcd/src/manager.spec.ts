import {
  ConfigError,
  IPAddress,
  IPNet,
  type LeaseAttrs,
  type LeaseEvent,
  MemoryLogger,
  WeftError,
  encodeLeaseAttrs,
  silentLogger,
} from "@weft/core";
import { describe, expect, it } from "vitest";
import { type Clock, abortReason, systemClock } from "@weft/core";
import { EtcdSubnetManager, type EtcdSubnetManagerOptions } from "./manager.js";
import { MemoryStore } from "./memory-store.js";
import type { LeaseChoice } from "./store.js";

/** A clock that moves only when the test says so. */
class FakeClock implements Clock {
  t = 1_800_000_000_000;
  private timers: Array<{ at: number; fire: () => void }> = [];
  now(): number {
    return this.t;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal));
      const timer = {
        at: this.t + Math.max(0, ms),
        fire: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.timers = this.timers.filter((x) => x !== timer);
        reject(abortReason(signal!));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.timers.push(timer);
    });
  }
  /** Moves time forward, firing due timers in order and letting promises settle in between. */
  async advance(ms: number, store?: MemoryStore): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      store?.expire();
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.t = Math.max(this.t, due.at);
      this.timers = this.timers.filter((x) => x !== due);
      due.fire();
    }
    this.t = end;
    store?.expire();
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

const NET = '{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}}';
const PREFIX = "/weft.io/network";
const SUBNETS = `${PREFIX}/subnets/`;
const attrs = (publicIP: string, mac = "c6:2e:1f:00:aa:01"): LeaseAttrs => ({
  publicIP: IPAddress.parse(publicIP),
  backendType: "vxlan",
  backendData: { VNI: 1, VtepMAC: mac },
});
const signal = () => new AbortController().signal;

function mk(store: MemoryStore, opts: Partial<EtcdSubnetManagerOptions> = {}, logger = silentLogger): EtcdSubnetManager {
  return new EtcdSubnetManager({ store, clock: systemClock, ...opts }, logger);
}

/**
 * Pulls events from a lease stream with a deadline, so a missing event fails instead of hanging. A `next()`
 * that timed out stays pending and is reused, so no event is lost to a timeout.
 */
class Reader {
  private readonly it: AsyncIterator<LeaseEvent>;
  private pending: Promise<IteratorResult<LeaseEvent>> | undefined;
  constructor(stream: AsyncIterable<LeaseEvent>) {
    this.it = stream[Symbol.asyncIterator]();
  }
  async next(timeoutMs = 3_000): Promise<LeaseEvent> {
    this.pending ??= this.it.next();
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      this.pending,
      new Promise<never>((_, rej) => {
        timer = setTimeout(() => rej(new Error(`no lease event within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    this.pending = undefined;
    if (r.done) throw new Error("lease stream ended");
    return r.value;
  }
  /** Asserts nothing arrives for `ms`. */
  async none(ms = 200): Promise<void> {
    await expect(this.next(ms)).rejects.toThrow(/no lease event/);
  }
}
const sub = (e: LeaseEvent) => (e.type === "snapshot" ? e.leases.map((l) => l.subnet!.toString()).sort() : `${e.type} ${e.lease.subnet}`);

describe("EtcdSubnetManager config", () => {
  it("waits for a missing config, saying so once, and picks it up when written", async () => {
    const clock = new FakeClock();
    const store = new MemoryStore(clock);
    const log = new MemoryLogger();
    const m = mk(store, { clock }, log);
    let got: unknown;
    const p = m.getNetworkConfig(signal()).then((c) => (got = c));
    await clock.advance(5_000);
    expect(got).toBeUndefined();
    const missing = log.records.filter((r) => r.msg.startsWith("no network config at /weft.io/network/config: write one with etcdctl put /weft.io/network/config '{"));
    expect(missing).toHaveLength(1);
    store.put(`${PREFIX}/config`, NET);
    await clock.advance(1_000);
    await p;
    expect(m.networkConfig?.v4?.network.toString()).toBe("198.19.0.0/16");
    expect(log.records.some((r) => r.msg === "found network config at /weft.io/network/config")).toBe(true);
  });

  it("logs unreachability once per state change, not once per retry", async () => {
    const clock = new FakeClock();
    const store = new MemoryStore(clock);
    const log = new MemoryLogger();
    const m = mk(store, { clock }, log);
    store.setAvailable(false);
    const p = m.getNetworkConfig(signal());
    await clock.advance(60_000); // about 15 retries at up to 5 s each
    store.put(`${PREFIX}/config`, NET);
    store.setAvailable(true);
    await clock.advance(6_000);
    await p;
    expect(log.records.filter((r) => r.msg.startsWith("etcd unreachable"))).toHaveLength(1);
    expect(log.records.filter((r) => r.msg === "etcd reachable again")).toHaveLength(1);
  });

  it("throws a ConfigError naming the etcd key for a malformed config", async () => {
    const store = new MemoryStore();
    store.put(`${PREFIX}/config`, '{"Network":"198.19.0.0/33","Backend":{"Type":"vxlan"}}');
    const err = await mk(store).getNetworkConfig(signal()).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/^etcd \/weft.io\/network\/config: Network "198.19.0.0\/33" is not an IPv4 CIDR/);
  });

  it("rejects a renew margin that is not below the TTL", () => {
    expect(() => mk(new MemoryStore(), { leaseTtlSeconds: 60, renewMarginSeconds: 60 })).toThrow(/renew margin 60 s must be above 0 and below the lease TTL 60 s/);
  });
});

describe("EtcdSubnetManager acquireLease", () => {
  it("writes Flannel's key and value under the prefix, attached to a lease", async () => {
    const store = new MemoryStore();
    store.put("/coreos.com/network/config", NET);
    const m = mk(store, { prefix: "/coreos.com/network/", random: () => 0 });
    const lease = await m.acquireLease(attrs("198.18.0.1"), signal());
    expect(lease.subnet?.toString()).toBe("198.19.1.0/24");
    expect(lease.expiration).toBeInstanceOf(Date);
    const kv = store.snapshot("/coreos.com/network/subnets/").get("/coreos.com/network/subnets/198.19.1.0-24");
    expect(kv?.value).toBe('{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:2e:1f:00:aa:01"}}');
    expect(kv?.lease).not.toBe("0");
  });

  it("gets the same subnet back after a restart (reuse by public IP), else the previous subnet", async () => {
    const store = new MemoryStore();
    store.put(`${PREFIX}/config`, NET);
    const a = await mk(store).acquireLease(attrs("198.18.0.1"), signal());
    const again = await mk(store).acquireLease(attrs("198.18.0.1", "c6:2e:1f:00:aa:99"), signal());
    expect(again.subnet?.toString()).toBe(a.subnet?.toString());
    expect(store.snapshot(SUBNETS).size).toBe(1);
    const hinted = await mk(store, { previousSubnet: IPNet.parse("198.19.200.0/24") }).acquireLease(attrs("198.18.0.2"), signal());
    expect(hinted.subnet?.toString()).toBe("198.19.200.0/24");
  });

  it("gives 50 concurrent nodes 50 distinct subnets out of 60, retrying lost races", async () => {
    const store = new MemoryStore();
    // /26 of /32s would be too small for Flannel's checks; a /18 of /24s minus SubnetMin/Max gives 60.
    store.put(`${PREFIX}/config`, '{"Network":"198.19.0.0/18","SubnetMin":"198.19.1.0","SubnetMax":"198.19.60.0","Backend":{"Type":"vxlan"}}');
    const managers = Array.from({ length: 50 }, () => mk(store));
    const leases = await Promise.all(managers.map((m, i) => m.acquireLease(attrs(`198.18.1.${i + 1}`), signal())));
    const subnets = new Set(leases.map((l) => l.subnet!.toString()));
    expect(subnets.size).toBe(50);
    expect(store.snapshot(SUBNETS).size).toBe(50);
    expect(managers.reduce((n, m) => n + m.stats.raceRetries, 0)).toBeGreaterThan(0);
  });

  it("dual-stack: a node that took the same IPv4 subnet as an earlier key (with another IPv6 subnet) steps back and allocates anew", async () => {
    // Two agents list at the same moment and pick the same IPv4 subnet with different IPv6 subnets: the two keys
    // differ, so both creates succeed. Here the rival's create lands just before ours.
    const DUAL = '{"Network":"198.19.0.0/16","EnableIPv6":true,"IPv6Network":"2001:2::/48","Backend":{"Type":"vxlan"}}';
    class RacingStore extends MemoryStore {
      rival?: string;
      override async create(key: string, value: string, lease: LeaseChoice): Promise<{ ok: boolean; revision: bigint }> {
        if (this.rival === undefined && key.includes("&")) {
          this.rival = `${key.slice(0, key.indexOf("&"))}&2001:2:0:ffff::-64`;
          await super.create(this.rival, encodeLeaseAttrs(attrs("198.18.0.9")), { lease: await this.grantLease(60) });
        }
        return super.create(key, value, lease);
      }
    }
    const store = new RacingStore();
    store.put(`${PREFIX}/config`, DUAL);
    const m = mk(store);
    const lease = await m.acquireLease({ ...attrs("198.18.0.1"), publicIPv6: IPAddress.parse("2001:2:0:100::1") }, signal());
    const rivalV4 = store.rival!.slice(SUBNETS.length, store.rival!.indexOf("&"));
    expect(lease.subnet!.toString()).not.toBe(rivalV4.replace("-", "/"));
    const keys = [...store.snapshot(SUBNETS).keys()].map((k) => k.slice(SUBNETS.length));
    // The rival keeps its key; ours is the only other one, with an IPv4 subnet of its own.
    expect(keys).toHaveLength(2);
    expect(new Set(keys.map((k) => k.slice(0, k.indexOf("&")))).size).toBe(2);
    expect(m.stats.raceRetries).toBeGreaterThan(0);
  });

  it("fails with SUBNETS_EXHAUSTED when the network is full, and never takes a reservation", async () => {
    const store = new MemoryStore();
    store.put(`${PREFIX}/config`, '{"Network":"198.19.0.0/26","Backend":{"Type":"vxlan"}}'); // 3 x /28
    store.put(`${SUBNETS}198.19.0.32-28`, encodeLeaseAttrs(attrs("198.18.0.99"))); // reservation, no TTL
    const a = await mk(store).acquireLease(attrs("198.18.0.1"), signal());
    const b = await mk(store).acquireLease(attrs("198.18.0.2"), signal());
    expect([a.subnet!.toString(), b.subnet!.toString()].sort()).toEqual(["198.19.0.16/28", "198.19.0.48/28"]);
    const err = await mk(store).acquireLease(attrs("198.18.0.3"), signal()).catch((e) => e);
    expect(err).toBeInstanceOf(WeftError);
    expect(err.code).toBe("SUBNETS_EXHAUSTED");
    expect(err.message).toMatch(/no free IPv4 subnet in Network 198.19.0.0\/26 .*all 3 \/28 subnets .*\(2 leases, 1 reservations\)/);
    expect(store.snapshot(SUBNETS).get(`${SUBNETS}198.19.0.32-28`)?.value).toBe(encodeLeaseAttrs(attrs("198.18.0.99")));
  });

  it("hands a reservation to the node with its public IP without attaching a TTL", async () => {
    const clock = new FakeClock();
    const store = new MemoryStore(clock);
    store.put(`${PREFIX}/config`, NET);
    store.put(`${SUBNETS}198.19.77.0-24`, '{"PublicIP":"198.18.0.7","PublicIPv6":null}');
    const m = mk(store, { clock, leaseTtlSeconds: 10, renewMarginSeconds: 5 });
    const lease = await m.acquireLease(attrs("198.18.0.7"), signal());
    expect(lease.subnet?.toString()).toBe("198.19.77.0/24");
    expect(lease.expiration).toBeUndefined();
    const ctl = new AbortController();
    const done = m.completeLease(lease, ctl.signal);
    await clock.advance(60_000, store);
    const kv = store.snapshot(SUBNETS).get(`${SUBNETS}198.19.77.0-24`);
    expect(kv?.lease).toBe("0");
    expect(kv?.value).toBe(encodeLeaseAttrs(attrs("198.18.0.7")));
    expect(m.stats.renewals).toBe(0);
    ctl.abort();
    await done;
  });

  it("rejects with LEASE_LOST when a held reservation is deleted", async () => {
    const store = new MemoryStore();
    store.put(`${PREFIX}/config`, NET);
    store.put(`${SUBNETS}198.19.78.0-24`, '{"PublicIP":"198.18.0.8","PublicIPv6":null}');
    const m = mk(store);
    const lease = await m.acquireLease(attrs("198.18.0.8"), signal());
    const done = m.completeLease(lease, signal());
    await settle();
    store.delete(`${SUBNETS}198.19.78.0-24`);
    const err = await done.catch((e) => e);
    expect(err).toBeInstanceOf(WeftError);
    expect(err.code).toBe("LEASE_LOST");
  });

  it("waits out an unreachable store while acquiring", async () => {
    const clock = new FakeClock();
    const store = new MemoryStore(clock);
    store.put(`${PREFIX}/config`, NET);
    const m = mk(store, { clock, random: () => 0 });
    await m.getNetworkConfig(signal());
    store.setAvailable(false);
    let lease: unknown;
    const p = m.acquireLease(attrs("198.18.0.1"), signal()).then((l) => (lease = l));
    await clock.advance(30_000);
    expect(lease).toBeUndefined();
    store.setAvailable(true);
    await clock.advance(6_000);
    await p;
    expect([...store.snapshot(SUBNETS).keys()]).toEqual([`${SUBNETS}198.19.1.0-24`]);
  });

  it("deletes an old lease of ours that no longer fits the config", async () => {
    const store = new MemoryStore();
    store.put(`${PREFIX}/config`, NET);
    store.put(`${SUBNETS}198.19.0.0-24`, encodeLeaseAttrs(attrs("198.18.0.1")), 3600); // below SubnetMin
    const lease = await mk(store, { random: () => 0 }).acquireLease(attrs("198.18.0.1"), signal());
    expect(lease.subnet?.toString()).toBe("198.19.1.0/24");
    expect([...store.snapshot(SUBNETS).keys()]).toEqual([`${SUBNETS}198.19.1.0-24`]);
  });

  it("allocates dual-stack subnets into one key", async () => {
    const store = new MemoryStore();
    store.put(`${PREFIX}/config`, '{"Network":"198.19.0.0/16","EnableIPv6":true,"IPv6Network":"2001:2::/48","Backend":{"Type":"vxlan"}}');
    const lease = await mk(store, { random: () => 0 }).acquireLease({ ...attrs("198.18.0.1"), publicIPv6: IPAddress.parse("2001:2:ff::1") }, signal());
    expect(lease.ipv6Subnet?.toString()).toBe("2001:2:0:1::/64");
    expect([...store.snapshot(SUBNETS).keys()]).toEqual([`${SUBNETS}198.19.1.0-24&2001:2:0:1::-64`]);
  });
});

describe("EtcdSubnetManager completeLease", () => {
  it("renews before expiry, so the key outlives many TTLs", async () => {
    const clock = new FakeClock();
    const store = new MemoryStore(clock);
    store.put(`${PREFIX}/config`, NET);
    const m = mk(store, { clock, leaseTtlSeconds: 10, renewMarginSeconds: 4 });
    const lease = await m.acquireLease(attrs("198.18.0.1"), signal());
    const key = `${SUBNETS}${lease.subnet!.ip}-24`;
    const ctl = new AbortController();
    const done = m.completeLease(lease, ctl.signal);
    await clock.advance(5_900, store);
    expect(m.stats.renewals).toBe(0);
    await clock.advance(200, store); // 6.1 s: TTL 10 s minus margin 4 s has passed
    expect(m.stats.renewals).toBe(1);
    for (let s = 0; s < 60; s++) {
      await clock.advance(1_000, store);
      expect(store.snapshot(SUBNETS).has(key)).toBe(true);
    }
    expect(m.stats.renewals).toBe(11); // at 6, 12, ..., 66 s
    ctl.abort();
    await done;
    // Without renewal the lease now runs out.
    await clock.advance(10_000, store);
    expect(store.snapshot(SUBNETS).has(key)).toBe(false);
  });

  it("keeps the attributes of updateLease across renewals", async () => {
    const clock = new FakeClock();
    const store = new MemoryStore(clock);
    store.put(`${PREFIX}/config`, NET);
    const m = mk(store, { clock, leaseTtlSeconds: 10, renewMarginSeconds: 4 });
    const lease = await m.acquireLease({ publicIP: IPAddress.parse("198.18.0.1"), backendType: "vxlan" }, signal());
    const updated = await m.updateLease(lease, attrs("198.18.0.1", "c6:2e:1f:00:aa:42"), signal());
    const ctl = new AbortController();
    const done = m.completeLease(updated, ctl.signal);
    await clock.advance(20_000, store);
    expect(m.stats.renewals).toBeGreaterThan(1);
    expect([...store.snapshot(SUBNETS).values()][0]?.value).toBe(encodeLeaseAttrs(attrs("198.18.0.1", "c6:2e:1f:00:aa:42")));
    ctl.abort();
    await done;
  });

  it("rejects with LEASE_LOST when the key is deleted", async () => {
    const store = new MemoryStore();
    store.put(`${PREFIX}/config`, NET);
    const m = mk(store);
    const lease = await m.acquireLease(attrs("198.18.0.1"), signal());
    const done = m.completeLease(lease, signal());
    await settle();
    store.delete(`${SUBNETS}${lease.subnet!.ip}-24`);
    const err = await done.catch((e) => e);
    expect(err).toBeInstanceOf(WeftError);
    expect(err.code).toBe("LEASE_LOST");
  });

  it("rejects with LEASE_LOST when the lease expired while etcd was unreachable", async () => {
    const clock = new FakeClock();
    const store = new MemoryStore(clock);
    store.put(`${PREFIX}/config`, NET);
    const log = new MemoryLogger();
    const m = mk(store, { clock, leaseTtlSeconds: 10, renewMarginSeconds: 4 }, log);
    const lease = await m.acquireLease(attrs("198.18.0.1"), signal());
    const done = m.completeLease(lease, signal());
    let err: unknown;
    void done.catch((e) => (err = e));
    store.setAvailable(false);
    await clock.advance(15_000, store);
    expect(m.stats.renewFailures).toBeGreaterThan(3);
    expect(log.records.filter((r) => r.msg.startsWith("renewing /weft.io/network/subnets/"))).toHaveLength(1);
    store.setAvailable(true);
    await clock.advance(2_000, store);
    expect(err).toBeInstanceOf(WeftError);
    expect((err as WeftError).code).toBe("LEASE_LOST");
  });
});

describe("EtcdSubnetManager watchLeases", () => {
  async function setup() {
    const store = new MemoryStore();
    store.put(`${PREFIX}/config`, NET);
    const log = new MemoryLogger();
    const m = mk(store, { random: () => 0 }, log); // local lease 198.19.1.0/24
    await m.getNetworkConfig(signal());
    const local = await m.acquireLease(attrs("198.18.0.1"), signal());
    return { store, m, log, local };
  }

  it("sends a snapshot without the local lease, then added/removed about peers only", async () => {
    const { store, m, local } = await setup();
    store.put(`${SUBNETS}198.19.50.0-24`, encodeLeaseAttrs(attrs("198.18.0.50")), 3600);
    const ctl = new AbortController();
    const r = new Reader(m.watchLeases(local, ctl.signal));
    expect(sub(await r.next())).toEqual(["198.19.50.0/24"]);
    store.put(`${SUBNETS}198.19.51.0-24`, encodeLeaseAttrs(attrs("198.18.0.51")), 3600);
    expect(sub(await r.next())).toBe("added 198.19.51.0/24");
    // A renewal (same value) is not news; a changed value is.
    store.put(`${SUBNETS}198.19.51.0-24`, encodeLeaseAttrs(attrs("198.18.0.51")), 3600);
    store.put(`${SUBNETS}198.19.51.0-24`, encodeLeaseAttrs(attrs("198.18.0.51", "c6:00:00:00:00:51")), 3600);
    const changed = await r.next();
    expect(changed.type === "added" && changed.lease.attrs.backendData).toEqual({ VNI: 1, VtepMAC: "c6:00:00:00:00:51" });
    store.delete(`${SUBNETS}198.19.50.0-24`);
    expect(sub(await r.next())).toBe("removed 198.19.50.0/24");
    // Our own key: updates never show up.
    await m.updateLease(local, attrs("198.18.0.1", "c6:00:00:00:00:01"), signal());
    await r.none();
    ctl.abort();
  });

  it("skips malformed peers with a warning and a counter, and keeps going", async () => {
    const { store, m, log, local } = await setup();
    store.put(`${SUBNETS}garbage`, "{}");
    const ctl = new AbortController();
    const r = new Reader(m.watchLeases(local, ctl.signal));
    expect(sub(await r.next())).toEqual([]);
    expect(m.stats.malformedPeers).toBe(1);
    store.put(`${SUBNETS}198.19.60.0-24`, "not json");
    store.put(`${SUBNETS}198.19.61.0-24`, '{"PublicIP":"2001:2::1"}');
    store.put(`${SUBNETS}10.1.0.0-24`, encodeLeaseAttrs(attrs("198.18.0.9")));
    store.put(`${SUBNETS}198.19.62.0-24`, encodeLeaseAttrs(attrs("198.18.0.62")));
    expect(sub(await r.next())).toBe("added 198.19.62.0/24");
    expect(m.stats.malformedPeers).toBe(4);
    expect(log.records.filter((x) => x.level === "warn" && x.msg.startsWith("skipping peer"))).toHaveLength(4);
    // A good peer turned bad is removed, not kept with stale data.
    store.put(`${SUBNETS}198.19.62.0-24`, "{broken");
    expect(sub(await r.next())).toBe("removed 198.19.62.0/24");
    ctl.abort();
  });

  it("resumes after a disconnect without losing events written meanwhile", async () => {
    const { store, m, local } = await setup();
    const ctl = new AbortController();
    const r = new Reader(m.watchLeases(local, ctl.signal));
    await r.next();
    store.setAvailable(false);
    await settle();
    store.put(`${SUBNETS}198.19.70.0-24`, encodeLeaseAttrs(attrs("198.18.0.70")), 3600);
    store.put(`${SUBNETS}198.19.71.0-24`, encodeLeaseAttrs(attrs("198.18.0.71")), 3600);
    store.delete(`${SUBNETS}198.19.70.0-24`);
    store.setAvailable(true);
    expect([sub(await r.next()), sub(await r.next()), sub(await r.next())]).toEqual([
      "added 198.19.70.0/24",
      "added 198.19.71.0/24",
      "removed 198.19.70.0/24",
    ]);
    expect(m.stats.watchReconnects).toBe(1);
    expect(m.stats.watchResyncs).toBe(0);
    ctl.abort();
  });

  it("re-lists after compaction and emits the difference", async () => {
    const { store, m, local } = await setup();
    store.put(`${SUBNETS}198.19.80.0-24`, encodeLeaseAttrs(attrs("198.18.0.80")), 3600);
    store.put(`${SUBNETS}198.19.81.0-24`, encodeLeaseAttrs(attrs("198.18.0.81")), 3600);
    const ctl = new AbortController();
    const r = new Reader(m.watchLeases(local, ctl.signal));
    expect(sub(await r.next())).toEqual(["198.19.80.0/24", "198.19.81.0/24"]);
    store.setAvailable(false);
    await settle();
    store.delete(`${SUBNETS}198.19.80.0-24`);
    store.put(`${SUBNETS}198.19.82.0-24`, encodeLeaseAttrs(attrs("198.18.0.82")), 3600);
    store.put(`${SUBNETS}198.19.83.0-24`, encodeLeaseAttrs(attrs("198.18.0.83")), 3600);
    store.delete(`${SUBNETS}198.19.83.0-24`); // came and went while we were away: never reported
    store.compact();
    store.setAvailable(true);
    const got = [sub(await r.next()), sub(await r.next())].sort();
    expect(got).toEqual(["added 198.19.82.0/24", "removed 198.19.80.0/24"]);
    await r.none();
    expect(m.stats.watchResyncs).toBe(1);
    // And the new watch works.
    store.put(`${SUBNETS}198.19.84.0-24`, encodeLeaseAttrs(attrs("198.18.0.84")), 3600);
    expect(sub(await r.next())).toBe("added 198.19.84.0/24");
    ctl.abort();
  });

  it("ends when the signal aborts", async () => {
    const { m, local } = await setup();
    const ctl = new AbortController();
    const seen: LeaseEvent[] = [];
    const loop = (async () => {
      for await (const ev of m.watchLeases(local, ctl.signal)) seen.push(ev);
    })();
    await settle();
    ctl.abort();
    await loop;
    expect(seen.map((e) => e.type)).toEqual(["snapshot"]);
  });
});
