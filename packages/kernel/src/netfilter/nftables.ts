/**
 * NetfilterPort through nft: Flannel's `EnableNFTables` mode (flannel.md §6.2).
 *
 * Weft owns one whole table per family (e.g. `ip weft-ipv4`, `ip6 weft-ipv6`), each with up to two base chains:
 *   <postrouting chain>  type nat hook postrouting priority srcnat; policy accept;   (masquerade)
 *   <forward chain>      type filter hook forward priority filter; policy accept;    (forward accept)
 * Owning the table means no comments or handles are needed to tell Weft's rules apart: everything in it is ours.
 *
 * One pass: `nft -j list table <family> <name>` per family (exit 1 "No such file or directory" = absent),
 * compared structurally against the JSON nft itself would print for the desired rules; only on a difference
 * one `nft -f -` transaction for all families: `add table; add chain {spec}; flush chain; add rule ...`.
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
import { type Family, IPAddress, IPNet, type Logger, SerialQueue, WeftError, errorMessage, silentLogger } from "@weft/core";
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
import { NetfilterTool, netfilterError } from "./run.js";

export type NftFamily = "ip" | "ip6";

/** A base chain Weft wants, with the spec nft reports back for it. */
export interface NftChainDesired {
  readonly name: string;
  readonly type: "nat" | "filter";
  readonly hook: "postrouting" | "forward";
  /** Named priority as written. */
  readonly priority: "srcnat" | "filter";
  /** The same priority as nft -j prints it. */
  readonly prio: number;
  readonly rules: readonly NetfilterRule[];
}

export interface NftTableDesired {
  readonly family: NftFamily;
  readonly name: string;
  readonly chains: readonly NftChainDesired[];
}

export interface NftablesNetfilterOptions {
  /** Weft's table per family, e.g. v4: `{ family: "ip", name: "weft-ipv4" }`. */
  readonly tables: Readonly<Record<Family, { readonly family: NftFamily; readonly name: string }>>;
  /** Weft's base chain name per hook, e.g. postrouting: `postrtg`. */
  readonly chains: Readonly<Record<NetfilterHook, string>>;
  /** The nft program; default `nft`. */
  readonly program?: string;
  /** Per-process timeout in milliseconds; default 30 000. */
  readonly timeoutMs?: number;
  /** Receives tolerated read failures (debug). */
  readonly logger?: Logger;
}

const HOOK_CHAIN: Readonly<Record<NetfilterHook, Pick<NftChainDesired, "type" | "hook" | "priority" | "prio">>> = {
  postrouting: { type: "nat", hook: "postrouting", priority: "srcnat", prio: 100 },
  forward: { type: "filter", hook: "forward", priority: "filter", prio: 0 },
};

/** The nft table that holds `ruleset` under the given names (no chains: the table must not exist). */
export function nftTableFor(ruleset: NetfilterRuleset, names: Pick<NftablesNetfilterOptions, "tables" | "chains">): NftTableDesired {
  const chains: NftChainDesired[] = [];
  for (const hook of NETFILTER_HOOKS) {
    const rules = ruleset.chains[hook];
    if (rules) chains.push({ name: names.chains[hook], ...HOOK_CHAIN[hook], rules });
  }
  return { ...names.tables[ruleset.family], chains };
}

// --- Rendering: text ----------------------------------------------------------------------------------------

function markHex(bits: number): string {
  return `0x${bits.toString(16).padStart(8, "0")}`;
}

function addrText(fam: NftFamily, field: "saddr" | "daddr", m: NetMatch): string {
  return `${fam} ${field} ${m.negate ? "!= " : ""}${m.net}`;
}

/** A rule's statement as `nft list` prints it, e.g. `ip saddr 198.19.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random`. */
export function nftRuleText(rule: NetfilterRule, fam: NftFamily): string {
  const parts: string[] = [];
  if (rule.markBits !== undefined) parts.push(`meta mark & ${markHex(rule.markBits)} == ${markHex(rule.markBits)}`);
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

export type NftJson = null | boolean | number | string | NftJson[] | { [k: string]: NftJson };

function netJson(net: IPNet): NftJson {
  return net.prefix === net.ip.bits ? net.ip.toString() : { prefix: { addr: net.ip.toString(), len: net.prefix } };
}

/** The `expr` array `nft -j list` prints for a rule. */
export function nftRuleJson(rule: NetfilterRule, fam: NftFamily): NftJson[] {
  const expr: NftJson[] = [];
  if (rule.markBits !== undefined) expr.push({ match: { op: "==", left: { "&": [{ meta: { key: "mark" } }, rule.markBits] }, right: rule.markBits } });
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

/** Past this depth stableJson writes a marker instead of recursing: nothing nft prints for Weft nests so deep. */
const STABLE_JSON_MAX_DEPTH = 64;

/**
 * JSON with object keys sorted, so two values compare by content. A value nested deeper than 64 levels (never one
 * nft prints for a rule Weft could have written) is cut with a `"(nested too deeply)"` marker rather than
 * overflowing the stack.
 */
export function stableJson(v: unknown, depth = 0): string {
  if (depth > STABLE_JSON_MAX_DEPTH && v !== null && typeof v === "object") return '"(nested too deeply)"';
  if (Array.isArray(v)) return `[${v.map((x) => stableJson(x, depth + 1)).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson(o[k], depth + 1)}`)
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
  readonly rules: NftJson[][];
}

/** One table as `nft -j list table` printed it; undefined when the table does not exist. */
export type NftLiveTable = { readonly chains: ReadonlyMap<string, NftLiveChain> } | undefined;

/** Parses `nft -j list table <family> <name>` output. */
export function parseNftTable(jsonText: string, family: NftFamily, name: string): NftLiveTable {
  let doc: unknown;
  try {
    doc = JSON.parse(jsonText);
  } catch (err) {
    throw new WeftError("KERNEL_FAILED", `nft -j list table ${family} ${name}: output is not JSON (${String(err)})`);
  }
  const items = typeof doc === "object" && doc !== null ? (doc as { nftables?: unknown }).nftables : undefined;
  if (!Array.isArray(items)) throw new WeftError("KERNEL_FAILED", `nft -j list table ${family} ${name}: no "nftables" array in the output`);
  const chains = new Map<string, { name: string; type?: string; hook?: string; prio?: number; policy?: string; rules: NftJson[][] }>();
  let seenTable = false;
  // Anything that is not an object where nft prints one is not Weft's: skipped, never a TypeError.
  const obj = <T>(x: unknown): T | undefined => (typeof x === "object" && x !== null && !Array.isArray(x) ? (x as T) : undefined);
  for (const raw of items as unknown[]) {
    const item = obj<Record<string, unknown>>(raw);
    if (!item) continue;
    const table = obj<{ family?: string; name?: string }>(item.table);
    if (table && table.family === family && table.name === name) seenTable = true;
    const c = obj<{ family?: string; table?: string; name?: string; type?: string; hook?: string; prio?: number; policy?: string }>(item.chain);
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
    const r = obj<{ family?: string; table?: string; chain?: string; expr?: NftJson[] }>(item.rule);
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

function parseNet(v: unknown): IPNet | undefined {
  if (typeof v === "string") {
    const ip = IPAddress.tryParse(v);
    return ip ? IPNet.of(ip, ip.bits) : undefined;
  }
  const p = (v as { prefix?: { addr?: unknown; len?: unknown } } | null)?.prefix;
  if (p && typeof p.addr === "string" && typeof p.len === "number") return IPNet.tryParse(`${p.addr}/${p.len}`, true)?.net;
  return undefined;
}

/** A rule's `expr` as data: recognised only when it is one Weft could have written (it renders back to the same JSON). */
export function parseNftRule(expr: NftJson[], fam: NftFamily): NetfilterRule | UnrecognisedRule {
  const unrecognised = { unrecognised: stableJson(expr) };
  let markBits: number | undefined;
  let src: NetMatch | undefined;
  let dst: NetMatch | undefined;
  let verdict: NetfilterRule["verdict"] | undefined;
  let fullyRandom = false;
  for (const e of expr) {
    if (e === null || typeof e !== "object" || Array.isArray(e)) return unrecognised;
    if ("match" in e) {
      if (typeof e.match !== "object" || e.match === null) return unrecognised;
      const m = e.match as { op?: string; left?: Record<string, unknown> | null; right?: unknown };
      const and = m.left?.["&"];
      if (Array.isArray(and) && typeof m.right === "number") markBits = m.right;
      const payload = m.left?.payload as { field?: string } | undefined;
      if (payload && (payload.field === "saddr" || payload.field === "daddr")) {
        const net = parseNet(m.right);
        if (!net) return unrecognised;
        const match = { net, negate: m.op === "!=" };
        if (payload.field === "saddr") src = match;
        else dst = match;
      }
    } else if ("masquerade" in e) {
      verdict = "masquerade";
      fullyRandom = (e.masquerade as { flags?: unknown } | null)?.flags === "fully-random";
    } else if ("return" in e) verdict = "return";
    else if ("accept" in e) verdict = "accept";
    else return unrecognised;
  }
  if (!verdict) return unrecognised;
  const rule: NetfilterRule = {
    ...(markBits !== undefined ? { markBits } : {}),
    ...(src ? { src } : {}),
    ...(dst ? { dst } : {}),
    verdict,
    ...(verdict === "masquerade" ? { fullyRandom } : {}),
  };
  return stableJson(nftRuleJson(rule, fam)) === stableJson(expr) ? rule : unrecognised;
}

/** What Weft owns in one family, from its table as read. */
export function nftState(family: Family, table: { family: NftFamily }, names: Readonly<Record<NetfilterHook, string>>, live: NftLiveTable): NetfilterState {
  const chains: Partial<Record<NetfilterHook, Array<NetfilterRule | UnrecognisedRule>>> = {};
  const strays: string[] = [];
  if (live) {
    for (const [name, c] of live.chains) {
      const hook = NETFILTER_HOOKS.find((h) => names[h] === name && c.hook === HOOK_CHAIN[h].hook && c.type === HOOK_CHAIN[h].type && c.prio === HOOK_CHAIN[h].prio && c.policy === "accept");
      if (hook) chains[hook] = c.rules.map((r) => parseNftRule(r, table.family));
      else strays.push(`chain ${name}`);
    }
  }
  return { family, chains, strays };
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

// --- The adapter ----------------------------------------------------------------------------------------

/** NetfilterPort over nft. */
export class NftablesNetfilter implements NetfilterPort {
  readonly mode = "nftables" as const;
  private readonly tool: NetfilterTool;
  private readonly nft: string;
  private readonly names: Pick<NftablesNetfilterOptions, "tables" | "chains">;
  private readonly logger: Logger;
  private readonly fullyRandom = new Map<Family, Promise<NetfilterSupport>>();
  private readonly queue = new SerialQueue();

  constructor(runner: ProcessRunner, options: NftablesNetfilterOptions) {
    this.tool = new NetfilterTool(runner, options.timeoutMs ?? 30_000);
    this.nft = options.program ?? "nft";
    this.names = { tables: options.tables, chains: options.chains };
    this.logger = options.logger ?? silentLogger;
  }

  read(family: Family): Promise<NetfilterState> {
    return this.queue.run(async () => {
      const t = this.names.tables[family];
      return nftState(family, t, this.names.chains, await this.list(t.family, t.name));
    });
  }

  apply(rulesets: readonly NetfilterRuleset[]): Promise<NetfilterChange[]> {
    return this.queue.run(async () => {
      const commands: string[] = [];
      const out: NetfilterChange[] = [];
      for (const ruleset of rulesets) validateRuleset(ruleset);
      for (const ruleset of rulesets) {
        const desired = nftTableFor(ruleset, this.names);
        let live: NftLiveTable;
        try {
          live = await this.list(desired.family, desired.name);
        } catch (err) {
          // A family to be emptied on a host that cannot list it (no nft, IPv6 disabled) holds nothing of ours.
          if (desired.chains.length > 0 || !(err instanceof WeftError)) throw err;
          this.logger.debug(`nft: cannot list ${desired.family} ${desired.name}, so nothing of Weft's to remove there: ${errorMessage(err)}`);
          out.push({ family: ruleset.family, rewritten: [], before: undefined });
          continue;
        }
        const lines = planNftTable(live, desired);
        commands.push(...lines);
        out.push({
          family: ruleset.family,
          rewritten: lines.length > 0 ? [`${desired.family} ${desired.name}`] : [],
          before: nftState(ruleset.family, desired, this.names.chains, live),
        });
      }
      if (commands.length > 0) await this.tool.check(this.nft, ["-f", "-"], commands.join("\n") + "\n");
      return out;
    });
  }

  /**
   * Deletes Weft's tables that exist (one read, at most one transaction). A host without nft cannot hold
   * them, so a missing nft is not an error here.
   */
  remove(): Promise<string[]> {
    return this.queue.run(async () => {
      let r;
      try {
        r = await this.tool.run(this.nft, ["-j", "list", "tables"]);
      } catch (err) {
        if (err instanceof WeftError && err.code === "PROCESS_MISSING") return [];
        throw err;
      }
      if (r.exitCode !== 0) throw netfilterError(this.nft, ["-j", "list", "tables"], r);
      const doc = JSON.parse(r.stdout) as { nftables?: Array<{ table?: { family?: string; name?: string } }> };
      const present = new Set((doc.nftables ?? []).flatMap((i) => (i.table ? [`${i.table.family} ${i.table.name}`] : [])));
      const gone = Object.values(this.names.tables)
        .map((t) => `${t.family} ${t.name}`)
        .filter((id) => present.has(id));
      if (gone.length > 0) await this.tool.check(this.nft, ["-f", "-"], gone.map((id) => `delete table ${id}`).join("\n") + "\n");
      return gone;
    });
  }

  /**
   * Probes once per family whether `masquerade fully-random` is accepted: `nft -c` sends the transaction
   * to the kernel for validation and aborts it, so the scratch table never exists.
   */
  supportsFullyRandom(f: Family): Promise<NetfilterSupport> {
    let p = this.fullyRandom.get(f);
    if (!p) {
      const fam = this.names.tables[f].family;
      const probe = [
        `add table ${fam} weft-probe`,
        `add chain ${fam} weft-probe p { type nat hook postrouting priority srcnat; }`,
        `add rule ${fam} weft-probe p masquerade fully-random`,
      ].join("\n");
      p = this.tool.run(this.nft, ["-c", "-f", "-"], probe + "\n").then((r) =>
        r.exitCode === 0 ? { supported: true } : { supported: false, detail: `nft (${fam}): ${r.stderr.trim().split("\n")[0]}` },
      );
      this.fullyRandom.set(f, p);
      p.catch(() => this.fullyRandom.delete(f));
    }
    return p;
  }

  private async list(family: NftFamily, name: string): Promise<NftLiveTable> {
    const args = ["-j", "list", "table", family, name];
    const r = await this.tool.run(this.nft, args);
    if (r.exitCode !== 0) {
      if (/No such file or directory/.test(r.stderr)) return undefined;
      throw netfilterError(this.nft, args, r);
    }
    return parseNftTable(r.stdout, family, name);
  }
}
