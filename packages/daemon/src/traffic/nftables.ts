/**
 * Traffic rules in nftables mode (Flannel's `EnableNFTables`, flannel.md §6.2): Weft's table and chain names as
 * the kernel's NftablesNetfilter wants them (nft; how the tables are read, compared and rewritten in one
 * transaction is documented there), and the TrafficRules of this mode.
 *
 *   ip weft-ipv4 / ip6 weft-ipv6, each with
 *     postrtg   type nat hook postrouting priority srcnat; policy accept;   (masquerade)
 *     forward   type filter hook forward priority filter; policy accept;    (forward accept)
 */
import { type Family, WeftError } from "@weft/core";
import { type NetfilterPort, type NftTableDesired, type NftablesNetfilterOptions, nftTableFor } from "@weft/kernel";
import {
  DEFAULT_TRAFFIC_TOOLS,
  type FamilyTraffic,
  NFT_FWD_CHAIN,
  NFT_MASQ_CHAIN,
  NFT_TABLE,
  type TrafficPlan,
  type TrafficRulesOptions,
  forwardRules,
  masqueradeRules,
} from "./model.js";
import { NetfilterTrafficRules } from "./rules.js";

const NFT_NAMES = { tables: NFT_TABLE, chains: { postrouting: NFT_MASQ_CHAIN, forward: NFT_FWD_CHAIN } } as const;

/** What Weft wants in one family's table (no chains: the table must not exist). */
export function nftDesiredTable(f: Family, t: FamilyTraffic | undefined, plan: Pick<TrafficPlan, "masquerade" | "forward">, fullyRandom: boolean): NftTableDesired {
  const chains = t
    ? { ...(plan.masquerade ? { postrouting: masqueradeRules(t, fullyRandom) } : {}), ...(plan.forward ? { forward: forwardRules(t) } : {}) }
    : {};
  return nftTableFor({ family: f, chains }, NFT_NAMES);
}

/** NftablesNetfilter's options for Weft: its table and chain names, the program and timeout. */
export function nftablesNetfilterOptions(options: TrafficRulesOptions = {}): NftablesNetfilterOptions {
  return {
    ...NFT_NAMES,
    program: options.tools?.nft ?? DEFAULT_TRAFFIC_TOOLS.nft,
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
  };
}

/** TrafficRules in nftables mode: over a NetfilterPort in that mode (NftablesNetfilter, or a fake). */
export class NftablesTrafficRules extends NetfilterTrafficRules {
  constructor(port: NetfilterPort, options: TrafficRulesOptions = {}) {
    if (port.mode !== "nftables") throw new WeftError("CONFIG_INVALID", `NftablesTrafficRules: the netfilter port is in ${port.mode} mode; pass an nftables one`);
    super(port, options);
  }
}
