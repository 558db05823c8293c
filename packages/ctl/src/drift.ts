/**
 * `weftctl drift`: what weftd's next full reconcile would change on this node right now — kernel objects Weft
 * owns that are missing, different, or no longer wanted — read from weftd's `/drift` (nothing is changed).
 */
import { escapeShort, escapeText } from "./escape.js";
import { EndpointError, httpGet } from "./http-client.js";

export interface DriftKind {
  readonly kind: string;
  readonly add: readonly string[];
  readonly update: readonly { readonly key: string; readonly reason: string }[];
  readonly remove: readonly string[];
  readonly refused?: readonly { readonly key: string; readonly reason: string }[];
}

export async function fetchDrift(endpoint: string, timeoutMs?: number): Promise<DriftKind[]> {
  const r = await httpGet(endpoint, "/drift", timeoutMs);
  if (r.status === 404) throw new EndpointError(`${endpoint}/drift: not found: this weftd is older than weftctl drift; upgrade it`);
  if (r.status !== 200) throw new EndpointError(`${endpoint}/drift: HTTP ${r.status}: ${escapeShort(r.body.trim().split("\n")[0] ?? "")}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(r.body);
  } catch {
    throw new EndpointError(`${endpoint}/drift did not answer JSON: is that weftd's health port?`);
  }
  if (!Array.isArray(parsed)) throw new EndpointError(`${endpoint}/drift answered ${typeof parsed}, not a list: is that weftd's health port?`);
  if (!parsed.every(isDriftKind)) throw new EndpointError(`${endpoint}/drift answered a list that is not weftd's drift plan (kind, add, update, remove): is that weftd's health port?`);
  return parsed as DriftKind[];
}

const strings = (x: unknown) => Array.isArray(x) && x.every((s) => typeof s === "string");
const keyed = (x: unknown) => Array.isArray(x) && x.every((u) => typeof u === "object" && u !== null && typeof (u as { key?: unknown }).key === "string" && typeof (u as { reason?: unknown }).reason === "string");

/** True when `x` has the shape of one DriftKind (what renderDrift reads). */
function isDriftKind(x: unknown): boolean {
  if (typeof x !== "object" || x === null) return false;
  const k = x as Record<string, unknown>;
  return typeof k.kind === "string" && strings(k.add) && keyed(k.update) && strings(k.remove) && (k.refused === undefined || keyed(k.refused));
}

/** True when a full reconcile would change nothing. */
export function inSync(kinds: readonly DriftKind[]): boolean {
  return kinds.every((k) => k.add.length + k.update.length + k.remove.length + (k.refused?.length ?? 0) === 0);
}

export function renderDrift(kinds: readonly DriftKind[]): string {
  if (inSync(kinds)) return "in sync: the kernel holds exactly what weftd wants (or weftd is still starting)\n";
  const lines: string[] = [];
  // Kinds, keys and reasons come from weftd: shown with their control characters escaped.
  const e = escapeText;
  for (const k of kinds) {
    const kind = e(k.kind).padEnd(11);
    for (const key of k.add) lines.push(`  ${kind} missing   ${e(key)}`);
    for (const u of k.update) lines.push(`  ${kind} differs   ${e(u.key)}: ${e(u.reason)}`);
    for (const key of k.remove) lines.push(`  ${kind} stale     ${e(key)}`);
    for (const r of k.refused ?? []) lines.push(`  ${kind} blocked   ${e(r.key)}: ${e(r.reason)}`);
  }
  return `drift: the next reconcile (within --resync-interval) would make ${lines.length} change(s):\n${lines.join("\n")}\n`;
}
