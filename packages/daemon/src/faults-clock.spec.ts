/**
 * The clock jumping (issue 15, "Fault injection"): the wall clock stepped backward or forward (NTP stepping a
 * node's clock at boot, an operator's `date -s`, a VM resumed) while weftd runs. Where time decides something:
 * - the etcd lease renewal (EtcdSubnetManager: expiry - margin, then a sleep);
 * - a managed daemon's start backoff (StartFailureLog) and its readiness deadline (awaitDaemonReady);
 * - the resync timer, the watch backoff and the etcd lease TTL itself: timers (setTimeout) and etcd's own
 *   server-side clock, which a wall-clock step does not move (not tested here: nothing reads the wall clock).
 * The production clock is systemClock (@weft/core). Vitest's fake timers model the machine: setSystemTime steps
 * the wall clock (Date) only, while timers and performance.now() follow elapsed (monotonic) time.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IPAddress, type LeaseAttrs, silentLogger, systemClock } from "@weft/core";
import { type ManagedDaemonSpec, StartFailureLog, awaitDaemonReady } from "@weft/kernel";
import { EtcdSubnetManager, MemoryStore } from "@weft/subnet-etcd";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

const HOUR = 3_600_000;
const PREFIX = "/weft.io/network";
const attrs: LeaseAttrs = { publicIP: IPAddress.parse("198.18.0.1"), backendType: "vxlan", backendData: { VNI: 1, VtepMAC: "c6:2e:1f:00:aa:01" } };
/** The wall clock steps by `ms` (negative: backward); timers and performance.now() do not move. */
const stepWallClock = (ms: number) => vi.setSystemTime(Date.now() + ms);
/** etcd expires leases on its own (monotonic) time: the store's clock never sees the node's wall clock. */
const etcdTime = { now: () => performance.now(), sleep: (ms: number, signal?: AbortSignal) => systemClock.sleep(ms, signal) };

describe("faults: the wall clock jumping under weftd", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["Date", "setTimeout", "clearTimeout", "setInterval", "clearInterval", "performance"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("systemClock.now() does not follow a step of the wall clock, backward or forward, and follows elapsed time", async () => {
    const t0 = systemClock.now();
    stepWallClock(-HOUR);
    const t1 = systemClock.now();
    expect(t1 - t0).toBeGreaterThanOrEqual(0);
    expect(t1 - t0).toBeLessThan(1_000);
    stepWallClock(2 * HOUR);
    expect(systemClock.now() - t1).toBeLessThan(1_000);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(systemClock.now() - t1).toBeGreaterThanOrEqual(5_000);
    expect(systemClock.now() - t1).toBeLessThan(6_000);
  });

  it("renews the etcd lease before etcd expires it when the wall clock steps back between acquiring and keeping it", async () => {
    const store = new MemoryStore(etcdTime);
    store.put(`${PREFIX}/config`, '{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}}');
    const m = new EtcdSubnetManager({ store, clock: systemClock, leaseTtlSeconds: 600, renewMarginSeconds: 60, random: () => 0 }, silentLogger);
    const lease = await m.acquireLease(attrs, new AbortController().signal);
    // Booting node: chrony steps the clock back 30 minutes while the agent programs its datapath.
    stepWallClock(-30 * 60_000);
    const stop = new AbortController();
    const kept = m.completeLease(lease, stop.signal).then(
      () => undefined,
      (e: unknown) => e,
    );
    // Just before etcd's TTL (600 s) runs out, the key must have been renewed (due at 540 s).
    await vi.advanceTimersByTimeAsync(590_000);
    expect(m.stats.renewals).toBeGreaterThanOrEqual(1);
    await vi.advanceTimersByTimeAsync(20_000);
    const key = `${PREFIX}/subnets/${lease.subnet!.toString().replace("/", "-")}`;
    expect([...store.snapshot(`${PREFIX}/subnets/`).keys()]).toEqual([key]);
    stop.abort();
    expect(await kept).toBeUndefined();
  });

  it("keeps the etcd lease, without a renewal storm, when the wall clock steps forward", async () => {
    const store = new MemoryStore(etcdTime);
    store.put(`${PREFIX}/config`, '{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}}');
    const m = new EtcdSubnetManager({ store, clock: systemClock, leaseTtlSeconds: 600, renewMarginSeconds: 60, random: () => 0 }, silentLogger);
    const lease = await m.acquireLease(attrs, new AbortController().signal);
    stepWallClock(2 * HOUR);
    const stop = new AbortController();
    const kept = m.completeLease(lease, stop.signal).then(
      () => undefined,
      (e: unknown) => e,
    );
    await vi.advanceTimersByTimeAsync(60_000);
    expect(m.stats.renewals).toBeLessThanOrEqual(1);
    stepWallClock(2 * HOUR);
    await vi.advanceTimersByTimeAsync(1_200_000);
    // Two TTLs of elapsed time: renewed about every 540 s, never more than once per step.
    expect(m.stats.renewals).toBeGreaterThanOrEqual(2);
    expect(m.stats.renewals).toBeLessThanOrEqual(4);
    expect(store.snapshot(`${PREFIX}/subnets/`).size).toBe(1);
    stop.abort();
    expect(await kept).toBeUndefined();
  });

  it("a managed daemon's start backoff ends after its delay even when the wall clock steps back meanwhile", async () => {
    const log = new StartFailureLog(systemClock, { minMs: 1_000, maxMs: 1_000, jitter: 0 });
    const spec = { name: "wireguard-go", runDir: "/nonexistent/weft-clock", command: "wireguard-go", args: [] };
    log.record(spec, new Error("exited with code 1"));
    expect(() => log.check(spec)).toThrow();
    stepWallClock(-HOUR);
    await vi.advanceTimersByTimeAsync(1_500);
    expect(() => log.check(spec)).not.toThrow();
  });

  it("waiting for a started daemon to serve does not give up early when the wall clock steps forward", async () => {
    const runDir = mkdtempSync(join(tmpdir(), "weft-clock-"));
    try {
      let serving = false;
      setTimeout(() => {
        serving = true;
      }, 3_000);
      const spec: ManagedDaemonSpec = { name: "d", command: "d", args: [], runDir, readyTimeoutMs: 10_000, ready: async () => serving };
      let killed = false;
      const waited = awaitDaemonReady(
        spec,
        {
          ended: () => undefined,
          kill: async () => {
            killed = true;
          },
        },
        { clock: systemClock, pollMs: 100, logTail: async () => "" },
      ).then(
        () => undefined,
        (e: unknown) => e,
      );
      await vi.advanceTimersByTimeAsync(500);
      stepWallClock(HOUR);
      await vi.advanceTimersByTimeAsync(3_000);
      expect(await waited).toBeUndefined();
      expect(killed).toBe(false);
    } finally {
      rmSync(runDir, { recursive: true, force: true });
    }
  });
});
