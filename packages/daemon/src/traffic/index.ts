/**
 * Traffic rules (masquerade and forward accept), Flannel's semantics in Weft's chains and tables, in
 * iptables or nftables mode. See model.ts for the rules, iptables.ts / nftables.ts for each mode.
 */
export {
  type TrafficMode,
  type FamilyTraffic,
  type TrafficPlan,
  type TrafficReport,
  type TrafficRules,
  type TrafficRulesOptions,
  type TrafficTools,
  DEFAULT_TRAFFIC_TOOLS,
  IPT_MASQ_CHAIN,
  IPT_FWD_CHAIN,
  IPT_MASQ_COMMENT,
  IPT_FWD_COMMENT,
  NFT_TABLE,
  NFT_MASQ_CHAIN,
  NFT_FWD_CHAIN,
  KUBE_PROXY_MARK,
} from "./model.js";
export { IptablesTrafficRules, iptablesNetfilterOptions } from "./iptables.js";
export { NftablesTrafficRules, nftablesNetfilterOptions } from "./nftables.js";
export { NetfilterTrafficRules } from "./rules.js";
export { createTrafficRules, cleanupOtherMode, trafficNetfilterOptions } from "./factory.js";
