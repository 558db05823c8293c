/**
 * A stateful fake of the NetfilterPort, in either mode: Weft's chains per family as data, written atomically
 * by apply (all families or none), with the same labels the real adapters report (`iptables nat`,
 * `ip6tables filter`, `ip weft-ipv4`...). Fault injection: a family whose tool is missing, a tool without
 * fully-random, a failing next write, and hand edits (a rule changed or deleted, a stray added) that the next
 * apply must repair. Tests read the final state (`rules`, `read`) and the write counter, never call sequences.
 */
import type { Family } from "@weft/core";
import {
  NETFILTER_HOOKS,
  type NetfilterChange,
  type NetfilterHook,
  type NetfilterMode,
  type NetfilterPort,
  type NetfilterRule,
  type NetfilterRuleset,
  type NetfilterState,
  type NetfilterSupport,
  type UnrecognisedRule,
  processMissingError,
  sameRule,
  validateRuleset,
} from "@weft/kernel";

type LiveRule = NetfilterRule | UnrecognisedRule;
type FamilyState = { chains: Partial<Record<NetfilterHook, LiveRule[]>>; strays: string[] };

const IPT_TABLE: Readonly<Record<NetfilterHook, string>> = { postrouting: "nat", forward: "filter" };
const NFT_TABLE: Readonly<Record<Family, string>> = { v4: "ip weft-ipv4", v6: "ip6 weft-ipv6" };

export class FakeNetfilter implements NetfilterPort {
  /** Families whose tool is not installed: reads and writes there fail with PROCESS_MISSING. */
  readonly missing = new Set<Family>();
  /** When false, supportsFullyRandom answers no (an iptables older than 1.6.2). */
  fullyRandom = true;
  /** Number of committed writes (an apply or remove that changed something); state a test may read. */
  writes = 0;
  private readonly state = new Map<Family, FamilyState>([
    ["v4", { chains: {}, strays: [] }],
    ["v6", { chains: {}, strays: [] }],
  ]);
  private readonly failures: Error[] = [];

  constructor(readonly mode: NetfilterMode = "iptables") {}

  /** The next write fails with `err`, changing nothing. */
  failNextWrite(err: Error): void {
    this.failures.push(err);
  }

  /** Weft's rules of one chain now (undefined: the chain does not exist). */
  rules(family: Family, hook: NetfilterHook): readonly LiveRule[] | undefined {
    return this.state.get(family)!.chains[hook];
  }

  /** A hand edit: replaces rule `index` of a chain, or deletes it when `rule` is undefined. */
  editRule(family: Family, hook: NetfilterHook, index: number, rule?: LiveRule): void {
    const rules = this.state.get(family)!.chains[hook];
    if (!rules || index >= rules.length) throw new Error(`FakeNetfilter: no rule ${index} in ${family} ${hook}`);
    if (rule) rules[index] = rule;
    else rules.splice(index, 1);
  }

  /** A hand edit: something Weft owns that no ruleset holds (a duplicate jump, an unknown chain). */
  addStray(family: Family, text: string): void {
    this.state.get(family)!.strays.push(text);
  }

  async read(family: Family): Promise<NetfilterState> {
    this.require(family);
    return this.snapshot(family);
  }

  async apply(rulesets: readonly NetfilterRuleset[]): Promise<NetfilterChange[]> {
    for (const r of rulesets) validateRuleset(r);
    const out: NetfilterChange[] = [];
    const next = new Map<Family, FamilyState>();
    for (const ruleset of rulesets) {
      const { family } = ruleset;
      const empty = NETFILTER_HOOKS.every((h) => ruleset.chains[h] === undefined);
      if (this.missing.has(family)) {
        if (empty) {
          out.push({ family, rewritten: [], before: undefined });
          continue;
        }
        this.require(family);
      }
      const before = this.snapshot(family);
      const live = this.state.get(family)!;
      const rewritten: string[] = [];
      const changed = NETFILTER_HOOKS.filter((h) => !sameChain(live.chains[h], ruleset.chains[h]));
      const dirty = changed.length > 0 || live.strays.length > 0;
      if (this.mode === "iptables") {
        // One label per table touched; strays count against the postrouting table (where jumps are).
        for (const h of NETFILTER_HOOKS) if (changed.includes(h) || (h === "postrouting" && live.strays.length > 0)) rewritten.push(`${family === "v4" ? "iptables" : "ip6tables"} ${IPT_TABLE[h]}`);
      } else if (dirty) rewritten.push(NFT_TABLE[family]);
      if (dirty) {
        const chains: FamilyState["chains"] = {};
        for (const h of NETFILTER_HOOKS) {
          const rules = ruleset.chains[h];
          if (rules) chains[h] = rules.map((r) => ({ ...r }));
        }
        next.set(family, { chains, strays: [] });
      }
      out.push({ family, rewritten, before });
    }
    if (next.size > 0) {
      const fault = this.failures.shift();
      if (fault) throw fault;
      for (const [f, s] of next) this.state.set(f, s);
      this.writes++;
    }
    return out;
  }

  async remove(): Promise<string[]> {
    const changes = await this.apply((["v4", "v6"] as const).map((family) => ({ family, chains: {} })));
    return changes.flatMap((c) => c.rewritten);
  }

  async supportsFullyRandom(family: Family): Promise<NetfilterSupport> {
    this.require(family);
    return this.fullyRandom ? { supported: true } : { supported: false, detail: "fake: fully-random not accepted" };
  }

  private require(family: Family): void {
    if (this.missing.has(family)) throw processMissingError(this.mode === "nftables" ? "nft" : family === "v4" ? "iptables-save" : "ip6tables-save");
  }

  private snapshot(family: Family): NetfilterState {
    const s = this.state.get(family)!;
    const chains: Partial<Record<NetfilterHook, LiveRule[]>> = {};
    for (const h of NETFILTER_HOOKS) if (s.chains[h]) chains[h] = s.chains[h]!.map((r) => ({ ...r }));
    return { family, chains, strays: [...s.strays] };
  }
}

function sameChain(live: readonly LiveRule[] | undefined, desired: readonly NetfilterRule[] | undefined): boolean {
  if (!live || !desired) return !live && !desired;
  return live.length === desired.length && live.every((r, i) => sameRule(r, desired[i]!));
}
