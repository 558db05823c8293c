/**
 * ExecaRunner: the ProcessRunner implementation backed by execa 9. This file and the kernel adapter are the
 * only places in Weft that start programs, so both failure classes are decided here, once:
 *   - the program is not installed (ENOENT)      -> WeftError PROCESS_MISSING, naming the Debian package;
 *   - it ran and failed while the caller rejects -> WeftError PROCESS_FAILED, with the first stderr line.
 * Arguments are always an argv array; no shell is ever involved.
 */
import { closeSync, openSync } from "node:fs";
import { execa, execaSync } from "execa";
import { WeftError } from "@weft/core";
import type { ChildHandle, ProcessRunner, RunOptions, RunResult, SpawnOptions } from "./process.js";

/** Debian package that ships each program we are known to start (for PROCESS_MISSING messages). */
const DEBIAN_PACKAGE: Readonly<Record<string, string>> = {
  ip: "iproute2",
  bridge: "iproute2",
  tc: "iproute2",
  ss: "iproute2",
  etcd: "etcd-server",
  etcdctl: "etcd-client",
  wg: "wireguard-tools",
  "wireguard-go": "wireguard-go",
  swanctl: "strongswan-swanctl",
  charon: "strongswan-charon",
  nft: "nftables",
  iptables: "iptables",
  "iptables-restore": "iptables",
  "iptables-save": "iptables",
  ip6tables: "iptables",
  "ip6tables-restore": "iptables",
  ping: "iputils-ping",
  iperf3: "iperf3",
  ethtool: "ethtool",
  sysctl: "procps",
  conntrack: "conntrack",
  podman: "podman",
  nsenter: "util-linux",
  unshare: "util-linux",
};

function baseName(file: string): string {
  const slash = file.lastIndexOf("/");
  return slash >= 0 ? file.slice(slash + 1) : file;
}

/** The PROCESS_MISSING error for `file`, with the install hint. */
export function processMissingError(file: string, cause?: unknown): WeftError {
  const pkg = DEBIAN_PACKAGE[baseName(file)];
  const fix = pkg
    ? `install it: apt-get install -y --no-install-recommends ${pkg}`
    : `install the Debian package that provides "${baseName(file)}" or fix PATH`;
  return new WeftError("PROCESS_MISSING", `program "${file}" not found on PATH; ${fix}`, { cause });
}

function firstLine(text: string): string {
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (t !== "") return t;
  }
  return "";
}

function describeCommand(file: string, args: readonly string[]): string {
  const shown = [file, ...args].join(" ");
  return shown.length > 200 ? `${shown.slice(0, 197)}...` : shown;
}

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
    if (result.code === "ENOENT" && result.exitCode === undefined) throw processMissingError(file, result);

    const stdout = typeof result.stdout === "string" ? result.stdout : "";
    const stderr = typeof result.stderr === "string" ? result.stderr : "";
    // exitCode is undefined when the process died of a signal or never started; report that as a failure.
    const exitCode = result.exitCode ?? (result.signal ? 128 : 1);
    const failed = result.failed || exitCode !== 0;
    if (failed && options.reject !== false) {
      let why: string;
      if (result.timedOut) why = `timed out after ${options.timeoutMs} ms`;
      else if (result.signal) why = `killed by ${result.signal}`;
      else if (result.exitCode === undefined) why = result.shortMessage || "could not be started";
      else why = `exit code ${exitCode}`;
      const detail = firstLine(stderr);
      throw new WeftError(
        "PROCESS_FAILED",
        `${describeCommand(file, args)}: ${why}${detail ? `: ${detail}` : ""}`,
        { cause: result },
      );
    }
    return { exitCode, stdout, stderr };
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
          detached: false,
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
