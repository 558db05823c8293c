/**
 * ProcessRunner port: the only way Weft starts programs (wg, nft, iptables-restore, swanctl, ethtool, etcd in
 * tests). Every argument is its own argv element; nothing goes through a shell.
 */
import { createToken } from "@weft/core";

/** Options of ProcessRunner.run. */
export interface RunOptions {
  readonly input?: string;
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  readonly timeoutMs?: number;
  /** Resolve even when the exit code is non-zero (the caller inspects `exitCode`). */
  readonly reject?: boolean;
}

/** How a program that ran to completion ended, and what it printed. */
export interface RunResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of ProcessRunner.spawn. */
export interface SpawnOptions {
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  /** Files to send stdout/stderr to (appended); otherwise they are ignored. */
  readonly stdoutFile?: string;
  readonly stderrFile?: string;
  /**
   * Start the program in its own session (process group) and let the parent exit without waiting for it or
   * ending it: it outlives the agent (wireguard-go keeps a WireGuard device up across an agent restart). Its
   * stdio should go to files then. Default false.
   */
  readonly detached?: boolean;
}

/** A long-lived child process this runner started. */
export interface ChildHandle {
  readonly pid: number;
  /** Resolves with the exit code (or signal name) when the process ends. */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  /** Sends a signal to this process only (by PID, never by name). */
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Starts programs: the only way Weft code outside @weft/kernel may run one (no execa, no node:child_process).
 * Each argument is its own argv element; nothing goes through a shell.
 */
export interface ProcessRunner {
  /**
   * Runs `file` with `args` to completion. Rejects with WeftError PROCESS_MISSING when the program is not
   * installed (even with `reject: false`), and with PROCESS_FAILED, naming the command, when it exits non-zero,
   * is killed or times out (unless `reject: false`).
   */
  run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult>;
  /** Starts a long-lived process and returns at once; stop it with ChildHandle.kill. */
  spawn(file: string, args: readonly string[], options?: SpawnOptions): ChildHandle;
}

/** The agent's ProcessRunner. */
export const PROCESS_RUNNER = createToken<ProcessRunner>("weft.process-runner");
