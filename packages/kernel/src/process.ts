/**
 * ProcessRunner port: the only way Weft starts programs (wg, nft, iptables-restore, swanctl, ethtool, etcd in
 * tests). Every argument is its own argv element; nothing goes through a shell.
 */
import { createToken } from "@weft/core";

export interface RunOptions {
  readonly input?: string;
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  readonly timeoutMs?: number;
  /** Resolve even when the exit code is non-zero (the caller inspects `exitCode`). */
  readonly reject?: boolean;
}

export interface RunResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface SpawnOptions {
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  /** Files to send stdout/stderr to (appended); otherwise they are ignored. */
  readonly stdoutFile?: string;
  readonly stderrFile?: string;
}

/** A long-lived child process this runner started. */
export interface ChildHandle {
  readonly pid: number;
  /** Resolves with the exit code (or signal name) when the process ends. */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  /** Sends a signal to this process only (by PID, never by name). */
  kill(signal?: NodeJS.Signals): void;
}

export interface ProcessRunner {
  run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult>;
  spawn(file: string, args: readonly string[], options?: SpawnOptions): ChildHandle;
}

export const PROCESS_RUNNER = createToken<ProcessRunner>("weft.process-runner");
