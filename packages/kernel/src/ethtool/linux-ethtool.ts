/**
 * EthtoolPort through the ethtool program (argv only, never a shell).
 *
 * Texts seen with ethtool 6.1 on kernel 6.x (netlink interface), classified by TOOL_RULES before the shared ones:
 *   - unknown device:   "netlink error: no device matches name" / "No such device", exit 1 or 92 -> NOT_FOUND;
 *   - unknown feature:  "netlink error: bit name not found", exit 92 -> INVALID (the shared rules would read
 *     "not found" as NOT_FOUND and the following "Operation not supported" as UNSUPPORTED);
 *   - a fixed feature:  "Could not change any device features", exit 1, after an "Actual changes:" list on
 *     stdout that shows `[requested on]` -> UNSUPPORTED.
 * Turning one feature off can switch dependent ones off too (`[not requested]` lines); that is the driver's
 * business and not reported.
 */
import type { ProcessRunner } from "../process.js";
import { type ToolErrorRules, toolError } from "../tool-errors.js";
import type { EthtoolPort, NicFeature } from "./port.js";

const TOOL_RULES: ToolErrorRules = [
  [/bit name not found/i, "KERNEL_INVALID"],
  [/no device matches name|No such device/i, "KERNEL_NOT_FOUND"],
  [/Could not change any device features/i, "KERNEL_UNSUPPORTED"],
];

/** Parses `ethtool --show-features` output: one `\tname: on|off [fixed]` line per feature. */
export function parseEthtoolFeatures(text: string): Map<string, NicFeature> {
  const out = new Map<string, NicFeature>();
  for (const line of text.split("\n")) {
    const m = /^\s*([a-z0-9-]+):\s+(on|off)\b(.*)$/.exec(line);
    if (m) out.set(m[1]!, { enabled: m[2] === "on", fixed: /\[fixed\]/.test(m[3]!) });
  }
  return out;
}

/** EthtoolPort over the ProcessRunner; `ethtool` is resolved through PATH (or pass another program name). */
export class LinuxEthtool implements EthtoolPort {
  constructor(
    private readonly runner: ProcessRunner,
    private readonly program = "ethtool",
  ) {}

  async features(dev: string): Promise<ReadonlyMap<string, NicFeature>> {
    const args = ["--show-features", dev];
    const r = await this.runner.run(this.program, args, { reject: false });
    if (r.exitCode !== 0) throw toolError(this.program, args, r, { rules: TOOL_RULES });
    return parseEthtoolFeatures(r.stdout);
  }

  async setFeature(dev: string, feature: string, enabled: boolean): Promise<void> {
    const args = ["--features", dev, feature, enabled ? "on" : "off"];
    const r = await this.runner.run(this.program, args, { reject: false });
    if (r.exitCode !== 0) throw toolError(this.program, args, r, { rules: TOOL_RULES });
  }
}
