/**
 * The etcd store recovering from etcd being away, against a real etcd (issue 15):
 * - unreachable at start: ready within 2 s of etcd answering, however long it was down (a hang bound, not a
 *   speed bench: the old client waited out a gRPC reconnect backoff that grew to 20-35 s);
 * - restarted with auth enabled: the watch re-authenticates (etcd's simple tokens die with the process) and a
 *   lease written afterwards is delivered.
 */
import "reflect-metadata";
import { IPAddress, MemoryLogger, encodeLeaseAttrs } from "@weft/core";
import { type EtcdServer, startEtcd } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { Etcd3, Range } from "etcd3";
import { createServer, type Socket } from "node:net";
import { afterEach, expect, it } from "vitest";
import { EtcdStore } from "./etcd-store.js";
import { EtcdSubnetManager } from "./manager.js";
import type { StoreEvent, WatchHandlers } from "./store.js";

const PASSWORD = "Recovery-pw-7";
const ROOT_PASSWORD = "Recovery-root-7";
const CONFIG = '{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}}';

async function enableAuth(etcd: EtcdServer): Promise<void> {
  const admin = new Etcd3({ hosts: etcd.endpoints });
  try {
    await admin.put("/weft.io/network/config").value(CONFIG);
    await admin.user("root").create(ROOT_PASSWORD);
    await admin.user("root").addRole("root");
    await admin.role("weft-node").create();
    await admin.role("weft-node").grant({ permission: "Readwrite", range: Range.prefix("/weft.io/network/") });
    await admin.user("weft").create(PASSWORD);
    await admin.user("weft").addRole("weft-node");
    await admin.auth.authEnable({});
  } finally {
    admin.close();
  }
}

/** A promise's settle time, or "pending" after `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T | "pending"> {
  return Promise.race([p, new Promise<"pending">((r) => setTimeout(() => r("pending"), ms))]);
}

describeReal(
  "EtcdSubnetManager recovering from etcd being away",
  () => {
    const cleanups: (() => Promise<unknown>)[] = [];
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
    });

    /** A real etcd holding the network config, then killed (its port free for a stand-in). */
    const configuredEtcdThenKilled = async () => {
      const etcd = await startEtcd({ listen: "loopback" });
      cleanups.push(() => etcd.stop());
      const admin = new Etcd3({ hosts: etcd.endpoints });
      await admin.put("/weft.io/network/config").value(CONFIG);
      admin.close();
      await etcd.kill();
      return etcd;
    };
    /** A subnet manager on `etcd` asking for the network config (the promise, and the manager's log). */
    const managerAsking = (etcd: { endpoints: string[] }) => {
      const log = new MemoryLogger();
      const m = new EtcdSubnetManager({ endpoints: etcd.endpoints }, log);
      cleanups.push(() => m.close());
      const ctl = new AbortController();
      cleanups.push(async () => ctl.abort());
      const config = m.getNetworkConfig(ctl.signal);
      config.catch(() => undefined);
      return { log, config };
    };

    it("is configured within 2 s of etcd answering after it was unreachable at start", async () => {
      const etcd = await configuredEtcdThenKilled();
      // Stand in for the unreachable etcd on its port: every connection is closed at once (as a refusal is),
      // and we see when the agent tries. Down long enough for every retry backoff to reach its cap.
      const port = Number(new URL(etcd.endpoint).port);
      const attempts: number[] = [];
      const refuser = createServer((s) => {
        attempts.push(Date.now());
        s.destroy();
      });
      await new Promise<void>((r) => refuser.listen(port, "127.0.0.1", () => r()));
      const { log, config } = managerAsking(etcd);
      await new Promise((r) => setTimeout(r, 15_000));
      // etcd comes back just after an attempt failed: the worst moment for a long backoff.
      const seen = attempts.length;
      while (attempts.length === seen) await new Promise((r) => setTimeout(r, 10));
      await new Promise<void>((r) => refuser.close(() => r()));
      await etcd.restart(); // resolves once etcd answers /health
      const answered = Date.now();
      const got = await within(config, 30_000);
      expect(got, `still not configured 30 s after etcd answered; log: ${JSON.stringify(log.records.slice(-5).map((r) => r.msg))}`).not.toBe("pending");
      expect(Date.now() - answered, `configured ${Date.now() - answered} ms after etcd answered (attempts: ${attempts.length})`).toBeLessThan(2_000);
    }, 90_000);

    it("is configured within 2 s of etcd answering when its first connection attempts hung", async () => {
      const etcd = await configuredEtcdThenKilled();
      // Something that accepts connections on etcd's port and never answers (a SYN-queue under load, a
      // half-started etcd): gRPC's first connect hangs on it instead of failing.
      const port = Number(new URL(etcd.endpoint).port);
      const held: Socket[] = [];
      const hole = createServer((s) => void held.push(s));
      await new Promise<void>((r) => hole.listen(port, "127.0.0.1", () => r()));
      const { log, config } = managerAsking(etcd);
      await new Promise((r) => setTimeout(r, 8_000));
      for (const s of held) s.destroy();
      await new Promise<void>((r) => hole.close(() => r()));
      await etcd.restart();
      const answered = Date.now();
      const got = await within(config, 30_000);
      expect(got, `still not configured 30 s after etcd answered; log: ${JSON.stringify(log.records.slice(-5).map((r) => r.msg))}`).not.toBe("pending");
      expect(Date.now() - answered, `configured ${Date.now() - answered} ms after etcd answered`).toBeLessThan(2_000);
    }, 90_000);

    it("renews a watch stream's refused auth token, and closing a watch whose create was refused does not hang", async () => {
      // Simple tokens expire after 2 s of disuse: the token the watch stream was opened with is refused for any
      // watch created on it later, exactly as after a restart that lost it.
      const etcd = await startEtcd({ listen: "loopback", extraArgs: ["--auth-token-ttl", "2"] });
      cleanups.push(() => etcd.stop());
      await enableAuth(etcd);
      const store = new EtcdStore({ endpoints: etcd.endpoints, username: "weft", password: PASSWORD, requestTimeoutMs: 5_000, dialTimeoutMs: 5_000, watchBackoffMinMs: 100, watchBackoffMaxMs: 1_000 });
      cleanups.push(() => store.close());
      const watchFor = (key: string) => {
        const events: StoreEvent[] = [];
        let canceled: unknown;
        let connected = false;
        const handlers: WatchHandlers = {
          onEvents: (e) => events.push(...e),
          onConnected: () => (connected = true),
          onDisconnected: () => undefined,
          onCanceled: (e) => (canceled = e),
        };
        const w = store.watch(key, false, 1n, handlers);
        return { w, events, canceled: () => canceled, connected: () => connected };
      };
      const first = watchFor("/weft.io/network/subnets/a");
      await new Promise((r) => setTimeout(r, 500));
      expect(first.connected() || first.canceled() === undefined).toBe(true);
      await new Promise((r) => setTimeout(r, 3_500)); // the stream's token expires
      // A watch created now is refused by etcd; closing it must still finish (SIGTERM awaits this).
      const refused = watchFor("/weft.io/network/subnets/b");
      expect(await within(refused.w.close(), 6_000), "closing a watch whose create etcd refused never finished").not.toBe("pending");
      // And the store gets a fresh token for its stream: a watch created afterwards delivers events.
      await new Promise((r) => setTimeout(r, 1_500));
      const later = watchFor("/weft.io/network/subnets/c");
      const admin = new Etcd3({ hosts: etcd.endpoints, auth: { username: "root", password: ROOT_PASSWORD } });
      cleanups.push(async () => admin.close());
      const deadline = Date.now() + 10_000;
      let n = 0;
      while (later.events.length === 0 && later.canceled() === undefined && Date.now() < deadline) {
        await admin.put("/weft.io/network/subnets/c").value(String(n++));
        await new Promise((r) => setTimeout(r, 300));
      }
      expect(later.canceled(), "the later watch was canceled: the stream still holds the refused token").toBeUndefined();
      expect(later.events.length).toBeGreaterThan(0);
    }, 60_000);

    it("re-authenticates its watch after an auth-enabled etcd restarts, and delivers leases written afterwards", async () => {
      // Simple tokens that expire after 2 s: the token the watch stream holds is refused once etcd is back
      // (deterministically; with the default 300 s TTL it is refused when the restart lost it).
      const etcd = await startEtcd({ listen: "loopback", extraArgs: ["--auth-token-ttl", "2"] });
      cleanups.push(() => etcd.stop());
      await enableAuth(etcd);
      const log = new MemoryLogger();
      const m = new EtcdSubnetManager({ endpoints: etcd.endpoints, username: "weft", password: PASSWORD, leaseTtlSeconds: 600 }, log);
      cleanups.push(() => m.close());
      const ctl = new AbortController();
      cleanups.push(async () => ctl.abort());
      await m.getNetworkConfig(ctl.signal);
      const lease = await m.acquireLease({ publicIP: IPAddress.parse("198.18.0.1"), backendType: "vxlan" }, ctl.signal);
      const events = m.watchLeases(lease, ctl.signal)[Symbol.asyncIterator]();
      expect((await events.next()).value?.type).toBe("snapshot");

      await etcd.kill();
      await new Promise((r) => setTimeout(r, 3_000));
      await etcd.restart();
      // A peer written by another node (as root, with its own fresh token) after the restart.
      const admin = new Etcd3({ hosts: etcd.endpoints, auth: { username: "root", password: ROOT_PASSWORD } });
      cleanups.push(async () => admin.close());
      const value = encodeLeaseAttrs({ publicIP: IPAddress.parse("198.18.0.2"), backendType: "vxlan", backendData: { VNI: 1, VtepMAC: "02:00:00:00:00:02" } });
      await admin.put("/weft.io/network/subnets/198.19.77.0-24").value(value);
      const next = await within(events.next(), 15_000);
      expect(next, `the watch never delivered the new peer; log: ${JSON.stringify(log.records.slice(-6))}`).not.toBe("pending");
      const ev = (next as IteratorResult<{ type: string; lease?: { subnet?: { toString(): string } } }>).value;
      expect(ev?.type).toBe("added");
      expect(ev?.lease?.subnet?.toString()).toBe("198.19.77.0/24");
      // The watch itself is live again: later peers arrive as watch events, with no re-listing loop (a stream
      // still holding the refused token has every new watch canceled, and the manager re-lists forever).
      const resyncs = m.stats.watchResyncs;
      for (const n of [78, 79]) {
        await new Promise((r) => setTimeout(r, 2_000));
        await admin.put(`/weft.io/network/subnets/198.19.${n}.0-24`).value(value);
        const e = await within(events.next(), 10_000);
        expect(e, `peer ${n} not delivered`).not.toBe("pending");
      }
      await new Promise((r) => setTimeout(r, 3_000));
      expect(m.stats.watchResyncs - resyncs, `the watch kept being canceled and re-listed; log: ${JSON.stringify(log.records.slice(-4).map((r) => r.msg))}`).toBe(0);
      expect(JSON.stringify(log.records)).not.toContain(PASSWORD);
      // Stopping is prompt even after all that (SIGTERM in weftd aborts this signal).
      ctl.abort();
      expect(await within(events.return!(undefined), 5_000), "the watch did not stop within 5 s of its signal").not.toBe("pending");
    }, 90_000);
  },
  { tools: ["etcd"] },
);
