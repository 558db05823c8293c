/**
 * LinuxManagedDaemons: the ManagedDaemonPort on Linux. Starts daemons through the ProcessRunner (argv, never a
 * shell), keeps their PID in `<runDir>/<name>.pid` and their output in `<runDir>/<name>.log`, and tells whether
 * a recorded PID still is that daemon from /proc (this package is the only one allowed to read it).
 *
 * What Linux does that surprises:
 *   - PIDs are reused. A PID file that survived a reboot or a crash may name any process: a PID is only ever
 *     adopted or signalled after /proc/<pid>/cmdline shows the same program with the same arguments.
 *   - A process that ended but whose parent has not reaped it yet is a zombie: /proc/<pid> still exists, with
 *     state "Z" in /proc/<pid>/stat. It is not running. A detached daemon started by an earlier agent was
 *     reparented to init (or a subreaper), which reaps it; one THIS process started is reaped through its
 *     ChildHandle (the runner waits for it), so stop() ends our own children through that handle.
 *   - A detached child gets its own session and keeps running when the agent exits or is killed with -9: that
 *     is what lets a restarted agent adopt it.
 */
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { type BackoffOptions, type Clock, type Logger, errorMessage, isWeftError, systemClock } from "@weft/core";
import { KernelError } from "../port.js";
import type { ChildHandle, ProcessRunner } from "../process.js";
import {
  DEFAULT_DAEMON_BACKOFF,
  DEFAULT_STOP_GRACE_MS,
  StartFailureLog,
  argvMatches,
  awaitDaemonReady,
  cutLogTail,
  daemonLogFile,
  daemonPidFile,
  describeDaemon,
  readPidFile,
} from "./files.js";
import type { DaemonState, ManagedDaemonPort, ManagedDaemonRef, ManagedDaemonSpec } from "./port.js";

/** Options of LinuxManagedDaemons. */
export interface LinuxManagedDaemonsOptions {
  /** Starts the daemons (detached when the spec says so, stdout and stderr appended to the log). */
  readonly runner: ProcessRunner;
  /** Starts and stops are logged at info. */
  readonly logger?: Logger;
  /** Default: the system clock. */
  readonly clock?: Clock;
  /** Waits after consecutive failed starts; default 250 ms doubling up to 30 s (±20 %). */
  readonly backoff?: BackoffOptions;
  /** Time between TERM and KILL on stop; default 3000 ms. */
  readonly stopGraceMs?: number;
}

/** How often readiness and process exit are polled. */
const POLL_MS = 20;

/** One process this adapter started, with how it ended once it did. */
interface Child {
  readonly handle: ChildHandle;
  ended?: { code: number | null; signal: string | null };
}

/** The ManagedDaemonPort on Linux (see the file comment). */
export class LinuxManagedDaemons implements ManagedDaemonPort {
  private readonly runner: ProcessRunner;
  private readonly logger: Logger | undefined;
  private readonly clock: Clock;
  private readonly stopGraceMs: number;
  /** Processes this instance started, by run dir + name: stopped (and reaped) through their handle. */
  private readonly children = new Map<string, Child>();
  private readonly failures: StartFailureLog;
  /** One ensure/stop at a time per daemon. */
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(options: LinuxManagedDaemonsOptions) {
    this.runner = options.runner;
    this.logger = options.logger;
    this.clock = options.clock ?? systemClock;
    this.failures = new StartFailureLog(this.clock, { ...DEFAULT_DAEMON_BACKOFF, ...options.backoff });
    this.stopGraceMs = options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
  }

  async find(spec: ManagedDaemonRef): Promise<DaemonState> {
    const pid = this.recordedPid(spec);
    if (pid === undefined) return { name: spec.name, running: false };
    return { name: spec.name, running: true, pid, adopted: this.children.get(keyOf(spec))?.handle.pid !== pid };
  }

  ensure(spec: ManagedDaemonSpec): Promise<DaemonState> {
    return this.serialize(keyOf(spec), () => this.ensureNow(spec));
  }

  stop(spec: ManagedDaemonRef): Promise<void> {
    return this.serialize(keyOf(spec), () => this.stopNow(spec));
  }

  async logTail(spec: Pick<ManagedDaemonSpec, "name" | "runDir">, lines = 3): Promise<string> {
    try {
      return cutLogTail(readFileSync(daemonLogFile(spec), "utf8"), lines);
    } catch {
      return "";
    }
  }

  private async ensureNow(spec: ManagedDaemonSpec): Promise<DaemonState> {
    const key = keyOf(spec);
    this.failures.check(spec);

    const found = await this.find(spec);
    if (found.running) {
      if (!spec.ready || (await spec.ready())) return found;
      // Alive but not serving (hung): replaced, by its PID.
      this.logger?.warn("managed daemon does not answer; restarting it", { daemon: spec.name, pid: found.pid });
      await this.stopNow(spec);
    }

    mkdirSync(spec.runDir, { recursive: true, mode: 0o700 });
    chmodSync(spec.runDir, 0o700);
    await spec.prepare?.();
    const log = daemonLogFile(spec);
    let handle: ChildHandle;
    try {
      handle = this.runner.spawn(spec.command, spec.args, {
        detached: spec.detached ?? false,
        stdoutFile: log,
        stderrFile: log,
        ...(spec.env ? { env: spec.env } : {}),
      });
    } catch (err) {
      // Not installed: permanent, no backoff (the error names the Debian package).
      if (isWeftError(err) && err.code === "PROCESS_MISSING") throw err;
      throw this.failures.record(spec, new KernelError("KERNEL_FAILED", `${describeDaemon(spec)} could not be started: ${errorMessage(err)}`, undefined, { cause: err }));
    }
    const child: Child = { handle };
    this.children.set(key, child);
    void handle.exited.then((e) => {
      child.ended = e;
      if (this.children.get(key) === child) this.children.delete(key);
    });
    writeFileSync(daemonPidFile(spec), `${handle.pid}\n`, { mode: 0o600 });

    const started = {
      ended: () => child.ended,
      kill: async () => {
        handle.kill("SIGKILL");
        await handle.exited;
      },
    };
    try {
      await awaitDaemonReady(spec, started, { clock: this.clock, pollMs: POLL_MS, logTail: () => this.logTail(spec) });
    } catch (err) {
      throw this.failures.record(spec, err as Error);
    }
    this.failures.clear(spec);
    this.logger?.info("managed daemon started", { daemon: spec.name, pid: handle.pid, log });
    return { name: spec.name, running: true, pid: handle.pid, adopted: false };
  }

  private async stopNow(spec: ManagedDaemonRef): Promise<void> {
    const key = keyOf(spec);
    const child = this.children.get(key);
    if (child && !child.ended) {
      // Ours: signalled and awaited through the handle, which also reaps it.
      this.children.delete(key);
      child.handle.kill("SIGTERM");
      const ended = await Promise.race([child.handle.exited.then(() => true), this.clock.sleep(this.stopGraceMs).then(() => false)]);
      if (!ended) {
        child.handle.kill("SIGKILL");
        await child.handle.exited;
      }
      rmSync(daemonPidFile(spec), { force: true });
      this.logger?.info("managed daemon stopped", { daemon: spec.name, pid: child.handle.pid });
      return;
    }
    const pid = this.recordedPid(spec);
    if (pid !== undefined) {
      // An earlier agent's: by PID, and only while the PID still is that daemon.
      signal(pid, "SIGTERM");
      const deadline = this.clock.now() + this.stopGraceMs;
      while (this.isDaemon(pid, spec) && this.clock.now() < deadline) await this.clock.sleep(POLL_MS);
      if (this.isDaemon(pid, spec)) {
        signal(pid, "SIGKILL");
        const gone = this.clock.now() + this.stopGraceMs;
        while (this.isDaemon(pid, spec) && this.clock.now() < gone) await this.clock.sleep(POLL_MS);
      }
      this.logger?.info("managed daemon stopped", { daemon: spec.name, pid });
    }
    rmSync(daemonPidFile(spec), { force: true });
  }

  /** The PID in the daemon's PID file when it is alive and still this daemon; undefined otherwise. */
  private recordedPid(spec: ManagedDaemonRef): number | undefined {
    const pid = readPidFile(spec);
    return pid !== undefined && this.isDaemon(pid, spec) ? pid : undefined;
  }

  /** Is `pid` alive (not a zombie) and running `spec`'s program with its arguments? */
  private isDaemon(pid: number, spec: Pick<ManagedDaemonSpec, "command" | "args">): boolean {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // Field 3, after the parenthesised command name (which may itself contain spaces and parentheses).
      const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
      if (state === "Z" || state === "X") return false;
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (argv[argv.length - 1] === "") argv.pop();
      return argvMatches(argv, spec);
    } catch {
      return false;
    }
  }

  private serialize<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.queues.get(key) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const settled = run.catch(() => undefined);
    this.queues.set(key, settled);
    void settled.then(() => {
      if (this.queues.get(key) === settled) this.queues.delete(key);
    });
    return run;
  }
}

const keyOf = (spec: Pick<ManagedDaemonSpec, "name" | "runDir">) => `${spec.runDir}\0${spec.name}`;

/** Sends `sig` to `pid`; a process that is already gone is fine. */
function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // ESRCH: already gone
  }
}
