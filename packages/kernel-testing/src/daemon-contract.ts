/**
 * The ManagedDaemonPort contract: one suite, run against FakeManagedDaemons (unit tier) and LinuxManagedDaemons
 * with real processes (netns tier), so the fake cannot drift from the adapter. Each test gets a fresh fixture
 * and asserts on what runs and what is on disk afterwards (PID file, run directory), never on calls.
 *
 * Agent restarts are modelled as they happen: a NEW port instance on the same machine (`fx.port()` again),
 * which did not start what runs and must adopt it from the PID file.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BackoffOptions } from "@weft/core";
import { type ManagedDaemonPort, type ManagedDaemonSpec, daemonPidFile } from "@weft/kernel";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

/** The three kinds of test daemon a fixture can make. */
export type TestDaemonKind =
  /** Runs until signalled. */
  | "sleeper"
  /** Ignores SIGTERM; only SIGKILL ends it. Ready once its handler is in place. */
  | "stubborn"
  /** Prints "boom: cannot bind 198.18.0.1" to stderr and exits with code 3 at once. */
  | "failing";

/** Options a test gives a port. */
export interface TestPortOptions {
  readonly backoff?: BackoffOptions;
  readonly stopGraceMs?: number;
}

export interface ManagedDaemonFixture {
  /** A fresh directory the run directories go in (the suite names them; they do not exist yet). */
  readonly dir: string;
  /** The port of a (new) agent on this machine: every call is a fresh instance sharing the processes. */
  port(options?: TestPortOptions): ManagedDaemonPort;
  /**
   * A spec of the given kind with `name` and `runDir`, arguments unique to this call (two specs never match
   * each other's process), `ready` left out (the suite sets it) except for "stubborn".
   */
  daemon(kind: TestDaemonKind, name: string, runDir: string): ManagedDaemonSpec;
  /** Starts a live process that is no daemon (to put its PID in a PID file); ended by cleanup. */
  other(): Promise<number>;
  /** Ends `pid` with SIGKILL from outside (a crash); resolves once it is gone. */
  crash(pid: number): Promise<void>;
  /** Whether `pid` is a live process (not a zombie). */
  alive(pid: number): Promise<boolean>;
  /** Ends whatever the test left running (by PID) and removes the directory. */
  cleanup(): Promise<void>;
}

const pidOnDisk = (spec: ManagedDaemonSpec) => Number(readFileSync(daemonPidFile(spec), "utf8").trim());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const QUICK: BackoffOptions = { minMs: 200, maxMs: 200, jitter: 0 };

export function describeManagedDaemonContract(name: string, factory: () => Promise<ManagedDaemonFixture>): void {
  describe(`ManagedDaemonPort contract: ${name}`, () => {
    let fx: ManagedDaemonFixture;
    let runDir: string;
    beforeEach(async () => {
      fx = await factory();
      runDir = join(fx.dir, "run");
    });
    afterEach(async () => {
      await fx.cleanup();
    });

    const sleeper = (n = "d1"): ManagedDaemonSpec => ({ ...fx.daemon("sleeper", n, runDir), ready: async () => true });

    it("starts a daemon: run dir 0700, PID file 0600 naming a live process, find reports it as its own", async () => {
      const port = fx.port();
      const spec = sleeper();
      const st = await port.ensure(spec);
      expect(st).toMatchObject({ name: "d1", running: true, adopted: false });
      expect(statSync(runDir).mode & 0o777).toBe(0o700);
      expect(statSync(daemonPidFile(spec)).mode & 0o777).toBe(0o600);
      expect(pidOnDisk(spec)).toBe(st.pid);
      expect(await fx.alive(st.pid!)).toBe(true);
      expect(await port.find(spec)).toEqual({ name: "d1", running: true, pid: st.pid, adopted: false });
      await port.stop(spec);
    });

    it("ensure is idempotent: a running daemon is not started again", async () => {
      const port = fx.port();
      const spec = sleeper();
      const first = await port.ensure(spec);
      const second = await port.ensure(spec);
      expect(second.pid).toBe(first.pid);
      await port.stop(spec);
    });

    it("a restarted agent (a new port) adopts the running daemon by its PID file and can stop it", async () => {
      const spec = sleeper();
      const first = await fx.port().ensure(spec);
      const next = fx.port();
      let prepared = 0;
      expect(await next.find(spec)).toEqual({ name: "d1", running: true, pid: first.pid, adopted: true });
      expect(await next.ensure({ ...spec, prepare: async () => void prepared++ })).toMatchObject({ pid: first.pid, adopted: true });
      expect(prepared).toBe(0);
      await next.stop(spec);
      expect(await fx.alive(first.pid!)).toBe(false);
      expect(existsSync(daemonPidFile(spec))).toBe(false);
      expect((await next.find(spec)).running).toBe(false);
    });

    it("stop ends its own daemon (TERM), removes the PID file, and is tolerant when nothing runs", async () => {
      const port = fx.port();
      const spec = sleeper();
      const st = await port.ensure(spec);
      await port.stop(spec);
      expect(await fx.alive(st.pid!)).toBe(false);
      expect(existsSync(daemonPidFile(spec))).toBe(false);
      await port.stop(spec);
      await fx.port().stop(spec);
      expect((await port.find(spec)).running).toBe(false);
    });

    it("stop falls back to KILL after the grace period, for its own and for an adopted daemon", async () => {
      const a = fx.port({ stopGraceMs: 300 });
      const own = { ...fx.daemon("stubborn", "s1", runDir) };
      const adopted = { ...fx.daemon("stubborn", "s2", runDir) };
      const p1 = (await a.ensure(own)).pid!;
      const p2 = (await a.ensure(adopted)).pid!;
      await a.stop(own);
      expect(await fx.alive(p1)).toBe(false);
      await fx.port({ stopGraceMs: 300 }).stop(adopted);
      expect(await fx.alive(p2)).toBe(false);
    });

    it("a PID file naming another program (a reused PID) is neither adopted nor signalled", async () => {
      const port = fx.port();
      const spec = sleeper();
      const other = await fx.other();
      await port.ensure(spec);
      await port.stop(spec);
      writeFileSync(daemonPidFile(spec), `${other}\n`);
      expect((await fx.port().find(spec)).running).toBe(false);
      await fx.port().stop(spec);
      expect(await fx.alive(other)).toBe(true);
      const st = await fx.port().ensure(spec);
      expect(st.pid).not.toBe(other);
      expect(st.adopted).toBe(false);
      expect(pidOnDisk(spec)).toBe(st.pid);
      await fx.port().stop(spec);
      expect(await fx.alive(other)).toBe(true);
    });

    it("a crashed daemon is started again at once (a crash is not a failed start)", async () => {
      const port = fx.port({ backoff: { minMs: 60_000, maxMs: 60_000, jitter: 0 } });
      const spec = sleeper();
      const first = await port.ensure(spec);
      await fx.crash(first.pid!);
      expect((await port.find(spec)).running).toBe(false);
      const again = await port.ensure(spec);
      expect(again.running).toBe(true);
      expect(again.pid).not.toBe(first.pid);
      await port.stop(spec);
    });

    it("a start that exits before it is ready fails with the daemon's own words, then backs off, then tries again", async () => {
      const port = fx.port({ backoff: QUICK });
      const spec: ManagedDaemonSpec = { ...fx.daemon("failing", "f1", runDir), ready: async () => false, readiness: "its socket answered" };
      const failure = port.ensure(spec);
      await expect(failure).rejects.toMatchObject({ code: "KERNEL_FAILED" });
      const message = String(await failure.catch((e: Error) => e.message));
      expect(message).toMatch(/exited \(code 3\) before its socket answered: .*boom: cannot bind 198\.18\.0\.1/);
      expect(message).toContain(join(runDir, "f1.log"));
      expect(existsSync(daemonPidFile(spec))).toBe(false);
      expect(await port.logTail(spec)).toContain("boom: cannot bind 198.18.0.1");
      // The backoff: no new process until it has passed.
      await expect(port.ensure(spec)).rejects.toMatchObject({ code: "KERNEL_TRANSIENT", message: expect.stringContaining("boom: cannot bind") });
      await sleep(250);
      await expect(port.ensure(spec)).rejects.toMatchObject({ code: "KERNEL_FAILED" });
    });

    it("a start that never gets ready is killed and fails; a later good start clears the backoff", async () => {
      const port = fx.port({ backoff: QUICK });
      let ok = false;
      const spec: ManagedDaemonSpec = { ...sleeper(), ready: async () => ok, readyTimeoutMs: 300 };
      await expect(port.ensure(spec)).rejects.toMatchObject({ code: "KERNEL_FAILED", message: expect.stringContaining("not ready after 300 ms") });
      expect(existsSync(daemonPidFile(spec))).toBe(false);
      expect((await port.find(spec)).running).toBe(false);
      ok = true;
      await sleep(250);
      const st = await port.ensure(spec);
      expect(await fx.alive(st.pid!)).toBe(true);
      await port.stop(spec);
    });

    it("a live daemon that no longer answers is replaced; prepare runs before the new start", async () => {
      const port = fx.port();
      let hung = false;
      const order: string[] = [];
      const spec: ManagedDaemonSpec = {
        ...sleeper(),
        ready: async () => !hung,
        prepare: async () => {
          order.push("prepare");
          hung = false;
        },
      };
      const first = await port.ensure(spec);
      hung = true;
      const second = await fx.port().ensure(spec);
      expect(second.pid).not.toBe(first.pid);
      expect(await fx.alive(first.pid!)).toBe(false);
      expect(order).toEqual(["prepare", "prepare"]);
      await port.stop(spec);
      await fx.port().stop(spec);
    });

    it("a program that is not installed is PROCESS_MISSING", async () => {
      const spec: ManagedDaemonSpec = { ...sleeper(), command: "weft-no-such-daemon" };
      await expect(fx.port().ensure(spec)).rejects.toMatchObject({ code: "PROCESS_MISSING" });
    });
  });
}
