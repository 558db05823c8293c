/**
 * SpawnRunner: a ProcessRunner over plain `node:child_process`, for short-lived processes whose own start-up
 * time matters: the CNI plugin, which the container runtime starts once per pod ADD/DEL. execa costs ~17 ms to
 * load (bundled; far more unbundled) and a few ms of stream plumbing per call; this costs neither
 * (docs/adr/0006-cni-latency.md has the measurements). It classifies outcomes exactly as ExecaRunner does,
 * through the same function (./process-errors.ts), so callers cannot tell the two apart:
 *   - not installed (ENOENT)                     -> PROCESS_MISSING naming the Debian package;
 *   - non-zero exit, signal or timeout, rejected -> PROCESS_FAILED with stderr's first line.
 * Same option semantics as ExecaRunner: `env` is added to this process's environment, stdout/stderr are
 * decoded as UTF-8 and kept whole (final newline included), a timeout sends SIGTERM (SIGKILL 5 s later).
 * Arguments are an argv array; no shell is involved.
 *
 * `blocking: true` runs each program to completion with spawnSync, for a one-shot process that has nothing else
 * to do meanwhile: the first asynchronous spawn of a Node process costs ~6 ms here (pipes become stream
 * objects), a synchronous one ~3 ms, and later ones ~2.4 vs ~2 ms. The results and errors are the same; a
 * timeout kills with SIGKILL at once (spawnSync cannot escalate). `spawn` (long-lived children) is unaffected.
 */
import { type ChildProcess, spawn, spawnSync, type SpawnSyncReturns } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { processMissingError, type RunOutcome, settleRun } from "./process-errors.js";
import type { ChildHandle, ProcessRunner, RunOptions, RunResult, SpawnOptions } from "./process.js";

/** After SIGTERM on timeout, how long a process gets before SIGKILL (execa's default too). */
const FORCE_KILL_AFTER_MS = 5_000;

/** Output a blocking run may collect (spawnSync's default is 1 MiB; `ip -json` of a big table is more). */
const MAX_OUTPUT_BYTES = 512 * 1024 * 1024;

export interface SpawnRunnerOptions {
  /** Run programs with spawnSync (see the top of this file). Default false. */
  readonly blocking?: boolean;
}

export class SpawnRunner implements ProcessRunner {
  private readonly blocking: boolean;

  constructor(opts: SpawnRunnerOptions = {}) {
    this.blocking = opts.blocking === true;
  }

  run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    if (this.blocking) {
      try {
        return Promise.resolve(settleRun(file, args, this.runBlocking(file, args, options), options));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return new Promise<RunOutcome>((resolve) => {
      // Node throws at once for arguments it cannot pass (a NUL byte): the promise rejects with that error.
      const child: ChildProcess = spawn(file, args, {
        stdio: [options.input !== undefined ? "pipe" : "ignore", "pipe", "pipe"],
        ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
        ...(options.cwd ? { cwd: options.cwd } : {}),
      });
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

  private runBlocking(file: string, args: readonly string[], options: RunOptions): RunOutcome {
    // Node throws at once for arguments it cannot pass (a NUL byte): a caller's bug, rejected as is (as execa does).
    const r: SpawnSyncReturns<string> = spawnSync(file, args, {
      ...(options.input !== undefined ? { input: options.input, stdio: ["pipe", "pipe", "pipe"] as const } : { stdio: ["ignore", "pipe", "pipe"] as const }),
      ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
      ...(options.cwd ? { cwd: options.cwd } : {}),
      ...(options.timeoutMs ? { timeout: options.timeoutMs, killSignal: "SIGKILL" as const } : {}),
      maxBuffer: MAX_OUTPUT_BYTES,
      encoding: "utf8",
    });
    const err = r.error as NodeJS.ErrnoException | undefined;
    // EPIPE: the program exited without reading all of its input; its exit status says what happened.
    const startError = err && err.code !== "EPIPE" && err.code !== "ETIMEDOUT" ? err : undefined;
    return {
      ...(startError?.code ? { spawnErrorCode: startError.code } : {}),
      ...(startError ? { spawnErrorMessage: startError.message } : {}),
      ...(r.status !== null ? { exitCode: r.status } : {}),
      ...(r.signal ? { signal: r.signal } : {}),
      timedOut: err?.code === "ETIMEDOUT",
      stdout: r.stdout ?? "",
      stderr: r.stderr ?? "",
    };
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
        detached: options.detached ?? false,
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
    if (options.detached) child.unref();

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
