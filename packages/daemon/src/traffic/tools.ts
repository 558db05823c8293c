/**
 * Running iptables-save/-restore and nft through the ProcessRunner port (never a shell), with the two
 * failure shapes turned into one clear line each:
 *   - the program is missing: WeftError PROCESS_MISSING naming the Debian package. ExecaRunner reports this
 *     itself; when the runner goes through `ip netns exec` (tests, several agents per host), the ENOENT shows
 *     up as ip's own message and exit code 255 instead, so it is recognised here too;
 *   - a restore/transaction fails: WeftError PROCESS_FAILED with the tool's first stderr line and, when the
 *     tool names a payload line ("line 7 failed", "/dev/stdin:7:1-4: Error"), that line itself.
 */
import { WeftError } from "@weft/core";
import { type ProcessRunner, type RunResult, processMissingError } from "@weft/kernel";

export class TrafficTool {
  constructor(
    private readonly runner: ProcessRunner,
    private readonly timeoutMs: number,
  ) {}

  /** Runs `file args` with `input` on stdin; resolves with the result whatever the exit code. */
  async run(file: string, args: readonly string[], input?: string): Promise<RunResult> {
    const r = await this.runner.run(file, args, {
      ...(input !== undefined ? { input } : {}),
      timeoutMs: this.timeoutMs,
      reject: false,
    });
    // `ip netns exec` execs the program itself; when that fails it prints this and exits 255.
    if (r.exitCode !== 0 && /exec of "[^"]*" failed: No such file or directory/.test(r.stderr)) throw processMissingError(file);
    if (r.exitCode === 127 && /not found|No such file/i.test(r.stderr)) throw processMissingError(file);
    return r;
  }

  /** Like run, but a non-zero exit throws PROCESS_FAILED naming the command, the stderr and the payload line. */
  async check(file: string, args: readonly string[], input?: string): Promise<RunResult> {
    const r = await this.run(file, args, input);
    if (r.exitCode !== 0) throw failure(file, args, r, input);
    return r;
  }
}

export function failure(file: string, args: readonly string[], r: RunResult, input?: string): WeftError {
  const detail = firstLine(r.stderr) || firstLine(r.stdout) || `exit code ${r.exitCode}`;
  let where = "";
  if (input !== undefined) {
    const m = /line (\d+) failed/.exec(r.stderr) ?? /\/dev\/stdin:(\d+):/.exec(r.stderr) ?? /^[^:\n]*:(\d+):\d+(?:-\d+)?: Error/m.exec(r.stderr);
    const n = m ? Number(m[1]) : NaN;
    const line = Number.isInteger(n) ? input.split("\n")[n - 1] : undefined;
    if (line !== undefined) where = ` (payload line ${n}: ${line.trim()})`;
  }
  return new WeftError("PROCESS_FAILED", `${[file, ...args].join(" ")}: ${detail}${where}`, { cause: r });
}

function firstLine(text: string): string {
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (t !== "") return t;
  }
  return "";
}

/**
 * Runs calls one after another: an ensure overlapping a cleanup (a resync timer firing during shutdown)
 * would otherwise plan against a state the other is changing, and fail its restore/transaction.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const next = this.tail.then(task, task);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
