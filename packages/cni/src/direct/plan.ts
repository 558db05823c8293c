/**
 * What a direct-mode ADD puts where, computed without touching anything (so it is unit-tested as data):
 *
 * node (host) namespace, one `ip -force -batch` process:
 *   link add <bridge> type bridge            only when the bridge is missing (then in a batch of its own, so
 *                                            IPv6 DAD can be switched off before its address goes on)
 *   link set <bridge> mtu M up               when it exists with another MTU or down
 *   addr replace <gateway>/<len> dev <bridge>   per family (idempotent)
 *   link add <vethXXXXXXXX> mtu M master <bridge> up type veth peer name <CNI_IFNAME> netns <CNI_NETNS> mtu M
 * container namespace, one more `ip -force -batch` process:
 *   link set <ifname> address <MAC> up       MAC derived from the address (0a:58:<IPv4>), stable across pods
 *                                            that reuse an address, so peers' ARP caches stay right
 *   addr add <ip>/<len> dev <ifname>        IPv6 with `nodad` (see bridge.ts)
 *   route add <cluster network> via <gateway> dev <ifname>   and default via <gateway> with isDefaultGateway
 *
 * The host veth is named from a hash of (network, container id, ifname), so DEL finds it without any state.
 */
import { type Family, IPAddress, IPNet, type RouteSpec } from "@weft/core";
import type { KernelOp } from "@weft/kernel";
import type { WeftNetConf } from "../config.js";
import { invalidConfig } from "../errors.js";
import type { Allocation } from "../ipam/allocator.js";
import { checkRangeSets, makeRange, type RangeSet } from "../ipam/range.js";
import type { CniResult, CniRoute } from "../result.js";
import { sha256Hex } from "../sha256.js";
import type { SubnetFile } from "../subnet-file.js";

/** `veth` + 8 hex digits of sha256(network NUL containerID NUL ifname): 12 characters, like the bridge plugin's. */
export function hostVethName(network: string, containerID: string, ifname: string): string {
  return `veth${sha256Hex(`${network}\0${containerID}\0${ifname}`).slice(0, 8)}`;
}

/** 0a:58 + the IPv4 address (or the last 4 bytes of the IPv6 address): locally administered, unicast. */
export function macForAddress(ip: IPAddress): string {
  const b = ip.toBytes().slice(-4);
  return ["0a", "58", ...b.map((x) => x.toString(16).padStart(2, "0"))].join(":");
}

export interface FamilyPlan {
  readonly family: Family;
  readonly network: IPNet;
  /** The bridge's address with the node subnet's prefix length, e.g. 198.19.1.1/24. */
  readonly bridgeAddress: string;
  readonly gateway: IPAddress;
}

export interface NodePlan {
  readonly mtu: number;
  readonly families: readonly FamilyPlan[];
  readonly rangeSets: readonly RangeSet[];
}

/** The range sets (from ipam.ranges, or one per family of the subnet file) and the bridge's addresses. */
export function planNode(conf: WeftNetConf, subnet: SubnetFile): NodePlan {
  const families: FamilyPlan[] = [];
  for (const [family, f] of [["v4", subnet.ipv4], ["v6", subnet.ipv6]] as const) {
    if (!f) continue;
    families.push({ family, network: f.network, gateway: f.gateway, bridgeAddress: `${f.gateway}/${f.subnet.prefix}` });
  }
  let rangeSets: RangeSet[];
  if (conf.ipam.ranges) {
    rangeSets = conf.ipam.ranges.map((set, s) =>
      set.map((r, i) => {
        try {
          return makeRange(r);
        } catch (err) {
          const [key, ...rest] = (err as Error).message.split(": ");
          throw invalidConfig(`ipam.ranges[${s}][${i}].${key}`, rest.join(": "));
        }
      }),
    );
    const problem = checkRangeSets(rangeSets);
    if (problem) throw invalidConfig(`ipam.ranges${problem.split(" ")[0]}`, problem.slice(problem.indexOf(" ") + 1));
  } else {
    rangeSets = families.map((f) => {
      const sub = f.family === "v4" ? subnet.ipv4!.subnet : subnet.ipv6!.subnet;
      try {
        return [makeRange({ subnet: sub.toString(), gateway: f.gateway.toString() })];
      } catch (err) {
        throw invalidConfig(`ipam.ranges`, `cannot be derived from ${subnet.path}: ${(err as Error).message}`);
      }
    });
  }
  // Checked here, before anything is reserved or written: a route of a family the pod will not have.
  const allocated = new Set(rangeSets.map((set) => set[0]?.subnet.family));
  conf.ipam.routes.forEach((r, i) => {
    const fam = IPNet.parse(r.dst).family;
    if (!allocated.has(fam)) throw invalidConfig(`ipam.routes[${i}].dst`, `${r.dst} is IP${fam} but the pod gets no IP${fam} address`);
  });
  return { mtu: conf.mtu ?? subnet.mtu, families, rangeSets };
}

const DEFAULT_DST: Record<Family, string> = { v4: "0.0.0.0/0", v6: "::/0" };

/** The pod's routes as the result reports them: cluster networks, ipam.routes, then the default routes. */
export function planRoutes(conf: WeftNetConf, node: NodePlan, allocations: readonly Allocation[]): CniRoute[] {
  const have = new Set(allocations.map((a) => a.ip.family));
  const routes: CniRoute[] = [];
  const seen = new Set<string>();
  const push = (r: CniRoute) => {
    if (seen.has(r.dst)) return;
    seen.add(r.dst);
    routes.push(r);
  };
  for (const f of node.families) if (have.has(f.family)) push({ dst: f.network.toString() });
  conf.ipam.routes.forEach((r, i) => {
    const fam = IPNet.parse(r.dst).family;
    if (!have.has(fam)) throw invalidConfig(`ipam.routes[${i}].dst`, `${r.dst} is IP${fam} but the pod gets no IP${fam} address`);
    push(r);
  });
  if (conf.isDefaultGateway) {
    for (const a of allocations) push({ dst: DEFAULT_DST[a.ip.family], gw: a.range.gateway.toString() });
  }
  return routes;
}

export interface AttachmentNames {
  readonly bridge: string;
  readonly hostVeth: string;
  readonly ifname: string;
  readonly netns: string;
}

/** Host-side ops after the bridge exists: bridge settings, its addresses, the veth pair. */
export function hostOps(node: NodePlan, names: AttachmentNames, bridgeNeeds: { mtu: boolean; up: boolean }): KernelOp[] {
  const ops: KernelOp[] = [];
  if (bridgeNeeds.mtu || bridgeNeeds.up) {
    ops.push({ op: "link.set", name: names.bridge, ...(bridgeNeeds.mtu ? { mtu: node.mtu } : {}), up: true });
  }
  for (const f of node.families) ops.push({ op: "addr.replace", addr: { dev: names.bridge, address: f.bridgeAddress } });
  ops.push({
    op: "link.add",
    link: { name: names.hostVeth, kind: "veth", mtu: node.mtu, master: names.bridge, up: true, veth: { peer: names.ifname, peerNetns: names.netns } },
  });
  return ops;
}

/** Container-side ops: MAC and up, addresses, routes (a route without gw goes via its family's gateway). */
export function containerOps(names: AttachmentNames, allocations: readonly Allocation[], routes: readonly CniRoute[], mac: string): KernelOp[] {
  const ops: KernelOp[] = [{ op: "link.set", name: names.ifname, address: mac, up: true }];
  for (const a of allocations) {
    const address = `${a.ip}/${a.range.subnet.prefix}`;
    // IPv6: no DAD (the IPAM made the address unique), so it is usable at once rather than tentative for ~1 s.
    ops.push({ op: "addr.add", addr: a.ip.family === "v6" ? { dev: names.ifname, address, nodad: true } : { dev: names.ifname, address } });
  }
  for (const r of routes) {
    const family = IPNet.parse(r.dst).family;
    const gw = r.gw ?? allocations.find((a) => a.ip.family === family)?.range.gateway.toString();
    const route: RouteSpec = { family, dst: IPNet.parse(r.dst).toString(), dev: names.ifname, ...(gw ? { gateway: gw } : {}) };
    ops.push({ op: "route.add", route });
  }
  return ops;
}

/** The ADD result: interfaces [bridge, host veth, container], one ip per allocation on interface 2. */
export function buildResult(
  conf: WeftNetConf,
  node: NodePlan,
  names: AttachmentNames,
  macs: { bridge?: string; hostVeth?: string; container: string },
  allocations: readonly Allocation[],
  routes: readonly CniRoute[],
): CniResult {
  return {
    cniVersion: conf.cniVersion,
    interfaces: [
      { name: names.bridge, ...(macs.bridge ? { mac: macs.bridge } : {}), mtu: node.mtu },
      { name: names.hostVeth, ...(macs.hostVeth ? { mac: macs.hostVeth } : {}), mtu: node.mtu },
      { name: names.ifname, mac: macs.container, mtu: node.mtu, sandbox: names.netns },
    ],
    ips: allocations.map((a) => ({ address: `${a.ip}/${a.range.subnet.prefix}`, gateway: a.range.gateway.toString(), interface: 2 })),
    routes: [...routes],
    ...(conf.dns ? { dns: conf.dns } : {}),
  };
}
