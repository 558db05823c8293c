/**
 * The traffic-rule model shared by the iptables and nftables implementations: the plan the agent asks for,
 * the report it gets back, Weft's names, and the desired rules as small family-neutral records that each
 * mode renders in its own syntax.
 *
 * Semantics are Flannel's (reference/flannel.md §6.1–§6.2), with Weft's names:
 *
 *   masquerade (nat, POSTROUTING):            forward (filter, FORWARD):
 *     mark 0x4000/0x4000       -> RETURN        -s <NET> -> ACCEPT
 *     -s <POD>  -d <NET>       -> RETURN        -d <NET> -> ACCEPT
 *     -s <NET>  -d <POD>       -> RETURN
 *     ! -s <NET> -d <POD>      -> RETURN
 *     -s <NET>  ! -d <MCAST>   -> MASQUERADE [--random-fully]
 *     ! -s <NET> -d <NET>      -> MASQUERADE [--random-fully]
 *
 * <MCAST> is 224.0.0.0/4, or ff00::/8 for IPv6. The nftables mode uses the same six matches. Flannel's
 * nftables mode differs in two places, both deliberate fixes here:
 *   - rule 4 is `saddr != <POD> daddr <NET>` there, which swallows every host->remote-pod packet before
 *     rule 6 can masquerade it (so rule 6 is dead code in Flannel's nft mode);
 *   - the kube-proxy mark is compared exactly (`meta mark 0x4000`) there, and under the mask 0x4000 in
 *     iptables; kube-proxy only guarantees the bit, so both Weft modes test the bit.
 */
import { type Family, IPNet, type Logger, WeftError } from "@weft/core";
import type { NetMatch, NetfilterRule } from "@weft/kernel";

/** Which kernel interface writes the rules (Flannel's `EnableNFTables`). */
export type TrafficMode = "iptables" | "nftables";

/** The node's cluster network and own pod subnet in one family. */
export interface FamilyTraffic {
  /** The cluster network (FLANNEL_NETWORK / FLANNEL_IPV6_NETWORK). */
  readonly network: IPNet;
  /** This node's pod subnet, as a network (198.19.1.0/24, not the first host). */
  readonly subnet: IPNet;
  /**
   * The values an earlier run used (from the old subnet.env), as Flannel passes them. Weft owns its chains
   * whole and rewrites them on any difference, so rules built from the previous values go away in the same
   * transaction; `previous` only lets the report say that happened.
   */
  readonly previous?: { readonly network: IPNet; readonly subnet: IPNet };
}

export interface TrafficPlan {
  readonly v4?: FamilyTraffic;
  readonly v6?: FamilyTraffic;
  /** `--ip-masq`: install the masquerade chain. When false, Weft's masquerade chain is removed. */
  readonly masquerade: boolean;
  /** `--iptables-forward-rules`: install the forward-accept chain. When false, Weft's forward chain is removed. */
  readonly forward: boolean;
  /** Use `--random-fully` / `fully-random` when the tools support it (`--ip-masq-fully-random-disable` = false). */
  readonly fullyRandom: boolean;
}

export interface TrafficReport {
  /** True when the live rules differed and were rewritten. */
  readonly changed: boolean;
  /** What was rewritten, e.g. `iptables nat`, `ip6tables filter`, `ip weft-ipv4`. Empty when unchanged. */
  readonly rewritten: readonly string[];
  /** Whether masquerade rules carry fully-random (asked for and supported). */
  readonly fullyRandom: boolean;
  /** Families whose live rules still mentioned the `previous` network or subnet before this call. */
  readonly removedPrevious: readonly Family[];
}

/** Masquerade and forward rules for one mode, resynced by the agent on a timer. */
export interface TrafficRules {
  /**
   * Makes the live rules equal to `plan`. Reads the live state first (one read per table) and writes only
   * when it differs, in one atomic restore/transaction per family set, so calling it every resync is cheap.
   * Families absent from the plan have their Weft rules removed.
   */
  ensure(plan: TrafficPlan): Promise<TrafficReport>;
  /** Removes every rule, chain and table this mode owns. Succeeds when nothing is there. */
  cleanup(): Promise<void>;
}

/** Program names, overridable (e.g. `iptables-legacy-save`) and resolved through PATH by the runner. */
export interface TrafficTools {
  readonly iptablesSave: string;
  readonly iptablesRestore: string;
  readonly ip6tablesSave: string;
  readonly ip6tablesRestore: string;
  readonly nft: string;
}

export const DEFAULT_TRAFFIC_TOOLS: TrafficTools = {
  iptablesSave: "iptables-save",
  iptablesRestore: "iptables-restore",
  ip6tablesSave: "ip6tables-save",
  ip6tablesRestore: "ip6tables-restore",
  nft: "nft",
};

export interface TrafficRulesOptions {
  readonly tools?: Partial<TrafficTools>;
  /** Seconds iptables-restore waits for the xtables lock (legacy backend); default 10. */
  readonly lockWaitSeconds?: number;
  /** Per-process timeout in milliseconds; default 30 000. */
  readonly timeoutMs?: number;
  /** Receives rewrites (info), probe outcomes and tolerated read failures (debug). Silent when unset. */
  readonly logger?: Logger;
}

// --- Weft's names (docs/naming.md). Weft owns exactly these and never touches anything else. ---------------

export const IPT_MASQ_CHAIN = "WEFT-POSTRTG";
export const IPT_FWD_CHAIN = "WEFT-FWD";
export const IPT_MASQ_COMMENT = "weft masq";
export const IPT_FWD_COMMENT = "weft forward";
export const NFT_TABLE: Readonly<Record<Family, { readonly family: "ip" | "ip6"; readonly name: string }>> = {
  v4: { family: "ip", name: "weft-ipv4" },
  v6: { family: "ip6", name: "weft-ipv6" },
};
export const NFT_MASQ_CHAIN = "postrtg";
export const NFT_FWD_CHAIN = "forward";
/** kube-proxy's masquerade mark bit (KUBE-MARK-MASQ); packets carrying it are left to kube-proxy. */
export const KUBE_PROXY_MARK = 0x4000;

export const MULTICAST: Readonly<Record<Family, IPNet>> = {
  v4: IPNet.parse("224.0.0.0/4"),
  v6: IPNet.parse("ff00::/8"),
};

// --- The desired rules, family-neutral --------------------------------------------------------------------

/** A source or destination match (the port's type). */
export type AddrMatch = NetMatch;

/** One rule as data (the port's type): the port renders it in iptables or nft syntax. */
export type AbstractRule = NetfilterRule;

const is = (net: IPNet): AddrMatch => ({ net, negate: false });
const not = (net: IPNet): AddrMatch => ({ net, negate: true });

/** The six masquerade rules, in order (flannel.md §6.1.1 rules 1–6). */
export function masqueradeRules(t: FamilyTraffic, fullyRandom: boolean): AbstractRule[] {
  const { network: net, subnet: pod } = t;
  const mcast = MULTICAST[net.family];
  return [
    { markBits: KUBE_PROXY_MARK, verdict: "return" },
    { src: is(pod), dst: is(net), verdict: "return" },
    { src: is(net), dst: is(pod), verdict: "return" },
    { src: not(net), dst: is(pod), verdict: "return" },
    { src: is(net), dst: not(mcast), verdict: "masquerade", fullyRandom },
    { src: not(net), dst: is(net), verdict: "masquerade", fullyRandom },
  ];
}

/** The two forward-accept rules (flannel.md §6.1.2). */
export function forwardRules(t: FamilyTraffic): AbstractRule[] {
  return [
    { src: is(t.network), verdict: "accept" },
    { dst: is(t.network), verdict: "accept" },
  ];
}

/** Whether a rule set built from `previous` differs from the current one (so old rules would be stale). */
export function previousDiffers(t: FamilyTraffic): boolean {
  return !!t.previous && (!t.previous.network.equals(t.network) || !t.previous.subnet.equals(t.subnet));
}

/** Rejects a plan whose networks are of the wrong family or whose subnet lies outside the network. */
export function checkPlan(plan: TrafficPlan): void {
  for (const f of ["v4", "v6"] as const) {
    const t = plan[f];
    if (!t) continue;
    for (const [what, net] of [
      ["network", t.network],
      ["subnet", t.subnet],
    ] as const) {
      if (net.family !== f) {
        throw new WeftError("CONFIG_INVALID", `traffic plan ${f}.${what}: ${net} is not an ${f === "v4" ? "IPv4" : "IPv6"} network; pass the ${f} values under ${f}`);
      }
    }
    if (!t.network.contains(t.subnet)) {
      throw new WeftError("CONFIG_INVALID", `traffic plan ${f}.subnet: ${t.subnet} is not inside ${f}.network ${t.network}; use the node's lease inside the cluster network`);
    }
  }
}
