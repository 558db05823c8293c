/**
 * The netfilter port: Weft's own masquerade and forward rules, typed. The caller (the agent's traffic rules)
 * holds the rules as data — which packets to leave alone, masquerade or accept — and asks the port to make
 * the kernel hold exactly those, in Weft's chains, atomically; the port owns everything about the tools:
 * argv, the iptables-restore / nft payload syntax, reading back and parsing, error classification.
 *
 * Two adapters, one per kernel interface (Flannel's `EnableNFTables`), both running programs through the
 * ProcessRunner: IptablesNetfilter (iptables-save / iptables-restore, ip6tables-* for IPv6) and
 * NftablesNetfilter (nft). The stateful fake is @weft/kernel-testing's FakeNetfilter; one contract suite
 * (`describeNetfilterPortContract`) runs on the fake and on both real tools in a namespace.
 *
 * What "Weft's chains" are is given to the adapter as names (see the adapters' options): two hooked chains
 * per family, `postrouting` (nat: masquerade) and `forward` (filter: accept). Nothing else is ever touched.
 */
import type { Family, IPNet } from "@weft/core";
import { KernelError } from "../port.js";

/** Which kernel interface the rules are written through. */
export type NetfilterMode = "iptables" | "nftables";

/** The packet's address is (or, with `negate`, is not) inside `net`. */
export interface NetMatch {
  readonly net: IPNet;
  readonly negate: boolean;
}

/** One rule as data. Its matches are ANDed; a rule without matches applies to every packet. */
export interface NetfilterRule {
  /** Match packets whose mark has all these bits set (`mark & bits == bits`), e.g. kube-proxy's 0x4000. */
  readonly markBits?: number;
  readonly src?: NetMatch;
  readonly dst?: NetMatch;
  readonly verdict: "return" | "accept" | "masquerade";
  /** Only for `masquerade`: fully randomised source ports (`--random-fully` / `fully-random`). */
  readonly fullyRandom?: boolean;
}

/** A rule read back that the port cannot express as a NetfilterRule (someone else's edit), as the tool printed it. */
export interface UnrecognisedRule {
  readonly unrecognised: string;
}

/** The hooks Weft's chains attach to: `postrouting` in the nat table (masquerade), `forward` in filter. */
export type NetfilterHook = "postrouting" | "forward";

export const NETFILTER_HOOKS: readonly NetfilterHook[] = ["postrouting", "forward"];

/** What Weft wants in one family: the rules of each of its chains. A hook left out must have no Weft chain. */
export interface NetfilterRuleset {
  readonly family: Family;
  readonly chains: Readonly<Partial<Record<NetfilterHook, readonly NetfilterRule[]>>>;
}

/** What Weft owns in one family, as read back. */
export interface NetfilterState {
  readonly family: Family;
  /** The rules of each Weft chain that exists, in order. */
  readonly chains: Readonly<Partial<Record<NetfilterHook, ReadonlyArray<NetfilterRule | UnrecognisedRule>>>>;
  /** Other things Weft owns there that a ruleset cannot hold (a duplicate jump, an unknown chain), as printed. */
  readonly strays: readonly string[];
}

/** The outcome of apply for one family. */
export interface NetfilterChange {
  readonly family: Family;
  /** What was rewritten, e.g. `iptables nat`, `ip6tables filter`, `ip weft-ipv4`; empty when already in sync. */
  readonly rewritten: readonly string[];
  /** The state read before writing; undefined when it could not be read (only tolerated for an empty ruleset). */
  readonly before: NetfilterState | undefined;
}

/** Whether an optional feature is accepted by the tool and kernel, with the tool's reason when not. */
export interface NetfilterSupport {
  readonly supported: boolean;
  readonly detail?: string;
}

/**
 * Weft's rules in one kernel interface. Errors: WeftError PROCESS_MISSING (naming the Debian package) when
 * the tool is not installed; otherwise KernelErrors classified once in the adapter (e.g. KERNEL_INVALID for
 * a payload the tool rejects, with the rejected line in the message).
 */
export interface NetfilterPort {
  readonly mode: NetfilterMode;
  /** What Weft owns in `family` now. */
  read(family: Family): Promise<NetfilterState>;
  /**
   * Makes Weft's chains of each listed family equal to its ruleset (families not listed are untouched). Reads
   * first and writes only what differs, atomically: packets never see a half-filled chain, and a failed write
   * changes nothing. A family whose ruleset is empty and whose tables cannot be read (the family's tool is
   * missing, IPv6 is disabled) holds nothing of Weft's: it is skipped, not an error.
   */
  apply(rulesets: readonly NetfilterRuleset[]): Promise<NetfilterChange[]>;
  /** Removes everything Weft owns in both families; returns what was rewritten. Succeeds when nothing is there, or the tool is missing. */
  remove(): Promise<string[]>;
  /** Whether masquerade with fully-random ports is accepted in `family` (probed once, never committed). */
  supportsFullyRandom(family: Family): Promise<NetfilterSupport>;
}

/** The networks a Weft-owned rule of `state` matches on (source or destination). */
export function netsOf(state: NetfilterState | undefined): IPNet[] {
  if (!state) return [];
  const out: IPNet[] = [];
  for (const rules of Object.values(state.chains)) {
    for (const r of rules ?? []) {
      if ("unrecognised" in r) continue;
      if (r.src) out.push(r.src.net);
      if (r.dst) out.push(r.dst.net);
    }
  }
  return out;
}

/** Whether two rules are the same (what a read returns for a rule that was applied). */
export function sameRule(a: NetfilterRule | UnrecognisedRule, b: NetfilterRule | UnrecognisedRule): boolean {
  if ("unrecognised" in a || "unrecognised" in b) return "unrecognised" in a && "unrecognised" in b && a.unrecognised === b.unrecognised;
  const m = (x?: NetMatch, y?: NetMatch) => (!x && !y) || (!!x && !!y && x.negate === y.negate && x.net.equals(y.net));
  return (
    (a.markBits ?? 0) === (b.markBits ?? 0) &&
    m(a.src, b.src) &&
    m(a.dst, b.dst) &&
    a.verdict === b.verdict &&
    (a.verdict !== "masquerade" || !!a.fullyRandom === !!b.fullyRandom)
  );
}

/**
 * Rejects a ruleset the tools would reject half-way: a network of the other family, a mark of 0, fully-random
 * on a verdict other than masquerade. KERNEL_INVALID naming the chain, the rule and the fix.
 */
export function validateRuleset(ruleset: NetfilterRuleset): void {
  for (const hook of NETFILTER_HOOKS) {
    (ruleset.chains[hook] ?? []).forEach((r, i) => {
      const where = `netfilter ruleset ${ruleset.family} ${hook} rule ${i + 1}`;
      for (const m of [r.src, r.dst]) {
        if (m && m.net.family !== ruleset.family) {
          throw new KernelError("KERNEL_INVALID", `${where}: ${m.net} is not an ${ruleset.family === "v4" ? "IPv4" : "IPv6"} network; put it in the ${m.net.family} ruleset`);
        }
      }
      if (r.markBits !== undefined && (!Number.isInteger(r.markBits) || r.markBits <= 0 || r.markBits > 0xffffffff)) {
        throw new KernelError("KERNEL_INVALID", `${where}: markBits ${r.markBits} is not a 32-bit mask; use a non-zero integer such as 0x4000`);
      }
      if (r.fullyRandom && r.verdict !== "masquerade") {
        throw new KernelError("KERNEL_INVALID", `${where}: fullyRandom is only for masquerade (verdict is ${r.verdict}); drop it`);
      }
    });
  }
}
