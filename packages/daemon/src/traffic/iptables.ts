/**
 * Traffic rules in iptables mode (Flannel's default, flannel.md §6.1): Weft's chain names and comments as the
 * kernel's IptablesNetfilter wants them (iptables-save / iptables-restore; how the chains are laid out, read and
 * rewritten is documented there), and the TrafficRules of this mode.
 *
 *   nat     WEFT-POSTRTG   jumped to from POSTROUTING, comment "weft masq"
 *   filter  WEFT-FWD       jumped to from FORWARD,     comment "weft forward"
 */
import { WeftError } from "@weft/core";
import { type IptablesChainSpec, type IptablesNetfilterOptions, type NetfilterPort, iptablesRuleSpec } from "@weft/kernel";
import {
  DEFAULT_TRAFFIC_TOOLS,
  type FamilyTraffic,
  IPT_FWD_CHAIN,
  IPT_FWD_COMMENT,
  IPT_MASQ_CHAIN,
  IPT_MASQ_COMMENT,
  type TrafficRulesOptions,
  forwardRules,
  masqueradeRules,
} from "./model.js";
import { NetfilterTrafficRules } from "./rules.js";

export type { IptablesChainSpec, IptablesTable } from "@weft/kernel";

export const IPT_MASQ: IptablesChainSpec = { table: "nat", chain: IPT_MASQ_CHAIN, from: "POSTROUTING", comment: IPT_MASQ_COMMENT };
export const IPT_FWD: IptablesChainSpec = { table: "filter", chain: IPT_FWD_CHAIN, from: "FORWARD", comment: IPT_FWD_COMMENT };

/** The specs of Weft's masquerade chain for one family, in order, as iptables-save prints them. */
export function iptablesMasqueradeSpecs(t: FamilyTraffic, fullyRandom: boolean): string[] {
  return masqueradeRules(t, fullyRandom).map((r) => iptablesRuleSpec(r, IPT_MASQ_COMMENT));
}

/** The specs of Weft's forward chain for one family, in order. */
export function iptablesForwardSpecs(t: FamilyTraffic): string[] {
  return forwardRules(t).map((r) => iptablesRuleSpec(r, IPT_FWD_COMMENT));
}

/** IptablesNetfilter's options for Weft: its chain names and comments, the programs, lock wait and timeout. */
export function iptablesNetfilterOptions(options: TrafficRulesOptions = {}): IptablesNetfilterOptions {
  const tools = { ...DEFAULT_TRAFFIC_TOOLS, ...options.tools };
  return {
    chains: { postrouting: { chain: IPT_MASQ_CHAIN, comment: IPT_MASQ_COMMENT }, forward: { chain: IPT_FWD_CHAIN, comment: IPT_FWD_COMMENT } },
    programs: { iptablesSave: tools.iptablesSave, iptablesRestore: tools.iptablesRestore, ip6tablesSave: tools.ip6tablesSave, ip6tablesRestore: tools.ip6tablesRestore },
    ...(options.lockWaitSeconds !== undefined ? { lockWaitSeconds: options.lockWaitSeconds } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
  };
}

/** TrafficRules in iptables mode: over a NetfilterPort in that mode (IptablesNetfilter, or a fake). */
export class IptablesTrafficRules extends NetfilterTrafficRules {
  constructor(port: NetfilterPort, options: TrafficRulesOptions = {}) {
    if (port.mode !== "iptables") throw new WeftError("CONFIG_INVALID", `IptablesTrafficRules: the netfilter port is in ${port.mode} mode; pass an iptables one`);
    super(port, options);
  }
}
