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
import { describeCommand, firstLine, processMissingError } from "./tool-errors.js";

export { processMissingError };

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
