/**
 * NetfilterPort through iptables-save / iptables-restore (ip6tables-* for IPv6): Flannel's default mode
 * (flannel.md §6.1).
 *
 * Weft owns one user chain per hook and family, and one jump into each:
 *   postrouting  nat     <chain>  jumped to from POSTROUTING, every rule carrying <comment>
 *   forward      filter  <chain>  jumped to from FORWARD,     every rule carrying <comment>
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
 *     quotes, IPv6 in RFC 5952 form); the desired lines are rendered in exactly that form so that a plain
 *     string comparison detects drift, and a rule read back is recognised only when it renders to the same text.
 *   - A `-D` of a rule that does not exist fails the whole restore: only rules just read are deleted. If
 *     someone changes the table between the read and the write, the restore fails and the next resync wins.
 *   - With the nf_tables backend (`iptables-nft`, Debian's default) the rules live in the nft tables
 *     `ip nat` / `ip filter`, not in Weft's nft tables, so the two modes never collide.
 *   - `iptables-save -t <table>` on iptables-nft lists the built-in chains even when the table does not
 *     exist, and does not create it.
 */
import { type Family, IPNet, type Logger, SerialQueue, WeftError, errorMessage, silentLogger } from "@weft/core";
import type { ProcessRunner } from "../process.js";
import {
  NETFILTER_HOOKS,
  type NetMatch,
  type NetfilterChange,
  type NetfilterHook,
  type NetfilterPort,
  type NetfilterRule,
  type NetfilterRuleset,
  type NetfilterState,
  type NetfilterSupport,
  type UnrecognisedRule,
  validateRuleset,
} from "./port.js";
import { NetfilterTool } from "./run.js";

export type IptablesTable = "nat" | "filter";

/** One Weft-owned chain: where it lives, where it is jumped to from, and the comment on its rules. */
export interface IptablesChainSpec {
  readonly table: IptablesTable;
  readonly chain: string;
  readonly from: "POSTROUTING" | "FORWARD";
  readonly comment: string;
}

/** Program names, overridable (e.g. `iptables-legacy-save`) and resolved through PATH by the runner. */
export interface IptablesPrograms {
  readonly iptablesSave: string;
  readonly iptablesRestore: string;
  readonly ip6tablesSave: string;
  readonly ip6tablesRestore: string;
}

export const DEFAULT_IPTABLES_PROGRAMS: IptablesPrograms = {
  iptablesSave: "iptables-save",
  iptablesRestore: "iptables-restore",
  ip6tablesSave: "ip6tables-save",
  ip6tablesRestore: "ip6tables-restore",
};

export interface IptablesNetfilterOptions {
  /** Weft's chain name and rule comment per hook, e.g. postrouting: `WEFT-POSTRTG`, `weft masq`. */
  readonly chains: Readonly<Record<NetfilterHook, { readonly chain: string; readonly comment: string }>>;
  readonly programs?: Partial<IptablesPrograms>;
  /** Seconds iptables-restore waits for the xtables lock (legacy backend); default 10. */
  readonly lockWaitSeconds?: number;
  /** Per-process timeout in milliseconds; default 30 000. */
  readonly timeoutMs?: number;
  /** Receives tolerated read failures (debug). */
  readonly logger?: Logger;
}

const HOOK_PLACE: Readonly<Record<NetfilterHook, { table: IptablesTable; from: "POSTROUTING" | "FORWARD" }>> = {
  postrouting: { table: "nat", from: "POSTROUTING" },
  forward: { table: "filter", from: "FORWARD" },
};

/** The IptablesChainSpec of each hook for the given names. */
export function iptablesChainSpecs(chains: IptablesNetfilterOptions["chains"]): Record<NetfilterHook, IptablesChainSpec> {
  return {
    postrouting: { ...HOOK_PLACE.postrouting, ...chains.postrouting },
    forward: { ...HOOK_PLACE.forward, ...chains.forward },
  };
}

// --- Rendering ------------------------------------------------------------------------------------------

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function addr(flag: "-s" | "-d", m: NetMatch): string {
  return `${m.negate ? "! " : ""}${flag} ${m.net}`;
}

/** A rule's specification as iptables-save prints it (everything after `-A <chain> `). */
export function iptablesRuleSpec(rule: NetfilterRule, comment: string): string {
  const parts: string[] = [];
  if (rule.markBits !== undefined) parts.push(`-m mark --mark ${hex(rule.markBits)}/${hex(rule.markBits)}`);
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

/**
 * A rule of Weft's chain as data: recognised only when it is one Weft could have written (it renders back to
 * exactly `spec` with `comment`); anything else is returned as printed.
 */
export function parseIptablesRule(spec: string, comment: string): NetfilterRule | UnrecognisedRule {
  const words = spec.replace(/--comment "[^"]*"/, "--comment C").split(/\s+/);
  let markBits: number | undefined;
  let src: NetMatch | undefined;
  let dst: NetMatch | undefined;
  let verdict: NetfilterRule["verdict"] | undefined;
  let fullyRandom = false;
  let negate = false;
  const unrecognised = { unrecognised: spec };
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (w === "!") negate = true;
    else if (w === "-m" && words[i + 1] === "mark" && words[i + 2] === "--mark") {
      const [v, m] = (words[i + 3] ?? "").split("/");
      if (v === undefined || v !== m) return unrecognised;
      markBits = Number(v);
      i += 3;
    } else if (w === "-m" && words[i + 1] === "comment" && words[i + 2] === "--comment") i += 3;
    else if (w === "-s" || w === "-d") {
      const net = IPNet.tryParse(words[i + 1] ?? "", true)?.net;
      if (!net) return unrecognised;
      if (w === "-s") src = { net, negate };
      else dst = { net, negate };
      negate = false;
      i += 1;
    } else if (w === "-j") {
      const t = words[i + 1];
      verdict = t === "RETURN" ? "return" : t === "ACCEPT" ? "accept" : t === "MASQUERADE" ? "masquerade" : undefined;
      i += 1;
    } else if (w === "--random-fully") fullyRandom = true;
    else return unrecognised;
  }
  if (!verdict || Number.isNaN(markBits)) return unrecognised;
  const rule: NetfilterRule = {
    ...(markBits !== undefined ? { markBits } : {}),
    ...(src ? { src } : {}),
    ...(dst ? { dst } : {}),
    verdict,
    ...(verdict === "masquerade" ? { fullyRandom } : {}),
  };
  return iptablesRuleSpec(rule, comment) === spec ? rule : unrecognised;
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

/** Joins per-table lines into one restore payload; empty string when there is nothing to do. */
export function restorePayload(tables: ReadonlyArray<{ table: IptablesTable; lines: readonly string[] }>): string {
  let out = "";
  for (const t of tables) if (t.lines.length > 0) out += `*${t.table}\n${t.lines.join("\n")}\nCOMMIT\n`;
  return out;
}

/** What Weft owns in one family, from the two saved tables. */
export function iptablesState(family: Family, specs: Readonly<Record<NetfilterHook, IptablesChainSpec>>, tables: Readonly<Record<IptablesTable, SavedTable>>): NetfilterState {
  const chains: Partial<Record<NetfilterHook, Array<NetfilterRule | UnrecognisedRule>>> = {};
  const strays: string[] = [];
  for (const hook of NETFILTER_HOOKS) {
    const spec = specs[hook];
    const live = tables[spec.table];
    if (live.chains.has(spec.chain)) {
      chains[hook] = live.rules.filter((r) => r.chain === spec.chain).map((r) => parseIptablesRule(r.spec, spec.comment));
    }
    const jump = iptablesJumpSpec(spec);
    let jumpSeen = false;
    for (const r of ownedOutside(live, spec)) {
      if (!jumpSeen && r.chain === spec.from && r.spec === jump && live.chains.has(spec.chain)) jumpSeen = true;
      else strays.push(`-t ${spec.table} -A ${r.chain} ${r.spec}`);
    }
    if (live.chains.has(spec.chain) && !jumpSeen) strays.push(`-t ${spec.table}: no jump from ${spec.from} to ${spec.chain}`);
  }
  return { family, chains, strays };
}

// --- The adapter ----------------------------------------------------------------------------------------

interface FamilyPrograms {
  readonly save: string;
  readonly restore: string;
  /** Label for reports: `iptables` / `ip6tables`. */
  readonly label: string;
}

/** NetfilterPort over iptables-save / iptables-restore. */
export class IptablesNetfilter implements NetfilterPort {
  readonly mode = "iptables" as const;
  private readonly tool: NetfilterTool;
  private readonly programs: IptablesPrograms;
  private readonly specs: Record<NetfilterHook, IptablesChainSpec>;
  private readonly lockWait: number;
  private readonly logger: Logger;
  private readonly fullyRandom = new Map<Family, Promise<NetfilterSupport>>();
  private readonly queue = new SerialQueue();

  constructor(runner: ProcessRunner, options: IptablesNetfilterOptions) {
    this.tool = new NetfilterTool(runner, options.timeoutMs ?? 30_000);
    this.programs = { ...DEFAULT_IPTABLES_PROGRAMS, ...options.programs };
    this.specs = iptablesChainSpecs(options.chains);
    this.lockWait = options.lockWaitSeconds ?? 10;
    this.logger = options.logger ?? silentLogger;
  }

  private bin(f: Family): FamilyPrograms {
    return f === "v4"
      ? { save: this.programs.iptablesSave, restore: this.programs.iptablesRestore, label: "iptables" }
      : { save: this.programs.ip6tablesSave, restore: this.programs.ip6tablesRestore, label: "ip6tables" };
  }

  read(family: Family): Promise<NetfilterState> {
    return this.queue.run(async () => iptablesState(family, this.specs, await this.save(this.bin(family))));
  }

  apply(rulesets: readonly NetfilterRuleset[]): Promise<NetfilterChange[]> {
    return this.queue.run(async () => {
      for (const r of rulesets) validateRuleset(r);
      const out: NetfilterChange[] = [];
      for (const r of rulesets) out.push(await this.sync(r));
      return out;
    });
  }

  remove(): Promise<string[]> {
    return this.queue.run(async () => {
      const removed: string[] = [];
      for (const family of ["v4", "v6"] as const) removed.push(...(await this.sync({ family, chains: {} })).rewritten);
      return removed;
    });
  }

  /**
   * Probes once per family whether MASQUERADE --random-fully is accepted, with `restore --test` on a scratch
   * chain (parsed and built, never committed, so nothing appears in the tables). Old iptables (< 1.6.2)
   * rejects the option.
   */
  supportsFullyRandom(f: Family): Promise<NetfilterSupport> {
    let p = this.fullyRandom.get(f);
    if (!p) {
      const bin = this.bin(f);
      const probe = `*nat\n:WEFT-PROBE - [0:0]\n-A WEFT-PROBE -j MASQUERADE --random-fully\nCOMMIT\n`;
      p = this.tool.run(bin.restore, ["--test", "--noflush", `--wait=${this.lockWait}`], probe).then((r) =>
        r.exitCode === 0 ? { supported: true } : { supported: false, detail: `${bin.restore}: ${r.stderr.trim().split("\n")[0]}` },
      );
      this.fullyRandom.set(f, p);
      p.catch(() => this.fullyRandom.delete(f));
    }
    return p;
  }

  private async save(bin: FamilyPrograms): Promise<Record<IptablesTable, SavedTable>> {
    const [nat, filter] = await Promise.all(
      (["nat", "filter"] as const).map(async (table) => parseIptablesSave((await this.tool.check(bin.save, ["-t", table])).stdout, table)),
    );
    return { nat: nat!, filter: filter! };
  }

  /** Reads both tables of the family, plans, and applies one restore when needed. */
  private async sync(ruleset: NetfilterRuleset): Promise<NetfilterChange> {
    const { family } = ruleset;
    const bin = this.bin(family);
    const empty = NETFILTER_HOOKS.every((h) => ruleset.chains[h] === undefined);
    let live: Record<IptablesTable, SavedTable>;
    try {
      live = await this.save(bin);
    } catch (err) {
      // A host without that family's tools, or whose kernel has no such tables (IPv6 disabled), cannot hold
      // rules of Weft's: for a removal, a failed read counts as "nothing there". A failed write still throws.
      if (empty && err instanceof WeftError) {
        this.logger.debug(`${bin.label}: cannot read the tables, so no Weft rules to remove there: ${errorMessage(err)}`);
        return { family, rewritten: [], before: undefined };
      }
      throw err;
    }
    const before = iptablesState(family, this.specs, live);
    const plans = NETFILTER_HOOKS.map((hook) => {
      const spec = this.specs[hook];
      const rules = ruleset.chains[hook];
      return { table: spec.table, lines: planIptablesChain(live[spec.table], spec, rules?.map((r) => iptablesRuleSpec(r, spec.comment))) };
    });
    const payload = restorePayload(plans);
    if (payload === "") return { family, rewritten: [], before };
    await this.tool.check(bin.restore, ["--noflush", `--wait=${this.lockWait}`], payload);
    return { family, rewritten: plans.filter((p) => p.lines.length > 0).map((p) => `${bin.label} ${p.table}`), before };
  }
}
