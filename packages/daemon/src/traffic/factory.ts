/**
 * Mode selection (flannel.md §1.2 step 11): the agent builds the TrafficRules of the mode in use and first
 * cleans up the other mode, so that switching `EnableNFTables` on or off leaves no rules of the old mode
 * behind — including the filter-table WEFT-FWD chain, which Flannel's cleanup misses (flannel.md §11.9).
 */
import type { ProcessRunner } from "@weft/kernel";
import { IptablesTrafficRules } from "./iptables.js";
import type { TrafficMode, TrafficRules, TrafficRulesOptions } from "./model.js";
import { NftablesTrafficRules } from "./nftables.js";

/** The TrafficRules for `mode`. */
export function createTrafficRules(mode: TrafficMode, runner: ProcessRunner, options: TrafficRulesOptions = {}): TrafficRules {
  return mode === "nftables" ? new NftablesTrafficRules(runner, options) : new IptablesTrafficRules(runner, options);
}

/**
 * Removes everything Weft owns in the mode that is NOT `mode`: in nftables mode the iptables chains
 * (nat WEFT-POSTRTG, filter WEFT-FWD, their jumps, both families); in iptables mode the nft tables
 * `ip weft-ipv4` and `ip6 weft-ipv6`. Reads first and writes only when something is there; a missing tool
 * of the other mode is not an error (nothing can be there). What was removed goes to `options.logger`.
 */
export async function cleanupOtherMode(mode: TrafficMode, runner: ProcessRunner, options: TrafficRulesOptions = {}): Promise<void> {
  // The other mode's own info line would say "rewritten"; say "removed" instead.
  const { logger, ...quiet } = options;
  const other = mode === "nftables" ? new IptablesTrafficRules(runner, quiet) : new NftablesTrafficRules(runner, quiet);
  const removed = await other.removeAll();
  if (removed.length > 0) logger?.info(`removed the ${mode === "nftables" ? "iptables" : "nftables"} traffic rules of the mode not in use: ${removed.join(", ")}`);
}
