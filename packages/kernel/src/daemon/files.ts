/**
 * What every ManagedDaemonPort implementation (the Linux adapter and the fake) agrees on: where a daemon's
 * files are, how its log is cut down for an error message, how failed starts back off, and how the errors
 * read. Kept in one place so the fake cannot drift from the adapter.
 */
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Backoff, type BackoffOptions, type Clock } from "@weft/core";
import { KernelError } from "../port.js";
import type { ManagedDaemonRef, ManagedDaemonSpec } from "./port.js";

/** `<runDir>/<name>.pid`: the PID of the daemon's process, one line. */
export const daemonPidFile = (spec: Pick<ManagedDaemonSpec, "name" | "runDir">): string => join(spec.runDir, `${spec.name}.pid`);
/** `<runDir>/<name>.log`: the daemon's stdout and stderr, appended. */
export const daemonLogFile = (spec: Pick<ManagedDaemonSpec, "name" | "runDir">): string => join(spec.runDir, `${spec.name}.log`);

/**
 * The PID recorded in the daemon's PID file: an integer above 1, else undefined (no file, or not a PID). Whether
 * that process still is the daemon is the caller's check (argvMatches on what it runs).
 */
export function readPidFile(spec: Pick<ManagedDaemonSpec, "name" | "runDir">): number | undefined {
  let text: string;
  try {
    text = readFileSync(daemonPidFile(spec), "utf8");
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 1 ? pid : undefined;
}

/** Default time a start may take to become ready. */
export const DEFAULT_READY_TIMEOUT_MS = 5000;
/** Default grace between TERM and KILL when stopping. */
export const DEFAULT_STOP_GRACE_MS = 3000;
/** Default backoff after consecutive failed starts (core's Backoff: doubling, capped, ±20 % jitter). */
export const DEFAULT_DAEMON_BACKOFF = { minMs: 250, maxMs: 30_000 } as const;

/**
 * The last `lines` things a daemon said: blank lines and box-drawing banner lines (wireguard-go's boxed "not
 * required" notice) left out, joined with " | ".
 */
export function cutLogTail(text: string, lines = 3): string {
  const said = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !/^[\u2500-\u257f]/u.test(l));
  return said.slice(-lines).join(" | ");
}

/** `command args...` for messages (arguments never carry secrets: keys go in files). */
export const describeDaemon = (spec: ManagedDaemonRef): string => [spec.command, ...spec.args].join(" ");

/** Does an argv read back from the process (`/proc/<pid>/cmdline`) run `spec`'s program with its arguments? */
export function argvMatches(argv: readonly string[], spec: Pick<ManagedDaemonSpec, "command" | "args">): boolean {
  if (argv.length !== spec.args.length + 1) return false;
  const base = (s: string) => s.slice(s.lastIndexOf("/") + 1);
  if (argv[0] !== spec.command && base(argv[0]!) !== base(spec.command)) return false;
  return spec.args.every((a, i) => argv[i + 1] === a);
}

/** Per-daemon bookkeeping of consecutive failed starts. */
export interface StartFailures {
  readonly count: number;
  readonly notBefore: number;
  readonly message: string;
  readonly backoff: Backoff;
}

/** The KERNEL_TRANSIENT error while a daemon's backoff runs. */
export function backoffError(spec: ManagedDaemonRef, f: StartFailures, now: number): KernelError {
  return new KernelError(
    "KERNEL_TRANSIENT",
    `${describeDaemon(spec)}: ${f.count} failed start(s) in a row, next try in ${Math.max(0, f.notBefore - now)} ms (last: ${f.message})`,
  );
}

/** The KERNEL_FAILED error for a start that ended before the daemon was ready. */
export function exitedError(spec: ManagedDaemonSpec, how: { code: number | null; signal: string | null }, tail: string): KernelError {
  return new KernelError(
    "KERNEL_FAILED",
    `${describeDaemon(spec)} exited (${how.signal ?? `code ${how.code}`}) before ${spec.readiness ?? "it was ready"}${tail ? `: ${tail}` : ""} (${daemonLogFile(spec)})`,
  );
}

/** The KERNEL_FAILED error for a start that did not become ready in time (the process was killed). */
export function notReadyError(spec: ManagedDaemonSpec, timeoutMs: number, tail: string): KernelError {
  return new KernelError(
    "KERNEL_FAILED",
    `${describeDaemon(spec)} was still not ready after ${timeoutMs} ms (waiting until ${spec.readiness ?? "it was ready"}); it was stopped${tail ? `; it said: ${tail}` : ""} (${daemonLogFile(spec)})`,
  );
}

/**
 * Consecutive failed starts per daemon (by run dir and name) and the backoff they earn: while it runs, `check`
 * refuses a new start with backoffError; `record` adds a failure (the next delay grows), `clear` forgets them
 * once a start works.
 */
export class StartFailureLog {
  private readonly failures = new Map<string, StartFailures>();

  constructor(
    private readonly clock: Clock,
    private readonly backoff: BackoffOptions,
  ) {}

  /** Throws backoffError (KERNEL_TRANSIENT) while `spec`'s backoff runs. */
  check(spec: ManagedDaemonRef): void {
    const f = this.failures.get(startKey(spec));
    if (f && this.clock.now() < f.notBefore) throw backoffError(spec, f, this.clock.now());
  }

  /** Records a failed start of `spec` (its backoff grows) and returns `err`. */
  record<E extends Error>(spec: ManagedDaemonRef, err: E): E {
    const key = startKey(spec);
    const before = this.failures.get(key);
    const backoff = before?.backoff ?? new Backoff(this.backoff);
    this.failures.set(key, { count: (before?.count ?? 0) + 1, notBefore: this.clock.now() + backoff.next(), message: err.message, backoff });
    return err;
  }

  /** Forgets `spec`'s failed starts (it is running). */
  clear(spec: ManagedDaemonRef): void {
    this.failures.delete(startKey(spec));
  }
}

const startKey = (spec: Pick<ManagedDaemonSpec, "name" | "runDir">) => `${spec.runDir}\0${spec.name}`;

/** What awaitDaemonReady needs of a daemon it just started. */
export interface StartedDaemon {
  /** How it ended, or undefined while it runs. */
  ended(): { code: number | null; signal: string | null } | undefined;
  /** Kills it (SIGKILL) and resolves once it is gone. */
  kill(): Promise<void>;
}

/**
 * Waits until a daemon just started serves: `spec.ready` polled every `pollMs` on `clock`, for up to
 * `spec.readyTimeoutMs`. A start that fails leaves nothing behind (the process killed, its PID file removed) and
 * throws: exitedError when it ended first (checked before each `ready`, so a socket a predecessor left cannot
 * pass for this one), the check's own error when `ready` threw (its tool is missing, say), notReadyError at
 * the deadline.
 */
export async function awaitDaemonReady(
  spec: ManagedDaemonSpec,
  daemon: StartedDaemon,
  o: { readonly clock: Clock; readonly pollMs: number; readonly logTail: () => Promise<string> },
): Promise<void> {
  const timeoutMs = spec.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
  const deadline = o.clock.now() + timeoutMs;
  const abandon = async (kill: boolean) => {
    if (kill) await daemon.kill();
    rmSync(daemonPidFile(spec), { force: true });
  };
  for (;;) {
    const ended = daemon.ended();
    if (ended) {
      await abandon(false);
      throw exitedError(spec, ended, await o.logTail());
    }
    let ready: boolean;
    try {
      ready = spec.ready ? await spec.ready() : true;
    } catch (err) {
      await abandon(true);
      throw err instanceof Error ? err : new Error(String(err));
    }
    if (ready) {
      if (!daemon.ended()) return;
      continue;
    }
    if (o.clock.now() >= deadline) {
      await abandon(true);
      throw notReadyError(spec, timeoutMs, await o.logTail());
    }
    await o.clock.sleep(o.pollMs);
  }
}
