/** DI tokens for the traffic-rule subsystem (bound by the agent's composition root). */
import { createToken } from "@weft/core";
import type { TrafficRules, TrafficRulesOptions } from "./model.js";

/** The TrafficRules of the mode in use. */
export const TRAFFIC_RULES = createToken<TrafficRules>("weft.traffic-rules");
/** Options for IptablesTrafficRules / NftablesTrafficRules (tool names, timeouts). */
export const TRAFFIC_RULES_OPTIONS = createToken<TrafficRulesOptions>("weft.traffic-rules-options");
