/**
 * Traffic rules through nft (Flannel's `EnableNFTables` mode, flannel.md §6.2).
 *
 * Weft owns two whole tables, `ip weft-ipv4` and `ip6 weft-ipv6`, each with up to two base chains:
 *   postrtg   type nat hook postrouting priority srcnat; policy accept;   (masquerade)
 *   forward   type filter hook forward priority filter; policy accept;    (forward accept)
 * Owning the table means no comments or handles are needed to tell Weft's rules apart: everything in it is ours.
 *
 * One pass: `nft -j list table <family> <name>` per family (exit 1 "No such file or directory" = absent),
 * compared structurally against the JSON nft itself would print for the desired rules; only on a difference
 * one `nft -f -` transaction for both families: `add table; add chain {spec}; flush chain; add rule ...`.
 * nft applies a file as one netlink batch, all or nothing, so packets never see a half-filled chain. When the
 * table holds something the flush cannot fix (an unknown chain, a chain with another hook/priority/policy —
 * `add chain` on an existing base chain with a different spec fails), the transaction deletes and re-creates
 * the table instead, still atomically.
 *
 * JSON surprises (nft 1.0.6): a prefix of full length is printed as a bare address ("198.19.0.1", not a
 * prefix object); `meta mark & 0x4000 == 0x4000` becomes `{"&": [{"meta": {"key": "mark"}}, 16384]}`;
 * verdicts are `{"return": null}`; `masquerade` is `null` without flags and `{"flags": "fully-random"}` with.
 * Named priorities are printed as numbers (srcnat = 100, filter = 0).
 */
import "reflect-metadata";
import { type Family, IPNet, type Logger, WeftError, errorMessage, silentLogger } from "@weft/core";
import { PROCESS_RUNNER, type ProcessRunner } from "@weft/kernel";
import { inject, injectable } from "tsyringe";
import {
  type AbstractRule,
  type AddrMatch,
  DEFAULT_TRAFFIC_TOOLS,
  type FamilyTraffic,
  KUBE_PROXY_MARK,
  NFT_FWD_CHAIN,
  NFT_MASQ_CHAIN,
  NFT_TABLE,
  type TrafficPlan,
  type TrafficReport,
  type TrafficRules,
  type TrafficRulesOptions,
  checkPlan,
  forwardRules,
  masqueradeRules,
  previousDiffers,
} from "./model.js";
import { TRAFFIC_RULES_OPTIONS } from "./tokens.js";
import { SerialQueue, TrafficTool, failure } from "./tools.js";

type NftFamily = "ip" | "ip6";

/** A base chain Weft wants, with the spec nft reports back for it. */
export interface NftChainDesired {
  readonly name: string;
  readonly type: "nat" | "filter";
  readonly hook: "postrouting" | "forward";
  /** Named priority as written. */
  readonly priority: "srcnat" | "filter";
  /** The same priority as nft -j prints it. */
  readonly prio: number;
  readonly rules: readonly AbstractRule[];
}

export interface NftTableDesired {
  readonly family: NftFamily;
  readonly name: string;
  readonly chains: readonly NftChainDesired[];
}

/** What Weft wants in one family's table (no chains: the table must not exist). */
export function nftDesiredTable(f: Family, t: FamilyTraffic | undefined, plan: Pick<TrafficPlan, "masquerade" | "forward">, fullyRandom: boolean): NftTableDesired {
  const chains: NftChainDesired[] = [];
  if (t && plan.masquerade) {
    chains.push({ name: NFT_MASQ_CHAIN, type: "nat", hook: "postrouting", priority: "srcnat", prio: 100, rules: masqueradeRules(t, fullyRandom) });
  }
  if (t && plan.forward) {
    chains.push({ name: NFT_FWD_CHAIN, type: "filter", hook: "forward", priority: "filter", prio: 0, rules: forwardRules(t) });
  }
  return { ...NFT_TABLE[f], chains };
}

// --- Rendering: text ----------------------------------------------------------------------------------------

const markHex = `0x${KUBE_PROXY_MARK.toString(16).padStart(8, "0")}`;

function addrText(fam: NftFamily, field: "saddr" | "daddr", m: AddrMatch): string {
  return `${fam} ${field} ${m.negate ? "!= " : ""}${m.net}`;
}

/** A rule's statement as `nft list` prints it, e.g. `ip saddr 198.19.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random`. */
export function nftRuleText(rule: AbstractRule, fam: NftFamily): string {
  const parts: string[] = [];
  if (rule.kubeProxyMark) parts.push(`meta mark & ${markHex} == ${markHex}`);
  if (rule.src) parts.push(addrText(fam, "saddr", rule.src));
  if (rule.dst) parts.push(addrText(fam, "daddr", rule.dst));
  if (rule.verdict === "masquerade") parts.push(rule.fullyRandom ? "masquerade fully-random" : "masquerade");
  else parts.push(rule.verdict);
  return parts.join(" ");
}

function chainSpecText(c: NftChainDesired): string {
  return `{ type ${c.type} hook ${c.hook} priority ${c.priority}; policy accept; }`;
}

/** The lines that (re)create `t` from nothing or from a flushable state, without the leading `add table`. */
function fillLines(t: NftTableDesired): string[] {
  const lines: string[] = [];
  const id = `${t.family} ${t.name}`;
  for (const c of t.chains) {
    lines.push(`add chain ${id} ${c.name} ${chainSpecText(c)}`);
    lines.push(`flush chain ${id} ${c.name}`);
    for (const r of c.rules) lines.push(`add rule ${id} ${c.name} ${nftRuleText(r, t.family)}`);
  }
  return lines;
}

// --- Rendering: the JSON nft -j prints ------------------------------------------------------------------------

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function netJson(net: IPNet): Json {
  return net.prefix === net.ip.bits ? net.ip.toString() : { prefix: { addr: net.ip.toString(), len: net.prefix } };
}

/** The `expr` array `nft -j list` prints for a rule. */
export function nftRuleJson(rule: AbstractRule, fam: NftFamily): Json[] {
  const expr: Json[] = [];
  if (rule.kubeProxyMark) expr.push({ match: { op: "==", left: { "&": [{ meta: { key: "mark" } }, KUBE_PROXY_MARK] }, right: KUBE_PROXY_MARK } });
  for (const [field, m] of [
    ["saddr", rule.src],
    ["daddr", rule.dst],
  ] as const) {
    if (m) expr.push({ match: { op: m.negate ? "!=" : "==", left: { payload: { protocol: fam, field } }, right: netJson(m.net) } });
  }
  if (rule.verdict === "masquerade") expr.push({ masquerade: rule.fullyRandom ? { flags: "fully-random" } : null });
  else expr.push({ [rule.verdict]: null });
  return expr;
}

/** JSON with object keys sorted, so two values compare by content. */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

// --- Reading ---------------------------------------------------------------------------------------------

export interface NftLiveChain {
  readonly name: string;
  readonly type?: string;
  readonly hook?: string;
  readonly prio?: number;
  readonly policy?: string;
  /** Each rule's `expr` array. */
  readonly rules: Json[][];
}

/** One table as `nft -j list table` printed it; undefined when the table does not exist. */
export type NftLiveTable = { readonly chains: ReadonlyMap<string, NftLiveChain> } | undefined;

/** Parses `nft -j list table <family> <name>` output. */
export function parseNftTable(jsonText: string, family: NftFamily, name: string): NftLiveTable {
  let doc: unknown;
  try {
    doc = JSON.parse(jsonText);
  } catch (err) {
    throw new WeftError("PROCESS_FAILED", `nft -j list table ${family} ${name}: output is not JSON (${String(err)})`);
  }
  const items = (doc as { nftables?: unknown }).nftables;
  if (!Array.isArray(items)) throw new WeftError("PROCESS_FAILED", `nft -j list table ${family} ${name}: no "nftables" array in the output`);
  const chains = new Map<string, { name: string; type?: string; hook?: string; prio?: number; policy?: string; rules: Json[][] }>();
  let seenTable = false;
  for (const item of items as Record<string, unknown>[]) {
    const table = item.table as { family?: string; name?: string } | undefined;
    if (table && table.family === family && table.name === name) seenTable = true;
    const c = item.chain as { family?: string; table?: string; name?: string; type?: string; hook?: string; prio?: number; policy?: string } | undefined;
    if (c && c.family === family && c.table === name && typeof c.name === "string") {
      chains.set(c.name, {
        name: c.name,
        ...(c.type !== undefined ? { type: c.type } : {}),
        ...(c.hook !== undefined ? { hook: c.hook } : {}),
        ...(c.prio !== undefined ? { prio: c.prio } : {}),
        ...(c.policy !== undefined ? { policy: c.policy } : {}),
        rules: [],
      });
    }
    const r = item.rule as { family?: string; table?: string; chain?: string; expr?: Json[] } | undefined;
    if (r && r.family === family && r.table === name && typeof r.chain === "string") {
      // Rules follow their chain in nft's output; a rule of an unseen chain still counts as content.
      let chain = chains.get(r.chain);
      if (!chain) {
        chain = { name: r.chain, rules: [] };
        chains.set(r.chain, chain);
      }
      chain.rules.push(Array.isArray(r.expr) ? r.expr : []);
    }
  }
  return seenTable || chains.size > 0 ? { chains } : undefined;
}

// --- Planning --------------------------------------------------------------------------------------------

/**
 * The nft commands that bring one table from `live` to `desired`; empty when in sync.
 *   - nothing wanted: delete the table if it exists;
 *   - the same chains with the same specs: add/flush/refill each chain;
 *   - anything else in the table: delete it and build it again, in the same transaction.
 */
export function planNftTable(live: NftLiveTable, desired: NftTableDesired): string[] {
  const id = `${desired.family} ${desired.name}`;
  if (desired.chains.length === 0) return live ? [`delete table ${id}`] : [];
  if (!live) return [`add table ${id}`, ...fillLines(desired)];

  const wanted = new Map(desired.chains.map((c) => [c.name, c]));
  const sameSpec = (l: NftLiveChain, d: NftChainDesired) => l.type === d.type && l.hook === d.hook && l.prio === d.prio && l.policy === "accept";
  const structural = [...live.chains.values()].some((l) => {
    const d = wanted.get(l.name);
    return !d || !sameSpec(l, d);
  });
  if (structural) return [`delete table ${id}`, `add table ${id}`, ...fillLines(desired)];

  const inSync = desired.chains.every((d) => {
    const l = live.chains.get(d.name);
    if (!l || l.rules.length !== d.rules.length) return false;
    return d.rules.every((r, i) => stableJson(nftRuleJson(r, desired.family)) === stableJson(l.rules[i]));
  });
  return inSync ? [] : [`add table ${id}`, ...fillLines(desired)];
}

function mentionsNet(v: unknown, nets: readonly IPNet[]): boolean {
  const wanted = new Set(nets.map((n) => stableJson(netJson(n))));
  const walk = (x: unknown): boolean => {
    if (wanted.has(stableJson(x))) return true;
    if (Array.isArray(x)) return x.some(walk);
    if (x !== null && typeof x === "object") return Object.values(x).some(walk);
    return false;
  };
  return walk(v);
}

/** Whether any rule in `live` matches on one of `nets`. */
export function nftMentionsAny(live: NftLiveTable, nets: readonly IPNet[]): boolean {
  if (!live || nets.length === 0) return false;
  return [...live.chains.values()].some((c) => c.rules.some((r) => mentionsNet(r, nets)));
}

// --- The implementation -------------------------------------------------------------------------------------

@injectable()
export class NftablesTrafficRules implements TrafficRules {
  private readonly tool: TrafficTool;
  private readonly nft: string;
  private readonly logger: Logger;
  private readonly fullyRandomSupport = new Map<Family, Promise<boolean>>();
  private readonly absentChecked = new Set<Family>();
  private readonly queue = new SerialQueue();

  constructor(@inject(PROCESS_RUNNER) runner: ProcessRunner, @inject(TRAFFIC_RULES_OPTIONS) options: TrafficRulesOptions = {}) {
    this.tool = new TrafficTool(runner, options.timeoutMs ?? 30_000);
    this.nft = options.tools?.nft ?? DEFAULT_TRAFFIC_TOOLS.nft;
    this.logger = options.logger ?? silentLogger;
  }

  async ensure(plan: TrafficPlan): Promise<TrafficReport> {
    checkPlan(plan);
    return this.queue.run(() => this.ensureNow(plan));
  }

  private async ensureNow(plan: TrafficPlan): Promise<TrafficReport> {
    const commands: string[] = [];
    const rewritten: string[] = [];
    const removedPrevious: Family[] = [];
    let fullyRandom = false;
    for (const f of ["v4", "v6"] as const) {
      const t = plan[f];
      if (!t && this.absentChecked.has(f)) continue;
      const random = !!t && plan.masquerade && plan.fullyRandom && (await this.supportsFullyRandom(f));
      if (t && plan.masquerade) fullyRandom ||= random;
      const desired = nftDesiredTable(f, t, plan, random);
      let live: NftLiveTable;
      try {
        live = await this.read(desired.family, desired.name);
      } catch (err) {
        // A family not in the plan on a host that cannot list it (no nft, IPv6 disabled) holds nothing of ours.
        if (t || !(err instanceof WeftError)) throw err;
        this.logger.debug(`nft: cannot list ${desired.family} ${desired.name}, so nothing of Weft's to remove there: ${errorMessage(err)}`);
        live = undefined;
      }
      const lines = planNftTable(live, desired);
      if (lines.length > 0) {
        commands.push(...lines);
        rewritten.push(`${desired.family} ${desired.name}`);
        if (t && previousDiffers(t)) {
          const prev = [t.previous!.network, t.previous!.subnet].filter((n) => !n.equals(t.network) && !n.equals(t.subnet));
          if (nftMentionsAny(live, prev)) removedPrevious.push(f);
        }
      }
      if (t) this.absentChecked.delete(f);
      else this.absentChecked.add(f);
    }
    if (commands.length > 0) {
      await this.apply(commands);
      this.logger.info(`traffic rules rewritten: ${rewritten.join(", ")}`, { mode: "nftables", rewritten });
    }
    return { changed: rewritten.length > 0, rewritten, fullyRandom, removedPrevious };
  }

  async cleanup(): Promise<void> {
    await this.removeAll();
  }

  /** cleanup(), returning the tables deleted (e.g. `ip weft-ipv4`). */
  removeAll(): Promise<string[]> {
    return this.queue.run(() => this.removeAllNow());
  }

  private async removeAllNow(): Promise<string[]> {
    const removed = await cleanupNftTables(this.tool, this.nft);
    this.absentChecked.clear();
    return removed;
  }

  private async read(family: NftFamily, name: string): Promise<NftLiveTable> {
    const args = ["-j", "list", "table", family, name];
    const r = await this.tool.run(this.nft, args);
    if (r.exitCode !== 0) {
      if (/No such file or directory/.test(r.stderr)) return undefined;
      throw failure(this.nft, args, r);
    }
    return parseNftTable(r.stdout, family, name);
  }

  private async apply(commands: readonly string[]): Promise<void> {
    await this.tool.check(this.nft, ["-f", "-"], commands.join("\n") + "\n");
  }

  /**
   * Probes once per family whether `masquerade fully-random` is accepted: `nft -c` sends the transaction
   * to the kernel for validation and aborts it, so the scratch table never exists.
   */
  private supportsFullyRandom(f: Family): Promise<boolean> {
    let p = this.fullyRandomSupport.get(f);
    if (!p) {
      const fam = NFT_TABLE[f].family;
      const probe = [
        `add table ${fam} weft-probe`,
        `add chain ${fam} weft-probe p { type nat hook postrouting priority srcnat; }`,
        `add rule ${fam} weft-probe p masquerade fully-random`,
      ].join("\n");
      p = this.tool.run(this.nft, ["-c", "-f", "-"], probe + "\n").then((r) => {
        const ok = r.exitCode === 0;
        if (!ok) this.logger.warn(`nft does not accept masquerade fully-random for ${fam} (${r.stderr.trim().split("\n")[0]}); masquerading without it`);
        else this.logger.debug(`nft supports masquerade fully-random for ${fam}`);
        return ok;
      });
      this.fullyRandomSupport.set(f, p);
      p.catch(() => this.fullyRandomSupport.delete(f));
    }
    return p;
  }
}

/**
 * Deletes Weft's nft tables that exist (one read, at most one transaction). A host without nft cannot hold
 * them, so a missing nft is not an error here.
 */
export async function cleanupNftTables(tool: TrafficTool, nft: string): Promise<string[]> {
  let r;
  try {
    r = await tool.run(nft, ["-j", "list", "tables"]);
  } catch (err) {
    if (err instanceof WeftError && err.code === "PROCESS_MISSING") return [];
    throw err;
  }
  if (r.exitCode !== 0) throw failure(nft, ["-j", "list", "tables"], r);
  const doc = JSON.parse(r.stdout) as { nftables?: Array<{ table?: { family?: string; name?: string } }> };
  const present = new Set((doc.nftables ?? []).flatMap((i) => (i.table ? [`${i.table.family} ${i.table.name}`] : [])));
  const gone = Object.values(NFT_TABLE)
    .map((t) => `${t.family} ${t.name}`)
    .filter((id) => present.has(id));
  if (gone.length > 0) await tool.check(nft, ["-f", "-"], gone.map((id) => `delete table ${id}`).join("\n") + "\n");
  return gone;
}
