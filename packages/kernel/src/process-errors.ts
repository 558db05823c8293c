/**
 * How a finished program run becomes a RunResult or an error: the one classification both ProcessRunner
 * implementations (ExecaRunner, SpawnRunner) apply, so a caller sees the same codes and messages whichever
 * runner started the program:
 *   - the program is not installed (ENOENT on spawn) -> WeftError PROCESS_MISSING, naming the Debian package
 *     (even with `reject: false`: there is no exit code to inspect);
 *   - it ran and failed while the caller rejects     -> WeftError PROCESS_FAILED, with the first stderr line.
 */
import { WeftError } from "@weft/core";
import type { RunOptions, RunResult } from "./process.js";

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

/** What a runner observed about one run, in runner-neutral terms. */
export interface RunOutcome {
  /** errno code of a failed start (ENOENT: not installed; EACCES: not executable), when it never ran. */
  readonly spawnErrorCode?: string;
  /** The runner's own words for a failed start or another failure without an exit code. */
  readonly spawnErrorMessage?: string;
  /** Undefined when the process died of a signal or never started. */
  readonly exitCode?: number;
  readonly signal?: string;
  readonly timedOut: boolean;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Turns an outcome into the caller's RunResult, or throws PROCESS_MISSING / PROCESS_FAILED. `cause` is
 * attached to the error (the runner's raw result, for debugging).
 */
export function settleRun(file: string, args: readonly string[], outcome: RunOutcome, options: RunOptions, cause?: unknown): RunResult {
  if (outcome.spawnErrorCode === "ENOENT" && outcome.exitCode === undefined) throw processMissingError(file, cause);
  // No exit code: killed by a signal (128, as a shell reports it) or never started (1).
  const exitCode = outcome.exitCode ?? (outcome.signal ? 128 : 1);
  const failed = exitCode !== 0 || outcome.timedOut;
  if (failed && options.reject !== false) {
    let why: string;
    if (outcome.timedOut) why = `timed out after ${options.timeoutMs} ms`;
    else if (outcome.signal) why = `killed by ${outcome.signal}`;
    else if (outcome.exitCode === undefined) why = outcome.spawnErrorMessage || "could not be started";
    else why = `exit code ${exitCode}`;
    const detail = firstLine(outcome.stderr);
    throw new WeftError("PROCESS_FAILED", `${describeCommand(file, args)}: ${why}${detail ? `: ${detail}` : ""}`, { cause });
  }
  return { exitCode, stdout: outcome.stdout, stderr: outcome.stderr };
}
