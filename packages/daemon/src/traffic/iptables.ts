/**
 * Traffic rules through iptables-save / iptables-restore (Flannel's default mode, flannel.md §6.1).
 *
 * Weft owns two user chains per family and one jump into each:
 *   nat     WEFT-POSTRTG   jumped to from POSTROUTING, comment "weft masq"
 *   filter  WEFT-FWD       jumped to from FORWARD,     comment "weft forward"
 * and every rule outside those chains that carries one of the comments or jumps to one of the chains (a stray
 * duplicate jump, a rule left by a hand or by an older layout). Nothing else is ever touched.
 *
 * One pass per family: read `iptables-save -t nat` and `-t filter`, compare against the desired lines, and,
 * only when something differs, write one `iptables-restore --noflush` payload for both tables. In that
 * payload a `:CHAIN - [0:0]` line creates the chain or, with --noflush, flushes it; the refill follows in the
 * same COMMIT, so no packet ever sees a half-filled chain. The jump stays where it is when present (after
 * kube-proxy's, as with Flannel) and is appended once when missing; duplicates are deleted.
 *
 * Kernel/tool surprises worth knowing:
 *   - iptables-save prints rules in a canonical form (`-m mark --mark 0x4000/0x4000`, comments in double
 *     quotes, IPv6 in RFC 5952 form); the desired lines below are written in exactly that form so that a
 *     plain string comparison detects drift.
 *   - A `-D` of a rule that does not exist fails the whole restore: only rules just read are deleted. If
 *     someone changes the table between the read and the write, the restore fails and the next resync wins.
 *   - With the nf_tables backend (`iptables-nft`, Debian's default) the rules live in the nft tables
 *     `ip nat` / `ip filter`, not in Weft's nft tables, so the two modes never collide.
 *   - `iptables-save -t <table>` on iptables-nft lists the built-in chains even when the table does not
 *     exist, and does not create it.
 */
import "reflect-metadata";
import { type Family, IPNet, type Logger, WeftError, errorMessage, silentLogger } from "@weft/core";
import { PROCESS_RUNNER, type ProcessRunner } from "@weft/kernel";
import { inject, injectable } from "tsyringe";
import {
  type AbstractRule,
  DEFAULT_TRAFFIC_TOOLS,
  type FamilyTraffic,
  IPT_FWD_CHAIN,
  IPT_FWD_COMMENT,
  IPT_MASQ_CHAIN,
  IPT_MASQ_COMMENT,
  KUBE_PROXY_MARK,
  type TrafficPlan,
  type TrafficReport,
  type TrafficRules,
  type TrafficRulesOptions,
  type TrafficTools,
  checkPlan,
  forwardRules,
  masqueradeRules,
  previousDiffers,
} from "./model.js";
import { TRAFFIC_RULES_OPTIONS } from "./tokens.js";
import { SerialQueue, TrafficTool } from "./tools.js";

export type IptablesTable = "nat" | "filter";

/** One Weft-owned chain: where it lives, where it is jumped to from, and the comment on its rules. */
export interface IptablesChainSpec {
  readonly table: IptablesTable;
  readonly chain: string;
  readonly from: "POSTROUTING" | "FORWARD";
  readonly comment: string;
}

export const IPT_MASQ: IptablesChainSpec = { table: "nat", chain: IPT_MASQ_CHAIN, from: "POSTROUTING", comment: IPT_MASQ_COMMENT };
export const IPT_FWD: IptablesChainSpec = { table: "filter", chain: IPT_FWD_CHAIN, from: "FORWARD", comment: IPT_FWD_COMMENT };

// --- Rendering ------------------------------------------------------------------------------------------

const mark = `0x${KUBE_PROXY_MARK.toString(16)}`;

function addr(flag: "-s" | "-d", m: { net: IPNet; negate: boolean }): string {
  return `${m.negate ? "! " : ""}${flag} ${m.net}`;
}

/** A rule's specification as iptables-save prints it (everything after `-A <chain> `). */
export function iptablesRuleSpec(rule: AbstractRule, comment: string): string {
  const parts: string[] = [];
  if (rule.kubeProxyMark) parts.push(`-m mark --mark ${mark}/${mark}`);
  if (rule.src) parts.push(addr("-s", rule.src));
  if (rule.dst) parts.push(addr("-d", rule.dst));
  parts.push(`-m comment --comment "${comment}"`);
  if (rule.verdict === "return") parts.push("-j RETURN");
  else if (rule.verdict === "accept") parts.push("-j ACCEPT");
  else parts.push(rule.fullyRandom ? "-j MASQUERADE --random-fully" : "-j MASQUERADE");
  return parts.join(" ");
}

/** The jump rule's specification: `-m comment --comment "weft masq" -j WEFT-POSTRTG`. */
export function iptablesJumpSpec(spec: IptablesChainSpec): string {
  return `-m comment --comment "${spec.comment}" -j ${spec.chain}`;
}

/** The specs of Weft's masquerade chain for one family, in order. */
export function iptablesMasqueradeSpecs(t: FamilyTraffic, fullyRandom: boolean): string[] {
  return masqueradeRules(t, fullyRandom).map((r) => iptablesRuleSpec(r, IPT_MASQ_COMMENT));
}

/** The specs of Weft's forward chain for one family, in order. */
export function iptablesForwardSpecs(t: FamilyTraffic): string[] {
  return forwardRules(t).map((r) => iptablesRuleSpec(r, IPT_FWD_COMMENT));
}

/**
 * The `-A` lines `iptables -t <table> -S` shows for one Weft chain when it is in sync: the jump first, then
 * the chain's rules (flannel.md §6.1.4's golden output, with Weft's names).
 */
export function iptablesRuleLines(spec: IptablesChainSpec, specs: readonly string[]): string[] {
  return [`-A ${spec.from} ${iptablesJumpSpec(spec)}`, ...specs.map((s) => `-A ${spec.chain} ${s}`)];
}

// --- Reading ---------------------------------------------------------------------------------------------

export interface SavedRule {
  readonly chain: string;
  /** Everything after `-A <chain> `. */
  readonly spec: string;
}

/** One table as iptables-save printed it. */
export interface SavedTable {
  /** Chain name → policy (`-` for user chains). */
  readonly chains: ReadonlyMap<string, string>;
  readonly rules: readonly SavedRule[];
}

/** Parses the `*<table>` section of iptables-save output (an empty table when the section is absent). */
export function parseIptablesSave(text: string, table: IptablesTable): SavedTable {
  const chains = new Map<string, string>();
  const rules: SavedRule[] = [];
  let inside = false;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("*")) {
      inside = line.slice(1) === table;
      continue;
    }
    if (!inside) continue;
    if (line === "COMMIT") {
      inside = false;
      continue;
    }
    if (line.startsWith(":")) {
      const [name, policy] = line.slice(1).split(/\s+/);
      if (name) chains.set(name, policy ?? "-");
      continue;
    }
    const m = /^-A (\S+) (.*)$/.exec(line);
    if (m) rules.push({ chain: m[1]!, spec: m[2]!.trim() });
  }
  return { chains, rules };
}

// --- Planning --------------------------------------------------------------------------------------------

function jumpsTo(spec: string, chain: string): boolean {
  const words = spec.split(/\s+/);
  for (let i = 0; i + 1 < words.length; i++) if ((words[i] === "-j" || words[i] === "-g") && words[i + 1] === chain) return true;
  return false;
}

/** Rules outside Weft's chain that Weft owns: its comment or a jump/goto to its chain. */
function ownedOutside(live: SavedTable, spec: IptablesChainSpec): SavedRule[] {
  return live.rules.filter((r) => r.chain !== spec.chain && (r.spec.includes(`--comment "${spec.comment}"`) || jumpsTo(r.spec, spec.chain)));
}

/**
 * The restore lines (without `*table` / `COMMIT`) that bring one Weft chain from `live` to `desired`; empty
 * when it is already in sync. `desired` undefined means the chain must not exist.
 */
export function planIptablesChain(live: SavedTable, spec: IptablesChainSpec, desired: readonly string[] | undefined): string[] {
  const jump = iptablesJumpSpec(spec);
  const outside = ownedOutside(live, spec);
  const exists = live.chains.has(spec.chain);

  if (desired === undefined) {
    // Removal: every owned rule outside the chain (the jump included) goes first, or -X would fail with
    // "Device or resource busy" while something still references the chain.
    const lines = outside.map((r) => `-D ${r.chain} ${r.spec}`);
    if (exists) lines.push(`:${spec.chain} - [0:0]`, `-X ${spec.chain}`);
    return lines;
  }

  const inChain = live.rules.filter((r) => r.chain === spec.chain).map((r) => r.spec);
  const chainInSync = exists && inChain.length === desired.length && inChain.every((s, i) => s === desired[i]);
  const goodJumps = outside.filter((r) => r.chain === spec.from && r.spec === jump);
  const strays = outside.filter((r) => !(r.chain === spec.from && r.spec === jump));
  if (chainInSync && goodJumps.length === 1 && strays.length === 0) return [];

  const lines = [`:${spec.chain} - [0:0]`];
  for (const r of strays) lines.push(`-D ${r.chain} ${r.spec}`);
  // Keep the first jump where it is; delete the duplicates (-D removes the first match, and they are identical).
  for (let i = 1; i < goodJumps.length; i++) lines.push(`-D ${spec.from} ${jump}`);
  if (goodJumps.length === 0) lines.push(`-A ${spec.from} ${jump}`);
  for (const s of desired) lines.push(`-A ${spec.chain} ${s}`);
  return lines;
}

/** Whether any Weft-owned rule in `live` mentions one of `nets` (as `-s`/`-d` value). */
export function mentionsAny(live: SavedTable, spec: IptablesChainSpec, nets: readonly IPNet[]): boolean {
  const owned = [...live.rules.filter((r) => r.chain === spec.chain), ...ownedOutside(live, spec)];
  const wanted = new Set(nets.map((n) => n.toString()));
  return owned.some((r) => r.spec.split(/\s+/).some((w) => wanted.has(w)));
}

/** Joins per-table lines into one restore payload; empty string when there is nothing to do. */
export function restorePayload(tables: ReadonlyArray<{ table: IptablesTable; lines: readonly string[] }>): string {
  let out = "";
  for (const t of tables) if (t.lines.length > 0) out += `*${t.table}\n${t.lines.join("\n")}\nCOMMIT\n`;
  return out;
}

// --- The implementation -------------------------------------------------------------------------------------

interface FamilyBinaries {
  readonly save: string;
  readonly restore: string;
  /** Label for reports: `iptables` / `ip6tables`. */
  readonly label: string;
}

@injectable()
export class IptablesTrafficRules implements TrafficRules {
  private readonly tool: TrafficTool;
  private readonly tools: TrafficTools;
  private readonly lockWait: number;
  private readonly logger: Logger;
  private readonly fullyRandomSupport = new Map<Family, Promise<boolean>>();
  /** Families whose absence from the plan has already been enforced (so a v4-only node reads ip6tables once). */
  private readonly absentChecked = new Set<Family>();
  private readonly queue = new SerialQueue();

  constructor(@inject(PROCESS_RUNNER) runner: ProcessRunner, @inject(TRAFFIC_RULES_OPTIONS) options: TrafficRulesOptions = {}) {
    this.tool = new TrafficTool(runner, options.timeoutMs ?? 30_000);
    this.tools = { ...DEFAULT_TRAFFIC_TOOLS, ...options.tools };
    this.lockWait = options.lockWaitSeconds ?? 10;
    this.logger = options.logger ?? silentLogger;
  }

  private binaries(f: Family): FamilyBinaries {
    return f === "v4"
      ? { save: this.tools.iptablesSave, restore: this.tools.iptablesRestore, label: "iptables" }
      : { save: this.tools.ip6tablesSave, restore: this.tools.ip6tablesRestore, label: "ip6tables" };
  }

  async ensure(plan: TrafficPlan): Promise<TrafficReport> {
    checkPlan(plan);
    return this.queue.run(() => this.ensureNow(plan));
  }

  private async ensureNow(plan: TrafficPlan): Promise<TrafficReport> {
    const rewritten: string[] = [];
    const removedPrevious: Family[] = [];
    let fullyRandom = false;
    for (const f of ["v4", "v6"] as const) {
      const t = plan[f];
      if (!t) {
        // A family not (or no longer) in the plan: remove Weft's chains once, tolerating a host without
        // that family's tools (there can be nothing of ours there then).
        if (this.absentChecked.has(f)) continue;
        rewritten.push(...(await this.removeFamily(f)));
        this.absentChecked.add(f);
        continue;
      }
      this.absentChecked.delete(f);
      const random = plan.masquerade && plan.fullyRandom && (await this.supportsFullyRandom(f));
      if (plan.masquerade) fullyRandom ||= random;
      const previous = previousDiffers(t) ? [t.previous!.network, t.previous!.subnet].filter((n) => !n.equals(t.network) && !n.equals(t.subnet)) : [];
      const result = await this.sync(
        f,
        { nat: plan.masquerade ? iptablesMasqueradeSpecs(t, random) : undefined, filter: plan.forward ? iptablesForwardSpecs(t) : undefined },
        previous,
      );
      rewritten.push(...result.rewritten);
      if (result.rewritten.length > 0 && result.sawPrevious) removedPrevious.push(f);
    }
    return { changed: rewritten.length > 0, rewritten, fullyRandom, removedPrevious };
  }

  async cleanup(): Promise<void> {
    await this.removeAll();
  }

  /** cleanup(), returning what was rewritten (e.g. `iptables nat`); empty when nothing of Weft's was there. */
  removeAll(): Promise<string[]> {
    return this.queue.run(() => this.removeAllNow());
  }

  private async removeAllNow(): Promise<string[]> {
    const removed: string[] = [];
    for (const f of ["v4", "v6"] as const) removed.push(...(await this.removeFamily(f)));
    this.absentChecked.clear();
    return removed;
  }

  /**
   * Removes Weft's chains of family `f`. A host without that family's tools, or whose kernel has no such
   * tables (IPv6 disabled), cannot hold rules of ours: a failed read counts as "nothing there". A failed
   * write still throws.
   */
  private async removeFamily(f: Family): Promise<string[]> {
    return (await this.sync(f, { nat: undefined, filter: undefined }, [], true)).rewritten;
  }

  /**
   * Reads both tables of family `f`, plans, and applies one restore when needed. `undefined` for a table
   * removes Weft's chain there. Returns the labels of the rewritten tables.
   */
  private async sync(
    f: Family,
    desired: { nat: string[] | undefined; filter: string[] | undefined },
    previous: readonly IPNet[],
    tolerateUnreadable = false,
  ): Promise<{ rewritten: string[]; sawPrevious: boolean }> {
    const bin = this.binaries(f);
    let natText: string, filterText: string;
    try {
      [natText, filterText] = await Promise.all([this.save(bin, "nat"), this.save(bin, "filter")]);
    } catch (err) {
      if (tolerateUnreadable && err instanceof WeftError && (err.code === "PROCESS_MISSING" || err.code === "PROCESS_FAILED")) {
        this.logger.debug(`${bin.label}: cannot read the tables, so no Weft rules to remove there: ${errorMessage(err)}`);
        return { rewritten: [], sawPrevious: false };
      }
      throw err;
    }
    const nat = parseIptablesSave(natText, "nat");
    const filter = parseIptablesSave(filterText, "filter");
    const sawPrevious = previous.length > 0 && (mentionsAny(nat, IPT_MASQ, previous) || mentionsAny(filter, IPT_FWD, previous));
    const plans = [
      { table: "nat" as const, lines: planIptablesChain(nat, IPT_MASQ, desired.nat) },
      { table: "filter" as const, lines: planIptablesChain(filter, IPT_FWD, desired.filter) },
    ];
    const payload = restorePayload(plans);
    if (payload === "") return { rewritten: [], sawPrevious };
    await this.tool.check(bin.restore, ["--noflush", `--wait=${this.lockWait}`], payload);
    const rewritten = plans.filter((p) => p.lines.length > 0).map((p) => `${bin.label} ${p.table}`);
    this.logger.info(`traffic rules rewritten: ${rewritten.join(", ")}`, { mode: "iptables", rewritten });
    return { rewritten, sawPrevious };
  }

  private async save(bin: FamilyBinaries, table: IptablesTable): Promise<string> {
    const r = await this.tool.check(bin.save, ["-t", table]);
    return r.stdout;
  }

  /**
   * Probes once per family whether MASQUERADE --random-fully is accepted, with `restore --test` on a scratch
   * chain (parsed and built, never committed, so nothing appears in the tables). Old iptables (< 1.6.2)
   * rejects the option.
   */
  private supportsFullyRandom(f: Family): Promise<boolean> {
    let p = this.fullyRandomSupport.get(f);
    if (!p) {
      const bin = this.binaries(f);
      const probe = `*nat\n:WEFT-PROBE - [0:0]\n-A WEFT-PROBE -j MASQUERADE --random-fully\nCOMMIT\n`;
      p = this.tool.run(bin.restore, ["--test", "--noflush", `--wait=${this.lockWait}`], probe).then((r) => {
        const ok = r.exitCode === 0;
        if (!ok) this.logger.warn(`${bin.restore} does not accept MASQUERADE --random-fully (${r.stderr.trim().split("\n")[0]}); masquerading without it`);
        else this.logger.debug(`${bin.restore} supports --random-fully`);
        return ok;
      });
      this.fullyRandomSupport.set(f, p);
      p.catch(() => this.fullyRandomSupport.delete(f));
    }
    return p;
  }
}
