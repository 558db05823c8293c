/**
 * Running iptables-save/-restore and nft through the ProcessRunner (argv only, never a shell), with failures
 * classified by the one tool-error classification (../tool-errors.ts): a missing program is PROCESS_MISSING
 * naming the Debian package (also behind `ip netns exec`); a failed restore/transaction is a KernelError whose
 * message carries the tool's first error line and, when the tool names a payload line ("line 7 failed",
 * "/dev/stdin:7:1-4: Error"), that line itself.
 */
import type { WeftError } from "@weft/core";
import type { ProcessRunner, RunResult } from "../process.js";
import { type ToolErrorRules, isToolMissing, processMissingError, toolError } from "../tool-errors.js";

/** netfilter texts the shared rules would misread. */
const RULES: ToolErrorRules = [
  // iptables-restore: "Another app is currently holding the xtables lock" (legacy backend, --wait ran out).
  [/holding the xtables lock/i, "KERNEL_TRANSIENT"],
  // nft/iptables-nft: a table/chain changed between read and write ("Device or resource busy" on delete).
  [/Could not process rule: Device or resource busy/i, "KERNEL_TRANSIENT"],
  // iptables-restore: a `-D` of a rule that is no longer there (someone changed the table after the read).
  [/does a matching rule exist/i, "KERNEL_NOT_FOUND"],
  [/Error: syntax error|Bad argument|unknown option|Couldn't load target|Couldn't load match/i, "KERNEL_INVALID"],
];

export class NetfilterTool {
  constructor(
    private readonly runner: ProcessRunner,
    private readonly timeoutMs: number,
  ) {}

  /** Runs `file args` with `input` on stdin; resolves whatever the exit code, except for a missing program. */
  async run(file: string, args: readonly string[], input?: string): Promise<RunResult> {
    const r = await this.runner.run(file, args, {
      ...(input !== undefined ? { input } : {}),
      timeoutMs: this.timeoutMs,
      reject: false,
    });
    if (isToolMissing(r)) throw processMissingError(file, r);
    return r;
  }

  /** Like run, but a non-zero exit throws the classified error. */
  async check(file: string, args: readonly string[], input?: string): Promise<RunResult> {
    const r = await this.run(file, args, input);
    if (r.exitCode !== 0) throw netfilterError(file, args, r, input);
    return r;
  }
}

/** The error for a failed run, naming the payload line the tool rejected when it says which. */
export function netfilterError(file: string, args: readonly string[], r: RunResult, input?: string): WeftError {
  let suffix = "";
  if (input !== undefined) {
    const m = /line (\d+) failed/.exec(r.stderr) ?? /\/dev\/stdin:(\d+):/.exec(r.stderr) ?? /^[^:\n]*:(\d+):\d+(?:-\d+)?: Error/m.exec(r.stderr);
    const n = m ? Number(m[1]) : NaN;
    const line = Number.isInteger(n) ? input.split("\n")[n - 1] : undefined;
    if (line !== undefined) suffix = ` (payload line ${n}: ${line.trim()})`;
  }
  return toolError(file, args, r, { rules: RULES, suffix });
}
