/**
 * FakeManagedDaemons: the ManagedDaemonPort over an in-memory process table (FakeDaemonTable), for unit
 * tests. It keeps the adapter's rules (same PID and log files in the run directory, same backoff, same
 * errors; see @weft/kernel's daemon/files.ts) and models what processes do:
 *   - a program is "installed" in the table with `install(command, program)`: what it logs and does when it
 *     starts (keep running, or exit at once), whether it ignores SIGTERM, what its exit undoes (wireguard-go's
 *     TUN goes with it). A command nobody installed is missing (PROCESS_MISSING);
 *   - crash injection: `crash(pid)` / `crashDaemon(name)` end a process as SIGKILL would; `failStarts` makes
 *     the next starts of a program exit at once with a log line;
 *   - PID reuse: `spawnOther` starts a live process that is not any daemon (write its PID into a PID file);
 *   - an agent restart is a NEW FakeManagedDaemons on the SAME table: it did not start what runs, finds it by
 *     the PID file and adopts it.
 * Tests assert on the table (`processes`, `running()`), not on calls.
 */
import { appendFileSync, chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { type BackoffOptions, type Clock, WeftError, systemClock } from "@weft/core";
import {
  DEFAULT_DAEMON_BACKOFF,
  DEFAULT_STOP_GRACE_MS,
  type DaemonState,
  type ManagedDaemonPort,
  type ManagedDaemonRef,
  type ManagedDaemonSpec,
  StartFailureLog,
  argvMatches,
  awaitDaemonReady,
  cutLogTail,
  daemonLogFile,
  daemonPidFile,
  readPidFile,
} from "@weft/kernel";
import type { FakeKernel } from "./fake-kernel.js";

/** How a fake process ended. */
export interface FakeExit {
  readonly code: number | null;
  readonly signal: string | null;
}

/** One process in a FakeDaemonTable. */
export interface FakeDaemonProcess {
  readonly pid: number;
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** The agent's kernel (its network namespace) when the port that started it was given one. */
  readonly kernel?: FakeKernel;
  /** Where its output goes, when it has a log. */
  readonly logFile?: string;
  /** Undefined while it runs. */
  readonly ended?: FakeExit;
  /** Appends a line to its log (what the program "prints"). */
  log(line: string): void;
}

/** What an installed program does. */
export interface FakeProgram {
  /**
   * Runs when a process of it starts: log something, set up what it makes (a TUN), or return `{ exitCode }`
   * to exit at once (a start failure). May be async: the process counts as running meanwhile.
   */
  start?(proc: FakeDaemonProcess): void | { exitCode: number } | Promise<void | { exitCode: number }>;
  /** Only SIGKILL ends it. */
  readonly ignoresTerm?: boolean;
  /** Runs once when the process ends, for any reason: undo what it made. */
  exited?(proc: FakeDaemonProcess, how: FakeExit): void | Promise<void>;
}

interface Entry extends FakeDaemonProcess {
  ended?: FakeExit;
  readonly program: FakeProgram;
  readonly done: Promise<FakeExit>;
  finish(how: FakeExit): void;
}

/** The processes of one fake machine, shared by every FakeManagedDaemons (agent) on it. */
export class FakeDaemonTable {
  /** Every process ever started here, by PID (ended ones keep their `ended`). */
  readonly processes = new Map<number, FakeDaemonProcess>();
  private readonly programs = new Map<string, FakeProgram>();
  private readonly failing = new Map<string, { count: number; message: string }>();
  private nextPid = 41_000;

  /** Installs `program` under `command` (matched by its last path component). */
  install(command: string, program: FakeProgram = {}): this {
    this.programs.set(base(command), program);
    return this;
  }

  /** The next `count` starts of `command` log `message` and exit with code 1 before they are ready. */
  failStarts(command: string, count: number, message: string): this {
    this.failing.set(base(command), { count, message });
    return this;
  }

  /** The processes that are running now. */
  running(): FakeDaemonProcess[] {
    return [...this.processes.values()].filter((p) => !p.ended);
  }

  /** Ends process `pid` as SIGKILL from outside would (a crash, the OOM killer). */
  async crash(pid: number): Promise<void> {
    await this.signal(pid, "SIGKILL");
  }

  /** A live process that is no daemon of anyone's (to model a PID file naming a reused PID). */
  spawnOther(command: string, args: readonly string[]): number {
    return this.start(command, args, {}, undefined, undefined, {}).pid;
  }

  /**
   * Delivers `sig` to `pid`; resolves once what the process's exit undoes is done. False when there is no such
   * live process (ESRCH).
   */
  async signal(pid: number, sig: NodeJS.Signals): Promise<boolean> {
    const p = this.processes.get(pid) as Entry | undefined;
    if (!p || p.ended) return false;
    if (sig === "SIGTERM" && p.program.ignoresTerm) return true;
    p.finish({ code: null, signal: sig });
    await settled(p);
    return true;
  }

  /** How process `pid` ends (resolves once its exit hook ran). */
  exited(pid: number): Promise<FakeExit> {
    const p = this.processes.get(pid) as Entry | undefined;
    if (!p) return Promise.resolve({ code: null, signal: null });
    return settled(p).then(() => p.ended!);
  }

  /** Starts `command`; PROCESS_MISSING when no program is installed under it. */
  start(command: string, args: readonly string[], env: Readonly<Record<string, string>>, logFile: string | undefined, kernel: FakeKernel | undefined, program?: FakeProgram): Entry {
    const prog = program ?? this.programs.get(base(command));
    if (!prog) throw new WeftError("PROCESS_MISSING", `program "${command}" not found on PATH (FakeDaemonTable: install it with .install("${command}", ...))`);
    let finish!: (how: FakeExit) => void;
    const exitedHook: Array<Promise<void>> = [];
    const done = new Promise<FakeExit>((resolve) => (finish = resolve));
    const entry: Entry = {
      pid: this.nextPid++,
      command,
      args: [...args],
      env: { ...env },
      ...(kernel ? { kernel } : {}),
      ...(logFile ? { logFile } : {}),
      program: prog,
      done,
      log: (line) => {
        if (logFile) appendFileSync(logFile, `${line}\n`);
      },
      finish: (how) => {
        if (entry.ended) return;
        entry.ended = how;
        exitedHook.push(Promise.resolve(prog.exited?.(entry, how)).catch(() => undefined));
        void Promise.all(exitedHook).then(() => finish(how));
      },
    };
    this.processes.set(entry.pid, entry);
    const failing = this.failing.get(base(command));
    if (failing && failing.count > 0) {
      failing.count--;
      // What a real daemon prints before a setup failure: a banner, then one error line.
      entry.log("┌────┐\n│ banner │\n└────┘");
      entry.log(`ERROR: (${args[args.length - 1] ?? command}) ${new Date().toISOString()} ${failing.message}`);
      queueMicrotask(() => entry.finish({ code: 1, signal: null }));
      return entry;
    }
    entry.startup = Promise.resolve(prog.start?.(entry)).then(
      (r) => {
        if (r && typeof r === "object") entry.finish({ code: r.exitCode, signal: null });
      },
      (err: unknown) => {
        entry.log(`fake program failed: ${String(err)}`);
        entry.finish({ code: 2, signal: null });
      },
    );
    return entry;
  }
}

interface Entry {
  /** The program's start hook, settled. */
  startup?: Promise<void>;
}

const base = (file: string) => file.slice(file.lastIndexOf("/") + 1);
const settled = (p: Entry) => p.done.then(() => undefined);

/** Options of FakeManagedDaemons. */
export interface FakeManagedDaemonsOptions {
  /** The agent's kernel: given to the programs it starts (where a TUN appears). */
  readonly kernel?: FakeKernel;
  /** Default: the system clock (the waits are short: a fake process is ready when its start hook is done). */
  readonly clock?: Clock;
  readonly backoff?: BackoffOptions;
  readonly stopGraceMs?: number;
}

const POLL_MS = 5;

/** The ManagedDaemonPort of one agent over a FakeDaemonTable (see the file comment). */
export class FakeManagedDaemons implements ManagedDaemonPort {
  private readonly clock: Clock;
  private readonly stopGraceMs: number;
  /** What this instance started (an agent restart is a new instance: it adopts instead). */
  private readonly started = new Map<string, number>();
  private readonly failures: StartFailureLog;

  constructor(
    /** The machine's processes (share it between instances to model agent restarts). */
    readonly table: FakeDaemonTable = new FakeDaemonTable(),
    private readonly options: FakeManagedDaemonsOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.failures = new StartFailureLog(this.clock, options.backoff ?? DEFAULT_DAEMON_BACKOFF);
    this.stopGraceMs = options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
  }

  async find(spec: ManagedDaemonRef): Promise<DaemonState> {
    const pid = this.recordedPid(spec);
    if (pid === undefined) return { name: spec.name, running: false };
    return { name: spec.name, running: true, pid, adopted: this.started.get(keyOf(spec)) !== pid };
  }

  async ensure(spec: ManagedDaemonSpec): Promise<DaemonState> {
    const key = keyOf(spec);
    this.failures.check(spec);
    const found = await this.find(spec);
    if (found.running) {
      if (!spec.ready || (await spec.ready())) return found;
      await this.stop(spec);
    }
    mkdirSync(spec.runDir, { recursive: true, mode: 0o700 });
    chmodSync(spec.runDir, 0o700);
    await spec.prepare?.();
    const proc = this.table.start(spec.command, spec.args, spec.env ?? {}, daemonLogFile(spec), this.options.kernel);
    this.started.set(key, proc.pid);
    writeFileSync(daemonPidFile(spec), `${proc.pid}\n`, { mode: 0o600 });
    await proc.startup;
    const started = { ended: () => proc.ended, kill: async () => void (await this.table.signal(proc.pid, "SIGKILL")) };
    try {
      await awaitDaemonReady(spec, started, { clock: this.clock, pollMs: POLL_MS, logTail: () => this.logTail(spec) });
    } catch (err) {
      throw this.failures.record(spec, err as Error);
    }
    this.failures.clear(spec);
    return { name: spec.name, running: true, pid: proc.pid, adopted: false };
  }

  async stop(spec: ManagedDaemonRef): Promise<void> {
    const pid = this.recordedPid(spec);
    if (pid !== undefined) {
      await this.table.signal(pid, "SIGTERM");
      const deadline = this.clock.now() + this.stopGraceMs;
      while (this.isDaemon(pid, spec) && this.clock.now() < deadline) await this.clock.sleep(POLL_MS);
      if (this.isDaemon(pid, spec)) await this.table.signal(pid, "SIGKILL");
    }
    this.started.delete(keyOf(spec));
    rmSync(daemonPidFile(spec), { force: true });
  }

  async logTail(spec: Pick<ManagedDaemonSpec, "name" | "runDir">, lines = 3): Promise<string> {
    try {
      return cutLogTail(readFileSync(daemonLogFile(spec), "utf8"), lines);
    } catch {
      return "";
    }
  }

  private recordedPid(spec: ManagedDaemonRef): number | undefined {
    const pid = readPidFile(spec);
    return pid !== undefined && this.isDaemon(pid, spec) ? pid : undefined;
  }

  private isDaemon(pid: number, spec: Pick<ManagedDaemonSpec, "command" | "args">): boolean {
    const p = this.table.processes.get(pid);
    return p !== undefined && !p.ended && argvMatches([p.command, ...p.args], spec);
  }
}

const keyOf = (spec: Pick<ManagedDaemonSpec, "name" | "runDir">) => `${spec.runDir}\0${spec.name}`;
