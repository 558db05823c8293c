/**
 * Direct mode (no "delegate"): weft-cni itself plugs the pod into the node bridge, with the built-in host-local
 * IPAM. Plan in ./plan.ts; this file runs it and undoes it.
 *
 * Process budget per ADD (what makes it fast, DESIGN §4; measurements in docs/adr/0006-cni-latency.md): zero
 * for reads (sysfs), one `ip -batch` in the node namespace, one in the container namespace, plus one extra batch
 * on the node's very first ADD (the bridge is created alone so its IPv6 DAD can be disabled before the gateway
 * address goes on). DEL: one `ip` process (none when the host veth is already gone).
 *
 * IPv6 DAD: a fresh address is "tentative" for 1-2 s while the kernel runs Duplicate Address Detection, and a
 * tentative address cannot be used as a source, so a pod started right after ADD would have no IPv6. The IPAM
 * already guarantees uniqueness, so the pod's addresses are added with `nodad` (in the same batch: no process
 * of its own, where writing net.ipv6.conf.<if>.accept_dad in the pod's namespace cost one `sysctl` under
 * nsenter), and the bridge has accept_dad=0 (written through /proc: the node's namespace is ours). The pod's
 * link-local address still runs DAD; nothing needs it (neighbour solicitations to the gateway go out from the
 * global address). The reference bridge plugin instead waits for DAD to settle.
 */
import { type Family, IPAddress, IPNet, isWeftError } from "@weft/core";
import type { KernelPort, OpResult } from "@weft/kernel";
import type { CniEnv, WeftNetConf } from "../config.js";
import { CniError, CniErrorCode, showText } from "../errors.js";
import { HostLocalAllocator } from "../ipam/allocator.js";
import type { RangeSet } from "../ipam/range.js";
import { HostLocalStore } from "../ipam/store.js";
import { netnsProblem } from "@weft/kernel";
import { type CniResult, parsePrevResult } from "../result.js";
import { Rollback } from "../rollback.js";
import type { SubnetFile } from "../subnet-file.js";
import { type AttachmentNames, type NodePlan, buildResult, containerOps, hostOps, hostVethName, macForAddress, planNode, planRoutes } from "./plan.js";
import { ensureProcSys, setHairpin, sysLink } from "./sysfs.js";

export interface DirectDeps {
  /** The node (host) namespace: the one this process runs in. */
  readonly host: KernelPort;
  /** The container namespace at a CNI_NETNS path. */
  readonly container: (netnsPath: string) => KernelPort;
  /** Test-only fault injection point (WEFT_CNI_FAULT): after-ipam, after-bridge, after-veth, after-container. */
  readonly fault?: string;
  /** Called at the end of each ADD/DEL phase (WEFT_CNI_TRACE prints these with timestamps on stderr). */
  readonly trace?: (phase: string) => void;
  /**
   * Checks CNI_NETNS before an ADD or CHECK touches anything: undefined when it names a network namespace, else
   * the problem. Default {@link netnsProblem} (statfs and the descriptor's link); tests of the plan may replace it.
   */
  readonly checkNetns?: (path: string) => string | undefined;
}

/** Code 4 (invalid environment) unless CNI_NETNS is a network namespace. */
function requireNetns(env: CniEnv, deps: DirectDeps): void {
  const problem = (deps.checkNetns ?? netnsProblem)(env.netns);
  if (problem !== undefined) throw new CniError(CniErrorCode.INVALID_ENVIRONMENT, `CNI_NETNS "${showText(env.netns)}" ${problem}`);
}

/** The built-in IPAM of this network (range sets are needed only to allocate; release and GC work without). */
export function allocatorFor(conf: WeftNetConf, rangeSets: readonly RangeSet[] = []): HostLocalAllocator {
  return new HostLocalAllocator(new HostLocalStore(conf.ipam.dataDir, conf.name), rangeSets);
}

function namesFor(conf: WeftNetConf, env: CniEnv): AttachmentNames {
  return { bridge: conf.bridge, hostVeth: hostVethName(conf.name, env.containerID, env.ifname), ifname: env.ifname, netns: env.netns };
}

function injected(deps: DirectDeps, point: string): void {
  deps.trace?.(point);
  if (deps.fault === point) throw new CniError(CniErrorCode.INTERNAL, `injected failure at ${point} (WEFT_CNI_FAULT)`);
}

type Failed = OpResult & { ok: false };

/** True for a failed op. (Defensive: an adapter that leaves a success slot empty is read as success.) */
function failed(r: OpResult | undefined): r is Failed {
  return r !== undefined && r.ok === false;
}

/** Throws the first failed op of a batch as a CniError that says what we were doing. */
function firstFailure(results: readonly (OpResult | undefined)[], what: string, tolerate: (i: number, r: Failed) => boolean = () => false): void {
  for (let i = 0; i < results.length; i++) {
    const r = results[i];
    if (failed(r) && !tolerate(i, r)) throw new CniError(CniErrorCode.INTERNAL, `${what}: ${r.error.message}`, undefined, { cause: r.error });
  }
}

export async function addDirect(conf: WeftNetConf, env: CniEnv, subnet: SubnetFile, deps: DirectDeps): Promise<CniResult> {
  const node = planNode(conf, subnet);
  requireNetns(env, deps);
  const names = namesFor(conf, env);
  const allocator = allocatorFor(conf, node.rangeSets);
  // Configuration problems the node can show before anything is reserved or written.
  const existing = sysLink(names.bridge);
  if (existing.exists && !existing.isBridge) throw notABridge(names.bridge);
  const rollback = new Rollback();
  try {
    const allocations = await allocator.allocate(env.containerID, env.ifname);
    // Only what this ADD reserved: on a repeated ADD the container already holds its address, and a live pod
    // may be using it (releasing it would hand the same IP to the next pod).
    const fresh = allocations.filter((a) => a.fresh).map((a) => a.ip);
    rollback.defer(`release addresses ${fresh.join(", ") || "(none new)"} of ${env.containerID}/${env.ifname}`, () => allocator.releaseAddresses(fresh));
    injected(deps, "after-ipam");
    const routes = planRoutes(conf, node, allocations);
    const families = new Set<Family>(allocations.map((a) => a.ip.family));

    // Forwarding: the bridge is the pods' gateway, so the node must route (the bridge plugin's isGateway does
    // the same). Written only when not yet set.
    if (families.has("v4")) ensureProcSys("net/ipv4/ip_forward", "1");
    if (families.has("v6")) ensureProcSys("net/ipv6/conf/all/forwarding", "1");

    await ensureBridge(deps.host, node, names.bridge);
    injected(deps, "after-bridge");

    const br = sysLink(names.bridge);
    const ops = hostOps(node, names, { mtu: br.exists && br.mtu !== node.mtu, up: !br.up });
    const results = await deps.host.apply(ops);
    const vethIndex = ops.length - 1;
    const veth = results[vethIndex];
    if (failed(veth)) {
      throw new CniError(CniErrorCode.INTERNAL, vethFailure(veth.error.message, veth.error.code, names), undefined, { cause: veth.error });
    }
    rollback.defer(`delete ${names.hostVeth}`, () => deleteHostVeth(deps.host, names.hostVeth));
    firstFailure(results.slice(0, vethIndex), `configuring bridge ${names.bridge}`);
    if (conf.hairpinMode) {
      try {
        setHairpin(names.hostVeth);
      } catch (err) {
        throw new CniError(
          CniErrorCode.INTERNAL,
          `enabling hairpin mode on ${names.hostVeth}: ${(err as Error).message}; weft-cni must run with the node namespace's /sys mounted`,
          undefined,
          { cause: err },
        );
      }
    }
    injected(deps, "after-veth");

    const container = deps.container(env.netns);
    const mac = macForAddress((allocations.find((a) => a.ip.family === "v4") ?? allocations[0]!).ip);
    const cops = containerOps(names, allocations, routes, mac);
    const cresults = await container.apply(cops);
    // A route that already exists (another interface of the pod brought it, e.g. the default route) is skipped,
    // as the spec asks of plugins for default routes.
    firstFailure(cresults, `configuring ${names.ifname} in ${env.netns}`, (i, r) => cops[i]!.op === "route.add" && r.error.code === "KERNEL_EXISTS");
    injected(deps, "after-container");

    const result = buildResult(conf, node, names, { bridge: sysLink(names.bridge).mac, hostVeth: sysLink(names.hostVeth).mac, container: mac }, allocations, routes);
    rollback.commit();
    return result;
  } catch (err) {
    const problems = await rollback.unwind();
    if (problems.length > 0 && err instanceof Error) {
      const e = err instanceof CniError ? err : new CniError(CniErrorCode.INTERNAL, err.message, undefined, { cause: err });
      throw new CniError(e.code, e.message, `rollback incomplete: ${problems.join("; ")}`, { cause: err });
    }
    throw err;
  }
}

function notABridge(bridge: string): CniError {
  return new CniError(
    CniErrorCode.INVALID_NETWORK_CONFIG,
    `invalid network config: "bridge" is "${bridge}", but a device of that name exists and is not a bridge; ` +
      `choose another "bridge" name or delete that device`,
  );
}

function vethFailure(message: string, code: string, names: AttachmentNames): string {
  if (code === "KERNEL_EXISTS") {
    return sysLink(names.hostVeth).exists
      ? `host interface ${names.hostVeth} for this container already exists (an earlier ADD was not deleted); the runtime must DEL before a new ADD: ${message}`
      : `interface ${names.ifname} already exists in the container namespace ${names.netns}; use another CNI_IFNAME: ${message}`;
  }
  if (code === "KERNEL_NOT_FOUND") return `container network namespace ${names.netns} cannot be opened (is the container gone?): ${message}`;
  return `creating veth ${names.hostVeth} <-> ${names.ifname}: ${message}`;
}

/**
 * Creates the bridge when missing (alone in its own batch, then DAD off before any address), and fails with a
 * clear message when the name belongs to a device that is not a bridge. A concurrent ADD creating it first is fine.
 */
async function ensureBridge(host: KernelPort, node: NodePlan, bridge: string): Promise<void> {
  let br = sysLink(bridge);
  const v6 = node.families.some((f) => f.family === "v6");
  if (!br.exists) {
    // An explicit MAC (derived from the gateway address): otherwise a bridge takes the lowest MAC of its ports
    // and changes it as pods come and go, and every pod's ARP/ND entry for the gateway goes stale.
    const gateway = (node.families.find((f) => f.family === "v4") ?? node.families[0])?.gateway;
    const address = gateway ? macForAddress(gateway) : undefined;
    const [r] = await host.apply([{ op: "link.add", link: { name: bridge, kind: "bridge", mtu: node.mtu, up: true, ...(address ? { address } : {}) } }]);
    if (failed(r) && r.error.code !== "KERNEL_EXISTS") {
      throw new CniError(CniErrorCode.INTERNAL, `creating bridge ${bridge}: ${r.error.message}`, undefined, { cause: r.error });
    }
    br = sysLink(bridge);
  }
  if (br.exists && !br.isBridge) throw notABridge(bridge);
  if (v6) ensureProcSys(`net/ipv6/conf/${bridge}/accept_dad`, "0");
}

/** Deletes the host end of the pair (the container end goes with it); an already missing one is fine. */
async function deleteHostVeth(host: KernelPort, name: string): Promise<void> {
  if (!sysLink(name).exists) return;
  const [r] = await host.apply([{ op: "link.del", name }]);
  if (failed(r) && r.error.code !== "KERNEL_NOT_FOUND") throw r.error;
}

/** DEL: release the addresses, delete the host veth. Needs neither the subnet file nor the namespace. */
export async function delDirect(conf: WeftNetConf, env: CniEnv, deps: DirectDeps): Promise<void> {
  await allocatorFor(conf).release(env.containerID, env.ifname);
  deps.trace?.("released");
  try {
    await deleteHostVeth(deps.host, hostVethName(conf.name, env.containerID, env.ifname));
  } catch (err) {
    if (isWeftError(err)) throw new CniError(CniErrorCode.INTERNAL, `deleting the host veth: ${err.message}`, undefined, { cause: err });
    throw err;
  }
  deps.trace?.("veth-deleted");
}

/** CHECK: the interface, its addresses and routes as in prevResult; the host veth on the bridge; the reservations. */
export async function checkDirect(conf: WeftNetConf, env: CniEnv, deps: DirectDeps): Promise<void> {
  if (conf.prevResult === undefined) {
    throw new CniError(CniErrorCode.INVALID_NETWORK_CONFIG, `invalid network config: "prevResult" is required for CHECK (the runtime passes the ADD result)`);
  }
  const prev = parsePrevResult(conf.prevResult);
  requireNetns(env, deps);
  const names = namesFor(conf, env);
  const fail = (what: string) => new CniError(CniErrorCode.INTERNAL, `CHECK of ${env.containerID}/${env.ifname} failed: ${what}`);

  const idx = (prev.interfaces ?? []).findIndex((i) => i.name === env.ifname && i.sandbox !== undefined && i.sandbox !== "");
  if (idx < 0) throw fail(`prevResult has no container interface named ${env.ifname}`);
  const want = prev.interfaces![idx]!;

  const br = sysLink(names.bridge);
  if (!br.exists || !br.isBridge) throw fail(`bridge ${names.bridge} is missing from the node`);
  const hv = sysLink(names.hostVeth);
  if (!hv.exists) throw fail(`host veth ${names.hostVeth} is missing`);
  if (hv.master !== names.bridge) throw fail(`host veth ${names.hostVeth} is not attached to ${names.bridge}`);

  const container = deps.container(env.netns);
  let links;
  try {
    links = await container.listLinks();
  } catch (err) {
    throw fail(`cannot read the container namespace ${env.netns}: ${(err as Error).message}`);
  }
  const link = links.find((l) => l.name === env.ifname);
  if (!link) throw fail(`interface ${env.ifname} is missing in ${env.netns}`);
  if (want.mac && link.address && want.mac.toLowerCase() !== link.address.toLowerCase()) {
    throw fail(`interface ${env.ifname} has MAC ${link.address}, prevResult says ${want.mac}`);
  }
  if (!link.up) throw fail(`interface ${env.ifname} is down`);

  const addrs = new Set((await container.listAddresses(env.ifname)).map((a) => a.address));
  const mine = (prev.ips ?? []).filter((ip) => ip.interface === undefined || ip.interface === idx);
  for (const ip of mine) if (!addrs.has(ip.address)) throw fail(`address ${ip.address} is missing on ${env.ifname}`);

  const byFamily = new Map<Family, Awaited<ReturnType<KernelPort["listRoutes"]>>>();
  for (const r of prev.routes ?? []) {
    const net = IPNet.tryParse(r.dst)?.net;
    if (!net) throw fail(`prevResult route dst ${r.dst} is not a CIDR`);
    const family = net.family;
    if (!byFamily.has(family)) byFamily.set(family, await container.listRoutes({ family }));
    const gw = r.gw ? IPAddress.tryParse(r.gw)?.toString() : undefined;
    const found = byFamily.get(family)!.some((k) => k.dst === net.toString() && (!gw || k.gateway === gw));
    if (!found) throw fail(`route to ${r.dst}${r.gw ? ` via ${r.gw}` : ""} is missing in ${env.netns}`);
  }

  const reserved = new Set((await allocatorFor(conf).store.byContainer(env.containerID, env.ifname)).map((r) => r.ip.toString()));
  for (const ip of mine) {
    const addr = ip.address.split("/")[0]!;
    if (!reserved.has(addr)) throw fail(`address ${addr} is not reserved for this container in ${conf.ipam.dataDir}/${conf.name}`);
  }
}
