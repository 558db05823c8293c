/**
 * Link kinds as definitions (LinkKindDefinition, @weft/core): the built-in ones (bridge, veth, vxlan, tun,
 * wireguard, dummy) and any a backend package contributes. LinuxKernel builds `ip link add` lines and reads links
 * back through them, the FakeKernel models them, the links reconciler compares through them. A backend's kind
 * reaches the two kernels through their `linkKinds` option (linkKindsOf the loaded modules) and the reconciler
 * through the LINK_KINDS token (registered from `BackendModule.linkKinds` by the agent).
 */
import { type LinkArgChecks, type LinkKindDefinition, type LinkSpec, type VxlanAttrs, createToken } from "@weft/core";
import * as v from "./validate.js";

const str = (x: unknown): string | undefined => (typeof x === "string" ? x : undefined);
const num = (x: unknown): number | undefined => (typeof x === "number" && Number.isFinite(x) ? x : undefined);

const differs = (label: string, want: unknown, have: unknown): string | undefined =>
  want !== undefined && want !== have ? `${label} ${String(have ?? "unset")} != ${String(want)}` : undefined;

/** The validate.ts checks, as the LinkArgChecks a definition's createArgs receives. */
export const LINK_ARG_CHECKS: LinkArgChecks = {
  ifname: (f, x) => v.ifname(f, x),
  address: (f, x, family) => v.address(f, x, family),
  integer: (f, x, min, max) => v.integer(f, x, min, max),
  mac: (f, x) => v.mac(f, x),
  oneOf: (f, x, allowed) => v.oneOf(f, x, allowed),
  netnsRef: (f, x) => v.netnsRef(f, x),
};

const noAttrs = (kind: string): LinkKindDefinition => ({
  kind,
  createArgs: () => [],
  read: () => ({}),
  incompatibility: () => undefined,
});

/** `veth`: `peer name P [netns N] [mtu M]`; the peer is read back only when it lives in this namespace. */
const VETH: LinkKindDefinition = {
  kind: "veth",
  createArgs(l, check) {
    if (!l.veth) throw new Error(`link ${l.name}: kind veth needs veth.peer; add the peer's name`);
    const args = ["peer", "name", check.ifname("link.veth.peer", l.veth.peer)];
    if (l.veth.peerNetns !== undefined) args.push("netns", check.netnsRef("link.veth.peerNetns", l.veth.peerNetns));
    if (l.mtu !== undefined) args.push("mtu", check.integer("link.mtu", l.mtu, 0, 0xffffffff));
    return args;
  },
  read(_info, entry) {
    const peer = str(entry.link);
    return peer && entry.link_netnsid === undefined ? { veth: { peer } } : {};
  },
  incompatibility(d, a) {
    if (d.veth && a.veth && d.veth.peer !== a.veth.peer && !d.veth.peerNetns) return `veth peer ${a.veth.peer} != ${d.veth.peer}`;
    return undefined;
  },
};

/** `vxlan`: `id VNI [local A] [dev D] dstport P (no)learning [gbp]`; every attribute is immutable. */
const VXLAN: LinkKindDefinition = {
  kind: "vxlan",
  createArgs(l, check) {
    const x = l.vxlan;
    if (!x) throw new Error(`link ${l.name}: kind vxlan needs vxlan attributes (vni, ...); add them`);
    const args = ["id", check.integer("link.vxlan.vni", x.vni, 0, 0xffffff)];
    if (x.local !== undefined) args.push("local", check.address("link.vxlan.local", x.local));
    if (x.dev !== undefined) args.push("dev", check.ifname("link.vxlan.dev", x.dev));
    // Without dstport, ip prints a three-line warning: always pass it.
    args.push("dstport", check.integer("link.vxlan.port", x.port ?? 8472, 0, 65535));
    args.push(x.learning ? "learning" : "nolearning");
    if (x.gbp) args.push("gbp");
    return args;
  },
  read(info, _entry, ctx) {
    const x: { -readonly [K in keyof VxlanAttrs]?: VxlanAttrs[K] } = {
      vni: num(info.id) ?? 0,
      port: num(info.port) ?? 8472,
      learning: info.learning === true,
      gbp: info.gbp === true,
    };
    const local = ctx.ip(info.local) ?? ctx.ip(info.local6);
    if (local) x.local = local;
    const lower = ctx.devName(info.link);
    if (lower) x.dev = lower;
    return { vxlan: x as VxlanAttrs };
  },
  incompatibility(desired, actual) {
    const d = desired.vxlan;
    if (!d) return undefined;
    const a = actual.vxlan;
    if (!a) return "vxlan attributes unreadable";
    const reasons = [
      differs("vni", d.vni, a.vni),
      differs("port", d.port ?? 8472, a.port ?? 8472),
      differs("local", d.local, a.local),
      differs("dev", d.dev, a.dev),
      differs("learning", d.learning ?? false, a.learning ?? false),
      differs("gbp", d.gbp ?? false, a.gbp ?? false),
    ].filter(Boolean);
    return reasons.length ? reasons.join(", ") : undefined;
  },
};

/** `tun`: made by `tuntap add dev X mode tun|tap` (rtnetlink cannot create tun/tap devices). */
const TUN: LinkKindDefinition = {
  kind: "tun",
  createArgs: () => [],
  createCommand(l, check) {
    return ["tuntap", "add", "dev", check.ifname("link.name", l.name), "mode", check.oneOf("link.tun.mode", l.tun?.mode ?? "tun", ["tun", "tap"] as const)];
  },
  read: (info) => ({ tun: { mode: str(info.type) === "tap" ? "tap" : "tun" } }),
  incompatibility: () => undefined,
};

/** The definitions of the built-in kinds. */
export const BUILTIN_LINK_KINDS: readonly LinkKindDefinition[] = [noAttrs("bridge"), VETH, VXLAN, TUN, noAttrs("wireguard"), noAttrs("dummy")];

const KIND_NAME = /^[a-z][a-z0-9_-]{0,31}$/;

/**
 * The link kinds one agent knows: the built-ins plus those contributed. Lookup by kind name; an unknown kind
 * is undefined (the adapter refuses to create it, the reconciler compares only the kind name).
 */
export class LinkKinds {
  private readonly byKind = new Map<string, LinkKindDefinition>();

  /** Throws one line naming the problem for a malformed definition or a kind defined twice. */
  constructor(contributed: readonly LinkKindDefinition[] = []) {
    for (const d of [...BUILTIN_LINK_KINDS, ...contributed]) {
      if (!d || typeof d.kind !== "string" || !KIND_NAME.test(d.kind)) {
        throw new Error(`link kind ${JSON.stringify(d?.kind)} is invalid: use the kernel's kind name (lower-case letters, digits, "_" or "-", e.g. "gre")`);
      }
      if (typeof d.createArgs !== "function" || typeof d.read !== "function" || typeof d.incompatibility !== "function") {
        throw new Error(`link kind "${d.kind}" needs createArgs, read and incompatibility functions; add the missing ones`);
      }
      if (this.byKind.has(d.kind)) {
        throw new Error(`link kind "${d.kind}" is defined twice${BUILTIN_LINK_KINDS.some((b) => b.kind === d.kind) ? " (Weft defines it already)" : ""}: contribute each kind once`);
      }
      this.byKind.set(d.kind, d);
    }
  }

  get(kind: string): LinkKindDefinition | undefined {
    return this.byKind.get(kind);
  }

  /** Every kind name known, built-ins first. */
  kinds(): string[] {
    return [...this.byKind.keys()];
  }

  /** Why `actual` cannot be adopted as `desired` (another kind, or the kind's own incompatibility), else undefined. */
  incompatibility(desired: LinkSpec, actual: LinkSpec): string | undefined {
    if (desired.kind !== actual.kind) return `kind ${actual.kind} != ${desired.kind}`;
    return this.get(desired.kind)?.incompatibility(desired, actual);
  }
}

/** The built-in kinds only. */
export const BUILTIN_LINK_KIND_SET = new LinkKinds();

/**
 * The link kind definitions backends contribute (e.g. `BackendModule.linkKinds` of the loaded module).
 * The datapath engine reads it when it is registered (LinuxKernel and FakeKernel take the kinds as their
 * `linkKinds` option); the built-in kinds need no registration.
 */
export const LINK_KINDS = createToken<readonly LinkKindDefinition[]>("weft.link-kinds");

/**
 * Every link kind the given backend modules contribute (`BackendModule.linkKinds`), for LinuxKernel /
 * FakeKernel `linkKinds` and the LINK_KINDS token. A kind two modules both define is an error at `new LinkKinds`.
 */
export function linkKindsOf(modules: readonly { readonly linkKinds?: readonly LinkKindDefinition[] }[]): LinkKindDefinition[] {
  return modules.flatMap((m) => m.linkKinds ?? []);
}

/** One safe batch token produced by a contributed definition (no whitespace, quotes or leading "-"). */
const TOKEN = /^[A-Za-z0-9_.:/@+=,][A-Za-z0-9_.:/@+=,-]*$/;

/** Checks a definition's argv token; throws InvalidValue naming the kind when it is not one safe token. */
export function linkArgToken(kind: string, token: unknown): string {
  if (typeof token !== "string" || !TOKEN.test(token)) {
    throw new v.InvalidValue(`link kind "${kind}": argument ${JSON.stringify(token)} is not one safe token (letters, digits, _.:/@+=,- and not starting with "-"); fix its createArgs`);
  }
  return token;
}
