/**
 * ExecaRunner: the ProcessRunner implementation backed by execa 9, used by the agent and the tools. The CNI
 * plugin, which starts once per pod, uses SpawnRunner (plain node:child_process, no execa to load) instead.
 * Both classify outcomes through ./process-errors.ts, once:
 *   - the program is not installed (ENOENT)      -> WeftError PROCESS_MISSING, naming the Debian package;
 *   - it ran and failed while the caller rejects -> WeftError PROCESS_FAILED, with the first stderr line.
 * Arguments are always an argv array; no shell is ever involved.
 */
import { closeSync, openSync } from "node:fs";
import { execa, execaSync } from "execa";
import { processMissingError, settleRun } from "./process-errors.js";
import type { ChildHandle, ProcessRunner, RunOptions, RunResult, SpawnOptions } from "./process.js";

export { processMissingError } from "./process-errors.js";

export class ExecaRunner implements ProcessRunner {
  async run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const result = await execa(file, args, {
      ...(options.input !== undefined ? { input: options.input } : { stdin: "ignore" as const }),
      ...(options.env ? { env: { ...options.env } } : {}),
      ...(options.cwd ? { cwd: options.cwd } : {}),
      ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
      reject: false,
      stripFinalNewline: false,
      encoding: "utf8",
    });
    return settleRun(
      file,
      args,
      {
        ...(result.code ? { spawnErrorCode: result.code } : {}),
        ...(result.exitCode === undefined && result.shortMessage ? { spawnErrorMessage: result.shortMessage } : {}),
        ...(result.exitCode !== undefined ? { exitCode: result.exitCode } : {}),
        ...(result.signal ? { signal: result.signal } : {}),
        timedOut: result.timedOut,
        stdout: typeof result.stdout === "string" ? result.stdout : "",
        stderr: typeof result.stderr === "string" ? result.stderr : "",
      },
      options,
      result,
    );
  }

  /**
   * Synchronous variant of `run` with `reject: false`, for last-resort teardown inside a process 'exit'
   * handler, where nothing asynchronous can run any more. Not part of the ProcessRunner port: use `run`
   * everywhere else. Never throws; a missing program yields exit code 127.
   */
  runSync(file: string, args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): RunResult {
    try {
      const r = execaSync(file, args, {
        ...(options.input !== undefined ? { input: options.input } : { stdin: "ignore" as const }),
        reject: false,
        stripFinalNewline: false,
        encoding: "utf8",
        ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
      });
      const exitCode = r.code === "ENOENT" && r.exitCode === undefined ? 127 : (r.exitCode ?? 1);
      return {
        exitCode,
        stdout: typeof r.stdout === "string" ? r.stdout : "",
        stderr: typeof r.stderr === "string" ? r.stderr : "",
      };
    } catch (err) {
      return { exitCode: 1, stdout: "", stderr: String(err) };
    }
  }

  spawn(file: string, args: readonly string[], options: SpawnOptions = {}): ChildHandle {
    // Output goes straight to files opened in append mode; the child holds its own copy of each fd, so the
    // parent closes its copies right after the spawn.
    const fds: number[] = [];
    // execa's typings list only fds 3..9 for stdout/stderr, but any open fd is passed to the child as is.
    type Fd = 3;
    const sink = (path: string | undefined): Fd | "ignore" => {
      if (!path) return "ignore";
      const fd = openSync(path, "a");
      fds.push(fd);
      return fd as Fd;
    };
    const subprocess = (() => {
      try {
        const stdout = sink(options.stdoutFile);
        const stderr = options.stderrFile === options.stdoutFile ? stdout : sink(options.stderrFile);
        return execa(file, args, {
          ...(options.env ? { env: { ...options.env } } : {}),
          ...(options.cwd ? { cwd: options.cwd } : {}),
          stdin: "ignore",
          stdout,
          stderr,
          // Detached: its own session, and execa's cleanup (kill on our exit) does not apply.
          detached: options.detached ?? false,
          buffer: false,
          reject: false,
        });
      } finally {
        for (const fd of fds) closeSync(fd);
      }
    })();

    const pid = subprocess.pid;
    if (pid === undefined) {
      // Node reports a failed spawn asynchronously; the missing pid tells us now. Swallow the later result.
      subprocess.catch(() => undefined);
      throw processMissingError(file);
    }
    if (options.detached) subprocess.unref();

    let done = false;
    const exited = subprocess.then(
      (r) => {
        done = true;
        return { code: r.exitCode ?? null, signal: r.signal ?? null };
      },
      (err: unknown) => {
        done = true;
        const e = err as { exitCode?: number; signal?: string };
        return { code: e.exitCode ?? null, signal: e.signal ?? null };
      },
    );

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
