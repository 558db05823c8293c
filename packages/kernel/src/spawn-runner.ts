/**
 * SpawnRunner: a ProcessRunner over plain `node:child_process`, for short-lived processes whose own start-up
 * time matters: the CNI plugin, which the container runtime starts once per pod ADD/DEL. execa costs ~17 ms to
 * load (bundled; ~70 ms unbundled) and a few ms of stream plumbing per call; this costs neither
 * (docs/adr/0006-cni-latency.md has the measurements). It classifies outcomes exactly as ExecaRunner does,
 * through the same function (./process-errors.ts), so callers cannot tell the two apart:
 *   - not installed (ENOENT)                     -> PROCESS_MISSING naming the Debian package;
 *   - non-zero exit, signal or timeout, rejected -> PROCESS_FAILED with stderr's first line.
 * Same option semantics as ExecaRunner: `env` is added to this process's environment, stdout/stderr are
 * decoded as UTF-8 and kept whole (final newline included), a timeout sends SIGTERM (SIGKILL 5 s later).
 * Arguments are an argv array; no shell is involved.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { processMissingError, type RunOutcome, settleRun } from "./process-errors.js";
import type { ChildHandle, ProcessRunner, RunOptions, RunResult, SpawnOptions } from "./process.js";

/** After SIGTERM on timeout, how long a process gets before SIGKILL (execa's default too). */
const FORCE_KILL_AFTER_MS = 5_000;

export class SpawnRunner implements ProcessRunner {
  run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    return new Promise<RunOutcome>((resolve) => {
      let child: ChildProcess;
      try {
        child = spawn(file, args, {
          stdio: [options.input !== undefined ? "pipe" : "ignore", "pipe", "pipe"],
          ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
          ...(options.cwd ? { cwd: options.cwd } : {}),
        });
      } catch (err) {
        // Synchronous refusals (an argument with a NUL byte, a bad cwd type): it never ran.
        const e = err as NodeJS.ErrnoException;
        resolve({ ...(e.code ? { spawnErrorCode: e.code } : {}), spawnErrorMessage: e.message, timedOut: false, stdout: "", stderr: "" });
        return;
      }
      let stdout = "";
      let stderr = "";
      let timedOut = false;
      let spawnError: NodeJS.ErrnoException | undefined;
      let settled = false;
      const timers: NodeJS.Timeout[] = [];
      const finish = (exitCode: number | null, signal: NodeJS.Signals | null) => {
        if (settled) return;
        settled = true;
        for (const t of timers) clearTimeout(t);
        resolve({
          ...(spawnError?.code ? { spawnErrorCode: spawnError.code } : {}),
          ...(spawnError ? { spawnErrorMessage: spawnError.message } : {}),
          ...(exitCode !== null ? { exitCode } : {}),
          ...(signal ? { signal } : {}),
          timedOut,
          stdout,
          stderr,
        });
      };
      child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
      child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      child.on("error", (err: NodeJS.ErrnoException) => {
        spawnError ??= err;
        // A failed start has no pid and may never emit 'close'; anything else is followed by 'close'.
        if (child.pid === undefined) finish(null, null);
      });
      // 'close', not 'exit': the output pipes are drained by then.
      child.on("close", (code, signal) => finish(code, signal));
      if (options.input !== undefined) {
        // A program that exits without reading its stdin makes the write fail with EPIPE: not our failure,
        // its exit code says what happened.
        child.stdin!.on("error", () => undefined);
        child.stdin!.end(options.input);
      }
      if (options.timeoutMs) {
        timers.push(
          setTimeout(() => {
            timedOut = true;
            child.kill("SIGTERM");
            timers.push(setTimeout(() => child.kill("SIGKILL"), FORCE_KILL_AFTER_MS).unref());
          }, options.timeoutMs).unref(),
        );
      }
    }).then((outcome) => settleRun(file, args, outcome, options, outcome));
  }

  spawn(file: string, args: readonly string[], options: SpawnOptions = {}): ChildHandle {
    // Output goes straight to files opened in append mode; the child holds its own copy of each fd, so the
    // parent closes its copies right after the spawn.
    const fds: number[] = [];
    const sink = (path: string | undefined): number | "ignore" => {
      if (!path) return "ignore";
      const fd = openSync(path, "a");
      fds.push(fd);
      return fd;
    };
    let child: ChildProcess;
    try {
      const stdout = sink(options.stdoutFile);
      const stderr = options.stderrFile === options.stdoutFile ? stdout : sink(options.stderrFile);
      child = spawn(file, args, {
        stdio: ["ignore", stdout, stderr],
        ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
        ...(options.cwd ? { cwd: options.cwd } : {}),
        detached: false,
      });
    } finally {
      for (const fd of fds) closeSync(fd);
    }

    const pid = child.pid;
    if (pid === undefined) {
      // Node reports a failed spawn asynchronously ('error'); the missing pid tells us now. Swallow the event.
      child.on("error", () => undefined);
      throw processMissingError(file);
    }

    let done = false;
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
      child.on("exit", (code, signal) => {
        done = true;
        resolve({ code, signal });
      });
      // An error after a successful start (e.g. a failed kill) does not end the process: keep waiting.
      child.on("error", () => undefined);
    });

    return {
      pid,
      exited,
      kill(signal: NodeJS.Signals = "SIGTERM"): void {
        // Once reaped, the PID may belong to someone else: never signal it again.
        if (done) return;
        try {
          process.kill(pid, signal);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
        }
      },
    };
  }
}
