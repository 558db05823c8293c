/**
 * Lab: N "nodes" (network namespaces) on one root-namespace bridge, the underlay a real agent runs on, plus
 * pod namespaces hanging off bridges inside the nodes (linux-lab.md §1, §2).
 *
 *   root ns:  bridge <id> (no address: the root ns never routes lab traffic)
 *               └─ <id>v<i>  ── veth ──  eth0 in node ns <id>n<i>: 198.18.X.i/24, 2001:2:0:X::i/64
 *   node ns:  <caller's bridge>  ── <id>q<k> ── veth ──  eth0 in pod ns <id>p<k>
 *
 * Every object name starts with the lab id `<prefix><unique>` (10 characters), so names never clash across
 * parallel test files and a leftover is easy to attribute. X, the lab's third octet, is claimed through an
 * O_EXCL file in /run/weft-netns-lab (stale claims of dead processes are taken over) and checked against
 * the root namespace's addresses and routes. Labs are isolated at L2 anyway; distinct X only matters if
 * someone bridges or routes between them, and it keeps captures readable.
 *
 * Kernel notes:
 * - br_netfilter is loaded on these machines, so bridged lab frames traverse the ROOT ns iptables FORWARD
 *   chain. This library never touches root-ns netfilter; if FORWARD policy were DROP the underlay would die.
 * - ip_forward (v4 and v6) is per namespace and 0 in a new one; nodes get 1.
 * - IPv6 addresses are added with `nodad`, otherwise they stay "tentative" (unusable) for ~1-2 s.
 * - Root-side devices get `addrgenmode none` so the root ns gets no IPv6 link-local addresses either.
 * - `ip netns del <node>` removes the node's veth pair, root end included; the bridge goes last.
 */
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeSync, closeSync } from "node:fs";
import { IPAddress, IPNet, IPPrefix, WeftError } from "@weft/core";
import { registerCleanup } from "./cleanup.js";
import { uniqueName } from "./guards.js";
import { adoptNetns, type TestNetns } from "./netns.js";
import { labRunner } from "./runner.js";

export interface LabNode {
  /** 1-based. */
  readonly index: number;
  readonly netns: TestNetns;
  /** 198.18.X.index */
  readonly underlayIp: string;
  /** 2001:2:0:X::index, when the lab has IPv6. */
  readonly underlayIpv6?: string;
  readonly iface: "eth0";
}

export interface LabPod {
  readonly netns: TestNetns;
  readonly node: LabNode;
  /** Address without prefix length. */
  readonly ip: string;
  readonly ipv6?: string;
  /** Name of the node-side veth end (inside the node namespace). */
  readonly hostVeth: string;
}

export interface LabOptions {
  /** 1..250 */
  readonly nodes: number;
  readonly ipv6?: boolean;
  /** Underlay MTU (veths on the lab bridge); default kernel default 1500. */
  readonly mtu?: number;
  /** Prefix for every object name (1..5 lower-case characters); default "wt". */
  readonly name?: string;
}

export interface AddPodOptions {
  /** Bridge inside the node namespace; created (and set up) when missing. */
  readonly bridge: string;
  /** Pod address with prefix length, e.g. 198.19.1.10/24. */
  readonly ip?: string;
  /** Next hop for 198.18.0.0/15 (the pod's only way anywhere); normally the bridge address. */
  readonly gateway?: string;
  /** Pod IPv6 address with prefix length, e.g. 2001:2:0:f001::10/64. */
  readonly ipv6?: string;
  readonly gatewayV6?: string;
  readonly mtu?: number;
  /**
   * Put the gateway address (with the pod's prefix length) on the bridge, like the CNI bridge plugin with
   * isGateway. Default true.
   */
  readonly gatewayOnBridge?: boolean;
}

export interface PingOptions {
  /** Echo requests to send; default 1. Success means at least one reply. */
  readonly count?: number;
  /** ICMP payload size (`ping -s`). */
  readonly size?: number;
  /** Set DF / forbid fragmentation (`ping -M do`). */
  readonly dontFragment?: boolean;
  /** Seconds to wait for each reply (`ping -W`); default 2. */
  readonly timeoutS?: number;
}

/** The only prefixes lab traffic may use (common brief: network safety). */
export const LAB_V4_RANGE = "198.18.0.0/15";
export const LAB_V6_RANGE = "2001:2::/48";

const CLAIM_DIR = "/run/weft-netns-lab";

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Tries to own subnet index x: O_EXCL create, or take over the claim of a dead process. */
function claimIndex(x: number): boolean {
  const file = `${CLAIM_DIR}/subnet-${x}`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx");
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      let owner = NaN;
      try {
        owner = Number.parseInt(readFileSync(file, "utf8"), 10);
      } catch {
        // vanished or half-written: retry once
      }
      // A claim being written right now reads as empty; treat only a dead, parsed PID as stale.
      if (Number.isNaN(owner) || pidAlive(owner)) return false;
      rmSync(file, { force: true });
    }
  }
  return false;
}

function releaseIndex(x: number): void {
  const file = `${CLAIM_DIR}/subnet-${x}`;
  try {
    if (Number.parseInt(readFileSync(file, "utf8"), 10) === process.pid) rmSync(file, { force: true });
  } catch {
    // already gone
  }
}

/** Text of everything in the root ns that could mention a 198.18.X.0/24 or 2001:2:0:X::/64. */
async function rootNsUsage(): Promise<string> {
  const [a, r4, r6] = await Promise.all([
    labRunner.run("ip", ["-o", "addr", "show"]),
    labRunner.run("ip", ["-4", "route", "show", "table", "all"]),
    labRunner.run("ip", ["-6", "route", "show", "table", "all"]),
  ]);
  return `${a.stdout}\n${r4.stdout}\n${r6.stdout}`;
}

function usesIndex(usage: string, x: number): boolean {
  return new RegExp(`\\b198\\.18\\.${x}\\.|\\b2001:2:0:${x}:`).test(usage);
}

async function pickSubnetIndex(): Promise<number> {
  mkdirSync(CLAIM_DIR, { recursive: true });
  const usage = await rootNsUsage();
  for (let attempt = 0; attempt < 500; attempt++) {
    const x = 1 + Math.floor(Math.random() * 250);
    if (usesIndex(usage, x)) continue;
    if (claimIndex(x)) return x;
  }
  throw new WeftError("PROCESS_FAILED", `Lab: no free 198.18.X.0/24 among X=1..250 (claims in ${CLAIM_DIR}); remove stale labs`);
}

const V4_RANGE = IPNet.parse(LAB_V4_RANGE);
const V6_RANGE = IPNet.parse(LAB_V6_RANGE);

/** Parses `addr/len` of the given family inside the lab range, or throws naming the field and the fix. */
function labPrefix(text: string, field: string, family: "v4" | "v6"): IPPrefix {
  const range = family === "v4" ? V4_RANGE : V6_RANGE;
  const p = IPPrefix.tryParse(text);
  if (!p || p.family !== family || !range.contains(p.ip)) {
    const example = family === "v4" ? "198.19.1.10/24" : "2001:2:0:f001::10/64";
    throw new Error(`Lab.addPod: ${field} "${text}" must be an ${family} address/prefix inside ${range}; e.g. ${example}`);
  }
  return p;
}

function labAddress(text: string | undefined, field: string, family: "v4" | "v6"): IPAddress {
  const range = family === "v4" ? V4_RANGE : V6_RANGE;
  const ip = text === undefined ? undefined : IPAddress.tryParse(text);
  if (!ip || ip.family !== family || !range.contains(ip)) {
    throw new Error(`Lab.addPod: ${field} "${text}" must be an ${family} address inside ${range}`);
  }
  return ip;
}

export class Lab {
  /** Lab id: prefix + unique suffix; the bridge's name and the stem of every other name. */
  readonly id: string;
  readonly bridge: string;
  readonly nodes: LabNode[] = [];
  readonly pods: LabPod[] = [];
  private readonly podNetns: string[] = [];
  private readonly nodeNetns: string[] = [];
  private podCounter = 0;
  private destroyed: Promise<void> | undefined;
  private unregister: () => void = () => undefined;

  private constructor(
    readonly subnetIndex: number,
    readonly ipv6: boolean,
    readonly mtu: number | undefined,
    prefix: string,
  ) {
    this.id = uniqueName(prefix, 8);
    this.bridge = this.id;
  }

  /** Builds the lab; on any failure everything created so far is removed again. */
  static async create(opts: LabOptions): Promise<Lab> {
    const prefix = opts.name ?? "wt";
    if (!/^[a-z][a-z0-9]{0,4}$/.test(prefix)) {
      throw new Error(`Lab.create: name "${prefix}" must be 1-5 lower-case letters/digits starting with a letter; use e.g. "wt"`);
    }
    if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > 250) {
      throw new Error(`Lab.create: nodes ${opts.nodes} must be an integer in 1..250`);
    }
    const x = await pickSubnetIndex();
    const lab = new Lab(x, opts.ipv6 ?? false, opts.mtu, prefix);
    lab.arm();
    try {
      await lab.build(opts.nodes);
    } catch (err) {
      await lab.destroy().catch(() => undefined);
      throw err;
    }
    return lab;
  }

  /** 198.18.X.i for node index i (also valid for addresses the caller wants to reserve, e.g. .254). */
  underlayAddress(i: number): string {
    return `198.18.${this.subnetIndex}.${i}`;
  }

  /** 2001:2:0:X::i. X and i are written with the same digits as the IPv4 form (read as hex groups). */
  underlayAddressV6(i: number): string {
    return `2001:2:0:${this.subnetIndex}::${i}`;
  }

  private arm(): void {
    this.unregister = registerCleanup(
      () => this.destroy(),
      () => {
        labRunner.runSync("ip", ["-force", "-batch", "-"], { input: this.teardownBatch() });
        releaseIndex(this.subnetIndex);
      },
    );
  }

  private async build(count: number): Promise<void> {
    const mtu = this.mtu !== undefined ? ["mtu", String(this.mtu)] : [];
    const lines: string[] = [
      `link add ${this.bridge} type bridge`,
      // No IPv6 link-local in the root ns (and no router solicitations from it onto the lab).
      `link set ${this.bridge} addrgenmode none`,
      `link set ${this.bridge} up`,
    ];
    for (let i = 1; i <= count; i++) {
      const ns = `${this.id}n${i}`;
      const rootEnd = `${this.id}v${i}`;
      this.nodeNetns.push(ns);
      lines.push(
        `netns add ${ns}`,
        `link add ${rootEnd} ${mtu.join(" ")} type veth peer name eth0 ${mtu.join(" ")} netns ${ns}`,
        `link set ${rootEnd} addrgenmode none`,
        `link set ${rootEnd} master ${this.bridge} up`,
      );
    }
    await labRunner.run("ip", ["-batch", "-"], { input: lines.join("\n") + "\n" });

    await Promise.all(
      this.nodeNetns.map(async (name, idx) => {
        const i = idx + 1;
        const netns = adoptNetns(name);
        const nodeLines = ["link set lo up", `addr add ${this.underlayAddress(i)}/24 dev eth0`];
        if (this.ipv6) nodeLines.push(`addr add ${this.underlayAddressV6(i)}/64 dev eth0 nodad`);
        nodeLines.push("link set eth0 up");
        await netns.ip(["-batch", "-"], { input: nodeLines.join("\n") + "\n" });
        const sysctls = ["net.ipv4.ip_forward=1"];
        if (this.ipv6) sysctls.push("net.ipv6.conf.all.forwarding=1");
        await netns.run("sysctl", ["-qw", ...sysctls]);
        const node: LabNode = {
          index: i,
          netns,
          underlayIp: this.underlayAddress(i),
          ...(this.ipv6 ? { underlayIpv6: this.underlayAddressV6(i) } : {}),
          iface: "eth0",
        };
        this.nodes[idx] = node;
      }),
    );
  }

  /**
   * Adds a pod namespace `<id>p<k>` whose eth0 is a veth to `opts.bridge` in the node namespace. The pod
   * gets routes for 198.18.0.0/15 (and 2001:2::/48) via the gateway, and nothing else: no default route.
   */
  async addPod(node: LabNode, opts: AddPodOptions): Promise<LabPod> {
    if (this.destroyed) throw new Error(`Lab ${this.id}: addPod after destroy`);
    if (!this.nodes.includes(node)) throw new Error(`Lab ${this.id}: addPod: node ${node.index} belongs to another lab`);
    // IPv6-only pods: `ip` may be omitted when `ipv6` is given.
    if (opts.ip === undefined && opts.ipv6 === undefined) throw new Error("Lab.addPod: give ip, ipv6 or both");
    const v4 = opts.ip !== undefined ? labPrefix(opts.ip, "ip", "v4") : undefined;
    const gw4 = v4 ? labAddress(opts.gateway, "gateway", "v4") : undefined;
    const v6 = opts.ipv6 !== undefined ? labPrefix(opts.ipv6, "ipv6", "v6") : undefined;
    const gw6 = v6 ? labAddress(opts.gatewayV6, "gatewayV6", "v6") : undefined;
    if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(opts.bridge)) throw new Error(`Lab.addPod: bridge "${opts.bridge}" is not a valid interface name`);

    const k = ++this.podCounter;
    const podName = `${this.id}p${k}`;
    const hostVeth = `${this.id}q${k}`;
    const mtu = opts.mtu !== undefined ? `mtu ${opts.mtu}` : "";
    this.podNetns.push(podName); // before creation, so teardown covers a half-built pod

    // Bridge: create when missing (no carrier until a port is attached; MTU follows the smallest port).
    const has = await node.netns.ip(["link", "show", "dev", opts.bridge], { reject: false });
    const nodeLines: string[] = [];
    if (has.exitCode !== 0) nodeLines.push(`link add ${opts.bridge} type bridge`, `link set ${opts.bridge} up`);
    if (opts.gatewayOnBridge ?? true) {
      if (v4 && gw4) nodeLines.push(`addr replace ${gw4}/${v4.prefix} dev ${opts.bridge}`);
      if (v6 && gw6) nodeLines.push(`addr replace ${gw6}/${v6.prefix} dev ${opts.bridge} nodad`);
    }
    await labRunner.run("ip", ["netns", "add", podName]);
    nodeLines.push(
      `link add ${hostVeth} ${mtu} type veth peer name eth0 ${mtu} netns ${podName}`,
      `link set ${hostVeth} master ${opts.bridge} up`,
    );
    await node.netns.ip(["-batch", "-"], { input: nodeLines.join("\n") + "\n" });

    const netns = adoptNetns(podName);
    const podLines = ["link set lo up"];
    if (v4) podLines.push(`addr add ${v4.ip}/${v4.prefix} dev eth0`);
    if (v6) podLines.push(`addr add ${v6.ip}/${v6.prefix} dev eth0 nodad`);
    podLines.push("link set eth0 up");
    if (gw4) podLines.push(`route add ${LAB_V4_RANGE} via ${gw4} dev eth0`);
    if (gw6) podLines.push(`route add ${LAB_V6_RANGE} via ${gw6} dev eth0`);
    await netns.ip(["-batch", "-"], { input: podLines.join("\n") + "\n" });

    // `ip` is the pod's primary address: IPv4, or IPv6 for an IPv6-only pod.
    const pod: LabPod = { netns, node, ip: (v4 ?? v6)!.ip.toString(), ...(v6 ? { ipv6: v6.ip.toString() } : {}), hostVeth };
    this.pods.push(pod);
    return pod;
  }

  /** True when `to` answers at least one echo request sent from `from` (IPv4 or IPv6 by address). */
  async ping(from: TestNetns, to: string, opts: PingOptions = {}): Promise<boolean> {
    const args = ["-n", "-q", "-c", String(opts.count ?? 1), "-W", String(opts.timeoutS ?? 2), "-i", "0.2"];
    if (opts.size !== undefined) args.push("-s", String(opts.size));
    if (opts.dontFragment) args.push("-M", "do");
    args.push(to);
    const r = await from.run("ping", args, { reject: false });
    return r.exitCode === 0;
  }

  private teardownBatch(): string {
    // Kernel surprise: `ip netns del` only drops the name. The namespace is dismantled later by the kernel's
    // cleanup_net workqueue, so its veths (and their root-side peers!) linger for a moment after the command
    // returns. Deleting the root-side veth ends explicitly first removes both ends synchronously, so the
    // root ns is clean when destroy() resolves. Then pods, nodes, and the bridge. With -force, lines for
    // objects that never got created fail and are skipped.
    const rootEnds = this.nodeNetns.map((_, idx) => `link del ${this.id}v${idx + 1}`);
    return [
      ...rootEnds,
      ...this.podNetns.map((n) => `netns del ${n}`),
      ...this.nodeNetns.map((n) => `netns del ${n}`),
      `link del ${this.bridge}`,
    ]
      .join("\n")
      .concat("\n");
  }

  /** Deletes pods, nodes and the bridge; idempotent. Throws if anything the lab created is still present. */
  destroy(): Promise<void> {
    this.destroyed ??= (async () => {
      await labRunner.run("ip", ["-force", "-batch", "-"], { input: this.teardownBatch(), reject: false });
      releaseIndex(this.subnetIndex);
      this.unregister();
      const left = [...this.podNetns, ...this.nodeNetns].filter((n) => existsSync(`/run/netns/${n}`));
      const links = (await labRunner.run("ip", ["-o", "link", "show"])).stdout;
      for (const m of links.matchAll(/^\d+: ([^:@\s]+)/gm)) if (m[1]!.startsWith(this.id)) left.push(`link ${m[1]}`);
      if (left.length > 0) {
        throw new WeftError("PROCESS_FAILED", `Lab ${this.id}: teardown left ${left.join(", ")}; delete with ip netns del / ip link del`);
      }
    })();
    return this.destroyed;
  }
}
