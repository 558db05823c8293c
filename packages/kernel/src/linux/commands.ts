/**
 * KernelOp -> iproute2 batch lines. Every value is validated into one safe token first (./validate.ts) and
 * placed after its keyword (`dev X`, `name X`, never a bare positional name), so a name such as "up" or
 * "help" is still read as a name, and no value can add a command or an option.
 *
 * Things this machine's iproute2 (6.1) taught us, each handled below:
 * - Batch lines accept no leading options (`-6 route ...` fails: `Object "-6" is unknown`). None are needed:
 *   every route line carries an explicit destination, from which ip infers the family, so v4 and v6 lines mix
 *   freely in one batch.
 * - `addrgenmode` in `link add` fails with EAFNOSUPPORT, and in one `link set` line it takes effect after
 *   `up` (IFLA_AF_SPEC is applied last), so it gets its own `link set` line, before the one with `up`.
 * - tun/tap devices cannot be made by `link add ... type tun` ("tun/tap creation via rtnetlink is not
 *   supported"), but `tuntap add dev X mode tun` works inside a batch; mtu/master/up follow as `link set`.
 * - Without `dstport`, `link add ... type vxlan` prints a three-line warning; we always pass it.
 * - A vxlan created with `dev` and an MTU above dev MTU - overhead is silently clamped; `link set` of such an
 *   MTU later fails with EINVAL.
 * - A new IPv6 address is "tentative" until DAD ends (~1 s; also while its link is down), and a tentative
 *   address is refused as a route's src ("Invalid source address"). `nodad` makes it usable at once.
 */
import type { LinkSpec, RouteSpec } from "@weft/core";
import { describeOp, KernelError, type KernelOp } from "../port.js";
import { BUILTIN_LINK_KIND_SET, LINK_ARG_CHECKS, type LinkKinds, linkArgToken } from "./link-kinds.js";
import * as v from "./validate.js";

export type Tool = "ip" | "bridge";

export interface CompiledOp {
  readonly tool: Tool;
  /** Lines sent together in the batch. With -force, a failed line does not stop the next one. */
  readonly lines: readonly string[];
  /**
   * Lines that must run only when `lines` succeeded (configuring a link we have just created: if the create
   * failed because the name is taken, they would change somebody else's device).
   */
  readonly followUps: readonly string[];
}

const ADDR_GEN_MODES = ["eui64", "none", "stable_secret", "random"] as const;
const ROUTE_TYPES = ["unicast", "blackhole", "unreachable", "prohibit"] as const;
const ROUTE_SCOPES = ["global", "link", "host"] as const;
const NUD_STATES = ["permanent", "noarp", "reachable", "stale"] as const;
const U32 = 0xffffffff;

export function toolOf(op: KernelOp): Tool {
  return op.op.startsWith("fdb.") ? "bridge" : "ip";
}

/** Compiles one op; throws v.InvalidValue when a value is not acceptable. `kinds`: the link kinds known. */
export function compileOp(op: KernelOp, kinds: LinkKinds = BUILTIN_LINK_KIND_SET): CompiledOp {
  switch (op.op) {
    case "link.add":
      return compileLinkAdd(op.link, kinds);
    case "link.set":
      return { tool: "ip", lines: linkSetLines(v.ifname("name", op.name), op), followUps: [] };
    case "link.del":
      return { tool: "ip", lines: [`link del dev ${v.ifname("name", op.name)}`], followUps: [] };
    case "addr.add":
    case "addr.replace":
    case "addr.del": {
      const p = v.prefix("address", op.addr.address);
      // `nodad` on an IPv4 address makes ip print a warning (and do nothing): sent for IPv6 only.
      const nodad = op.op !== "addr.del" && op.addr.nodad === true && p.includes(":") ? " nodad" : "";
      return { tool: "ip", lines: [`addr ${op.op.slice(5)} ${p} dev ${v.ifname("dev", op.addr.dev)}${nodad}`], followUps: [] };
    }
    case "route.add":
    case "route.replace":
    case "route.del":
      return { tool: "ip", lines: [routeLine(op.op.slice(6) as "add" | "replace" | "del", op.route)], followUps: [] };
    case "neigh.add":
    case "neigh.replace":
    case "neigh.del": {
      const n = op.neigh;
      const ip = v.address("ip", n.ip);
      const dev = v.ifname("dev", n.dev);
      if (op.op === "neigh.del") return { tool: "ip", lines: [`neigh del ${ip} dev ${dev}`], followUps: [] };
      const mac = v.mac("lladdr", n.lladdr);
      const nud = v.oneOf("state", n.state, NUD_STATES);
      return { tool: "ip", lines: [`neigh ${op.op.slice(6)} ${ip} lladdr ${mac} dev ${dev} nud ${nud}`], followUps: [] };
    }
    case "fdb.add":
    case "fdb.append":
    case "fdb.replace":
    case "fdb.del": {
      const f = op.fdb;
      const parts = [`fdb ${op.op.slice(4)}`, v.mac("mac", f.mac), "dev", v.ifname("dev", f.dev)];
      if (f.dst !== undefined) parts.push("dst", v.address("dst", f.dst));
      parts.push(f.self ? "self" : "master");
      if (op.op !== "fdb.del") parts.push(f.permanent ? "permanent" : "static");
      return { tool: "bridge", lines: [parts.join(" ")], followUps: [] };
    }
  }
}

function linkSetLines(name: string, s: { mtu?: number; up?: boolean; master?: string | null; address?: string; addrGenMode?: LinkSpec["addrGenMode"] }): string[] {
  const lines: string[] = [];
  const attrs: string[] = [];
  if (s.address !== undefined) attrs.push("address", v.mac("address", s.address));
  if (s.mtu !== undefined) attrs.push("mtu", v.integer("mtu", s.mtu, 0, U32));
  if (s.master === null) attrs.push("nomaster");
  else if (s.master !== undefined) attrs.push("master", v.ifname("master", s.master));
  if (s.addrGenMode !== undefined) {
    const mode = v.oneOf("addrGenMode", s.addrGenMode, ADDR_GEN_MODES);
    if (attrs.length) lines.push(`link set dev ${name} ${attrs.join(" ")}`);
    lines.push(`link set dev ${name} addrgenmode ${mode}`);
    if (s.up !== undefined) lines.push(`link set dev ${name} ${s.up ? "up" : "down"}`);
    return lines;
  }
  if (s.up !== undefined) attrs.push(s.up ? "up" : "down");
  if (attrs.length) lines.push(`link set dev ${name} ${attrs.join(" ")}`);
  return lines;
}

function compileLinkAdd(l: LinkSpec, kinds: LinkKinds): CompiledOp {
  const name = v.ifname("link.name", l.name);
  const def = kinds.get(l.kind);
  if (!def) {
    throw new v.InvalidValue(`link ${name}: kind ${JSON.stringify(l.kind)} is unknown (known: ${kinds.kinds().join(", ")}); contribute its LinkKindDefinition through BackendModule.linkKinds`);
  }
  // A definition's own error (a missing attribute) is an invalid value of this op: nothing is sent.
  const fromDefinition = <T>(f: () => T): T => {
    try {
      return f();
    } catch (err) {
      if (err instanceof v.InvalidValue) throw err;
      throw new v.InvalidValue(`link ${name} (kind ${def.kind}): ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  if (def.createCommand) {
    // Not made by `link add` (tun/tap): its own command, then the generic attributes as `link set`.
    const argv = fromDefinition(() => def.createCommand!(l, LINK_ARG_CHECKS)).map((t) => linkArgToken(def.kind, t));
    return {
      tool: "ip",
      lines: [argv.join(" ")],
      followUps: linkSetLines(name, { mtu: l.mtu, address: l.address, master: l.master, addrGenMode: l.addrGenMode, up: l.up === true ? true : undefined }),
    };
  }

  // Generic attributes go before `type`; `up` only when no addrgenmode has to be applied first.
  const head = [`link add name ${name}`];
  if (l.address !== undefined) head.push("address", v.mac("link.address", l.address));
  if (l.mtu !== undefined) head.push("mtu", v.integer("link.mtu", l.mtu, 0, U32));
  if (l.master !== undefined) head.push("master", v.ifname("link.master", l.master));
  const upInLine = l.up === true && l.addrGenMode === undefined;
  if (upInLine) head.push("up");
  head.push("type", def.kind);
  head.push(...fromDefinition(() => def.createArgs(l, LINK_ARG_CHECKS)).map((t) => linkArgToken(def.kind, t)));

  const followUps: string[] = [];
  if (l.addrGenMode !== undefined) {
    followUps.push(`link set dev ${name} addrgenmode ${v.oneOf("link.addrGenMode", l.addrGenMode, ADDR_GEN_MODES)}`);
    if (l.up === true) followUps.push(`link set dev ${name} up`);
  }
  return { tool: "ip", lines: [head.join(" ")], followUps };
}

/**
 * `route add|replace|del [TYPE] DST [via GW] [dev X] [onlink] [table N] [proto N] [scope S] [metric N]
 * [src A] [mtu N]`. For `del` only the fields the kernel matches on are sent (type, dst, via, dev, table,
 * proto, metric): each one narrows the match, so a del carrying proto 87 can never remove somebody else's
 * route to the same destination.
 */
function routeLine(verb: "add" | "replace" | "del", r: RouteSpec): string {
  const family = v.oneOf("route.family", r.family, ["v4", "v6"] as const);
  const dst = v.cidr("route.dst", r.dst, family);
  const type = v.oneOf("route.type", r.type ?? "unicast", ROUTE_TYPES);
  const parts = [`route ${verb}`];
  if (type !== "unicast") parts.push(type);
  parts.push(dst);
  if (r.gateway !== undefined) parts.push("via", v.address("route.gateway", r.gateway, family));
  if (r.dev !== undefined) parts.push("dev", v.ifname("route.dev", r.dev));
  if (r.onlink && verb !== "del") parts.push("onlink");
  if (r.table !== undefined) parts.push("table", v.integer("route.table", r.table, 1, U32));
  if (r.protocol !== undefined) parts.push("proto", v.integer("route.protocol", r.protocol, 0, 255));
  if (r.scope !== undefined && verb !== "del") parts.push("scope", v.oneOf("route.scope", r.scope, ROUTE_SCOPES));
  if (r.metric !== undefined) parts.push("metric", v.integer("route.metric", r.metric, 0, U32));
  if (r.src !== undefined && verb !== "del") parts.push("src", v.address("route.src", r.src, family));
  if (r.mtu !== undefined && verb !== "del") parts.push("mtu", v.integer("route.mtu", r.mtu, 0, U32));
  return parts.join(" ");
}

/**
 * The value checks LinuxKernel applies before sending an op, as a KernelError (KERNEL_INVALID) or undefined.
 * Exported so that other KernelPort implementations (the fake) refuse exactly what the adapter refuses.
 */
export function validateKernelOp(op: KernelOp, kinds: LinkKinds = BUILTIN_LINK_KIND_SET): KernelError | undefined {
  try {
    compileOp(op, kinds);
    return undefined;
  } catch (err) {
    if (err instanceof v.InvalidValue) return new KernelError("KERNEL_INVALID", `${describeOp(op)}: ${err.message}; nothing was sent`, op);
    throw err;
  }
}
