/**
 * What every ManagedDaemonPort implementation (the Linux adapter and the fake) agrees on: where a daemon's
 * files are, how its log is cut down for an error message, how failed starts back off, and how the errors
 * read. Kept in one place so the fake cannot drift from the adapter.
 */
import { join } from "node:path";
import type { Backoff } from "@weft/core";
import { KernelError } from "../port.js";
import type { ManagedDaemonRef, ManagedDaemonSpec } from "./port.js";

/** `<runDir>/<name>.pid`: the PID of the daemon's process, one line. */
export const daemonPidFile = (spec: Pick<ManagedDaemonSpec, "name" | "runDir">): string => join(spec.runDir, `${spec.name}.pid`);
/** `<runDir>/<name>.log`: the daemon's stdout and stderr, appended. */
export const daemonLogFile = (spec: Pick<ManagedDaemonSpec, "name" | "runDir">): string => join(spec.runDir, `${spec.name}.log`);

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
