/**
 * A canonical picture of a node's networking state, read through the KernelPort only (so it works on the
 * FakeKernel and on a real namespace alike). Tests compare pictures: "the state after remove equals the state
 * before add" is a statement about the kernel, not about which calls a backend made.
 */
import type { Family } from "@weft/core";
import type { KernelPort } from "@weft/kernel";

/** A node's networking state as sorted text lines, for comparing states before and after. */
export interface KernelSnapshot {
  /** One line per object, sorted: `link weft.1 vxlan mtu=1450 ...`, `route v4 254 198.19.2.0/24 via ...`. */
  readonly lines: readonly string[];
  /** Link name → ifindex; a changed index means the link was deleted and created again. */
  readonly linkIndexes: Readonly<Record<string, number>>;
}

const fmt = (o: Record<string, unknown>): string =>
  Object.keys(o)
    .sort()
    .filter((k) => o[k] !== undefined)
    .map((k) => `${k}=${typeof o[k] === "object" ? JSON.stringify(o[k]) : String(o[k])}`)
    .join(" ");

/** A kind's state as a reconciler snapshot gives it (DatapathEngine.snapshotKinds). */
export interface KindState {
  readonly kind: string;
  readonly state: readonly unknown[];
}

/** Canonical JSON (object keys sorted), so equal states give equal lines. */
function canonical(x: unknown): string {
  if (Array.isArray(x)) return `[${x.map(canonical).join(",")}]`;
  if (x && typeof x === "object") {
    return `{${Object.keys(x)
      .sort()
      .filter((k) => (x as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((x as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(x) ?? "undefined";
}

/** The snapshot lines of extra kinds: `kind <name> <object as canonical JSON>`, one per object. */
export function kindLines(kinds: readonly KindState[]): string[] {
  return kinds.flatMap((k) => k.state.map((o) => `kind ${k.kind} ${canonical(o)}`)).sort();
}

/**
 * Reads links, addresses (IPv6 link-local left out), routes of every table, neighbours and FDB entries through
 * `kernel`; on a kernel that can list its sysctls (the FakeKernel's `sysctlTable`), every sysctl too, so a
 * backend that changes one and leaves it changed is caught whatever its reconciler reports.
 */
export async function snapshotKernel(kernel: KernelPort): Promise<KernelSnapshot> {
  const lines: string[] = [];
  const linkIndexes: Record<string, number> = {};
  const links = await kernel.listLinks();
  for (const l of links) {
    linkIndexes[l.name] = l.index;
    const { index: _index, operState: _oper, name, kind, ...rest } = l;
    lines.push(`link ${name} ${kind} ${fmt(rest as Record<string, unknown>)}`);
  }
  for (const a of await kernel.listAddresses()) {
    // IPv6 link-local addresses come and go with the kernel's address generation; they are nobody's intent.
    if (/^fe[89ab][0-9a-f]:/i.test(a.address)) continue;
    lines.push(`address ${a.dev} ${a.address}`);
  }
  for (const family of ["v4", "v6"] as Family[]) {
    for (const r of await kernel.listRoutes({ family, table: "all" })) {
      const { family: f, dst, table, ...rest } = r;
      lines.push(`route ${f} ${table ?? 254} ${dst} ${fmt(rest as Record<string, unknown>)}`);
    }
  }
  for (const n of await kernel.listNeighbours({})) {
    lines.push(`neighbour ${n.dev} ${n.ip} ${n.lladdr ?? "-"} ${n.state}`);
  }
  for (const l of links) {
    for (const f of await kernel.listFdb({ dev: l.name })) {
      lines.push(`fdb ${f.dev} ${f.mac} dst=${f.dst ?? "-"} self=${f.self} permanent=${f.permanent}`);
    }
  }
  const table = (kernel as { sysctlTable?: () => Record<string, string> }).sysctlTable;
  if (typeof table === "function") for (const [k, v] of Object.entries(table.call(kernel))) lines.push(`sysctl ${k}=${v}`);
  lines.sort();
  return { lines, linkIndexes };
}

/** Lines only in `a` (`-`) and only in `b` (`+`), for assertion messages; empty when equal. */
export function diffSnapshots(a: KernelSnapshot, b: KernelSnapshot): string[] {
  const inA = new Set(a.lines);
  const inB = new Set(b.lines);
  return [...a.lines.filter((l) => !inB.has(l)).map((l) => `- ${l}`), ...b.lines.filter((l) => !inA.has(l)).map((l) => `+ ${l}`)];
}

/** Links present in both pictures whose ifindex changed (deleted and created again). */
export function recreatedLinks(before: KernelSnapshot, after: KernelSnapshot): string[] {
  return Object.keys(before.linkIndexes).filter((n) => after.linkIndexes[n] !== undefined && after.linkIndexes[n] !== before.linkIndexes[n]);
}
