/**
 * Mode selection (flannel.md §1.2 step 11): the agent builds the TrafficRules of the mode in use and first
 * cleans up the other mode, so that switching `EnableNFTables` on or off leaves no rules of the old mode
 * behind — including the filter-table WEFT-FWD chain, which Flannel's cleanup misses (flannel.md §11.9).
 *
 * The netfilter ports come from the composition root (it holds the process runner): it builds them with the
 * kernel's `linuxNetfilter(mode, runner, trafficNetfilterOptions(options))`.
 */
import type { LinuxNetfilterOptions, NetfilterPort } from "@weft/kernel";
import { iptablesNetfilterOptions } from "./iptables.js";
import type { TrafficMode, TrafficRules, TrafficRulesOptions } from "./model.js";
import { nftablesNetfilterOptions } from "./nftables.js";
import { NetfilterTrafficRules } from "./rules.js";

/** The kernel adapters' options for Weft's names, with the programs and timeouts of `options`. */
export function trafficNetfilterOptions(options: TrafficRulesOptions = {}): LinuxNetfilterOptions {
  return { iptables: iptablesNetfilterOptions(options), nftables: nftablesNetfilterOptions(options) };
}

/** The TrafficRules of the port's mode. */
export function createTrafficRules(port: NetfilterPort, options: TrafficRulesOptions = {}): TrafficRules {
  return new NetfilterTrafficRules(port, options);
}

/**
 * Removes everything Weft owns in the mode that is NOT `mode`: in nftables mode the iptables chains
 * (nat WEFT-POSTRTG, filter WEFT-FWD, their jumps, both families); in iptables mode the nft tables
 * `ip weft-ipv4` and `ip6 weft-ipv6`. Reads first and writes only when something is there; a missing tool
 * of the other mode is not an error (nothing can be there). `netfilter` gives the port of a mode. What was
 * removed goes to `options.logger`.
 */
export async function cleanupOtherMode(mode: TrafficMode, netfilter: (mode: TrafficMode) => NetfilterPort, options: TrafficRulesOptions = {}): Promise<void> {
  const other = mode === "nftables" ? "iptables" : "nftables";
  const removed = await netfilter(other).remove();
  if (removed.length > 0) options.logger?.info(`removed the ${other} traffic rules of the mode not in use: ${removed.join(", ")}`);
}
