/**
 * WeftCluster: a real Weft cluster on this machine — a Lab of node namespaces, a store, one `weftd` process per
 * node running inside its namespace, and optionally one pod per node on a `cni0` bridge addressed from the
 * node's lease. Used by the agent's cluster tests, backend cluster tests, the demo and the datapath benchmark.
 *
 * The store is a real etcd reached over a unix socket (so it works from every namespace without a root-ns
 * address), or with `store: "kube"` the in-repo Kubernetes API server (ADR 0003): it serves on a unix socket
 * too, and a small forwarder in each node namespace makes it http://127.0.0.1:6443 there, so weftd runs with
 * --kube-subnet-mgr, a kubeconfig and NODE_NAME exactly as in a DaemonSet. Nodes are named n1, n2, ... with
 * podCIDRs carved from the network in node order.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { IPNet, IPPrefix, parseSubnetEnv, type SubnetEnv, sleep } from "@weft/core";
import type { ChildHandle, RunResult } from "@weft/kernel";
import { type FakeApiServer, kubeconfigFor, startFakeApiServer } from "@weft/kube-testing";
import { registerCleanup } from "./cleanup.js";
import { type EtcdServer, etcdHttp, etcdPut, startEtcd } from "./etcd.js";
import { uniqueName } from "./guards.js";
import { Lab, type LabNode, type LabPod } from "./lab.js";
import { labRunner } from "./runner.js";

export interface WeftClusterOptions {
  readonly nodes: number;
  /** Absolute path of weftd's entry (packages/daemon/dist/main.js). */
  readonly weftd: string;
  /** The Backend section of the network config. */
  readonly backend: Record<string, unknown>;
  /** Pod network (default 198.19.0.0/16) and, for IPv6/dual-stack, 2001:2:0:f000::/52-style networks inside 2001:2::/48. */
  readonly network?: string;
  readonly ipv6Network?: string;
  readonly enableIPv4?: boolean;
  readonly subnetLen?: number;
  readonly ipv6SubnetLen?: number;
  readonly extraConfig?: Record<string, unknown>;
  /** Extra weftd flags for every node. */
  readonly flags?: readonly string[];
  readonly resyncInterval?: number;
  readonly mtu?: number;
  /** Create a pod per node once its agent is ready (default true). */
  readonly pods?: boolean;
  readonly name?: string;
  /** Extra environment for every weftd (e.g. WEFT_WIREGUARD_PRIVATE_SOCKET_DIR=1 for several wireguard nodes on one machine). */
  readonly env?: Readonly<Record<string, string>>;
  /** The cluster store: a real etcd (default) or the in-repo Kubernetes API server (`--kube-subnet-mgr`). */
  readonly store?: "etcd" | "kube";
  /** How long start() waits for each agent to be ready (default 30 s, waitReady's). */
  readonly readyTimeoutMs?: number;
}

export interface WeftNode {
  readonly lab: LabNode;
  readonly dir: string;
  readonly subnetFile: string;
  readonly stateDir: string;
  readonly logFile: string;
  /** The Kubernetes node name (kube store). */
  readonly nodeName: string;
  proc?: ChildHandle;
  pod?: LabPod;
  /** The forwarder to the API server (kube store), for the node's whole life. */
  forwarder?: ChildHandle;
}

export const HEALTH_PORT = 9099;
/** Where weftd finds the API server inside a node namespace (kube store). */
export const KUBE_API_PORT = 6443;
// From src/ (tests run the sources) and from dist/ alike: the compiled script, run by node in a node namespace.
const FORWARDER = fileURLToPath(new URL("../dist/tcp-unix-forward.js", import.meta.url));

export class WeftCluster {
  readonly nodes: WeftNode[] = [];
  private destroyed?: Promise<void>;
  private unregister: () => void = () => undefined;

  private constructor(
    readonly lab: Lab,
    private readonly etcdServer: EtcdServer | undefined,
    private readonly apiServer: FakeApiServer | undefined,
    readonly prefix: string,
    readonly dir: string,
    readonly options: WeftClusterOptions,
  ) {}

  /** Builds the lab, starts the store, writes the config, starts every agent, waits until all are ready, adds pods. */
  static async start(options: WeftClusterOptions): Promise<WeftCluster> {
    if (!existsSync(options.weftd)) throw new Error(`weftd not found at ${options.weftd}: run npm run build first`);
    const dir = join(tmpdir(), uniqueName("weftc", 8));
    mkdirSync(dir, { recursive: true });
    const lab = await Lab.create({ nodes: options.nodes, ipv6: options.ipv6Network !== undefined, ...(options.mtu ? { mtu: options.mtu } : {}), name: options.name ?? "wc" });
    let cluster: WeftCluster | undefined;
    try {
      const kube = options.store === "kube";
      const etcd = kube ? undefined : await startEtcd({ listen: "unix" });
      const api = kube ? await startFakeApiServer({ unixSocket: join(dir, "api.sock") }) : undefined;
      cluster = new WeftCluster(lab, etcd, api, `/weft-test/${uniqueName("c", 8)}/network`, dir, options);
      const c = cluster;
      c.unregister = registerCleanup(() => c.destroy());
      if (etcd) await etcdPut(etcd.endpoint, `${c.prefix}/config`, JSON.stringify(c.netConf()));
      else writeFileSync(join(dir, "net-conf.json"), JSON.stringify(c.netConf()));
      for (const n of lab.nodes) {
        const nd = join(dir, `n${n.index}`);
        mkdirSync(nd, { recursive: true });
        c.nodes.push({ lab: n, dir: nd, subnetFile: join(nd, "subnet.env"), stateDir: join(nd, "state"), logFile: join(nd, "weftd.log"), nodeName: `n${n.index}` });
      }
      if (api) {
        writeFileSync(join(dir, "kubeconfig"), kubeconfigFor(`http://127.0.0.1:${KUBE_API_PORT}`));
        for (const n of c.nodes) api.addNode({ metadata: { name: n.nodeName }, spec: { podCIDRs: c.podCIDRs(n.lab.index) } });
        await Promise.all(c.nodes.map((n) => c.startForwarder(n)));
      }
      await Promise.all(c.nodes.map((n) => c.startAgent(n)));
      await Promise.all(c.nodes.map((n) => c.waitReady(n, options.readyTimeoutMs)));
      if (options.pods !== false) for (const n of c.nodes) await c.addPod(n);
      return c;
    } catch (err) {
      if (cluster) await cluster.destroy().catch(() => undefined);
      else {
        await lab.destroy().catch(() => undefined);
        rmSync(dir, { recursive: true, force: true });
      }
      throw err;
    }
  }

  /** The etcd store (throws for a cluster on the kube store). */
  get etcd(): EtcdServer {
    if (!this.etcdServer) throw new Error("this WeftCluster runs on the kube store: there is no etcd");
    return this.etcdServer;
  }

  /** The Kubernetes API server (throws for a cluster on the etcd store). */
  get api(): FakeApiServer {
    if (!this.apiServer) throw new Error("this WeftCluster runs on etcd: there is no Kubernetes API server");
    return this.apiServer;
  }

  /** The podCIDRs of node `index` (1-based) on the kube store: the index-th subnet of each enabled network. */
  podCIDRs(index: number): string[] {
    const o = this.options;
    const nth = (network: string, len: number) => {
      const net = IPNet.parse(network);
      return IPNet.of(net.ip.add(BigInt(index) << BigInt(net.ip.bits - len)), len).toString();
    };
    return [
      ...(o.enableIPv4 === false ? [] : [nth(o.network ?? "198.19.0.0/16", o.subnetLen ?? 24)]),
      ...(o.ipv6Network ? [nth(o.ipv6Network, o.ipv6SubnetLen ?? 64)] : []),
    ];
  }

  /** Starts the node's forwarder to the API server and waits until it listens (kube store). */
  private async startForwarder(n: WeftNode): Promise<void> {
    const log = join(n.dir, "forwarder.log");
    const p = labRunner.spawn("ip", ["netns", "exec", n.lab.netns.name, process.execPath, FORWARDER, "127.0.0.1", String(KUBE_API_PORT), join(this.dir, "api.sock")], {
      stdoutFile: log,
      stderrFile: log,
    });
    n.forwarder = p;
    const deadline = Date.now() + 10_000;
    while (!(existsSync(log) && readFileSync(log, "utf8").includes("ready"))) {
      if (Date.now() > deadline) throw new Error(`node ${n.lab.index}: the API forwarder did not start: ${existsSync(log) ? readFileSync(log, "utf8") : ""}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  netConf(): Record<string, unknown> {
    const o = this.options;
    return {
      ...(o.enableIPv4 === false ? { EnableIPv4: false } : { Network: o.network ?? "198.19.0.0/16" }),
      ...(o.subnetLen ? { SubnetLen: o.subnetLen } : {}),
      ...(o.ipv6Network ? { EnableIPv6: true, IPv6Network: o.ipv6Network } : {}),
      ...(o.ipv6SubnetLen ? { IPv6SubnetLen: o.ipv6SubnetLen } : {}),
      Backend: o.backend,
      ...o.extraConfig,
    };
  }

  agentArgs(n: WeftNode, extra: readonly string[] = []): string[] {
    const store = this.apiServer
      ? ["--kube-subnet-mgr", "--kubeconfig-file", join(this.dir, "kubeconfig"), "--net-config-path", join(this.dir, "net-conf.json")]
      : ["--etcd-endpoints", this.etcd.endpoint, "--etcd-prefix", this.prefix, "--etcd-lease-ttl", "600"];
    return [
      ...store,
      "--iface", "eth0",
      "--subnet-file", n.subnetFile,
      "--state-dir", n.stateDir,
      "--healthz-ip", "127.0.0.1",
      "--healthz-port", String(HEALTH_PORT),
      "--resync-interval", String(this.options.resyncInterval ?? 2),
      ...(this.options.flags ?? []),
      ...extra,
    ];
  }

  /** Starts weftd inside the node's namespace (a direct child of this process; stopped by PID only). */
  async startAgent(n: WeftNode, extra: readonly string[] = []): Promise<ChildHandle> {
    if (n.proc) throw new Error(`node ${n.lab.index}: weftd already running (pid ${n.proc.pid})`);
    const proc = labRunner.spawn("ip", ["netns", "exec", n.lab.netns.name, process.execPath, this.options.weftd, ...this.agentArgs(n, extra)], {
      stdoutFile: n.logFile,
      stderrFile: n.logFile,
      env: { ...(this.apiServer ? { NODE_NAME: n.nodeName } : {}), ...this.options.env },
    });
    n.proc = proc;
    void proc.exited.then(() => {
      if (n.proc === proc) n.proc = undefined;
    });
    return proc;
  }

  /** SIGTERM (or the given signal) to the node's weftd by PID, and wait for it to exit. */
  async stopAgent(n: WeftNode, signal: NodeJS.Signals = "SIGTERM"): Promise<{ code: number | null; signal: string | null }> {
    const p = n.proc;
    if (!p) return { code: null, signal: null };
    p.kill(signal);
    const r = await p.exited;
    n.proc = undefined;
    return r;
  }

  async health(n: WeftNode, path: "/readyz" | "/healthz" | "/metrics" | "/status"): Promise<{ ok: boolean; body: string }> {
    const r = await n.lab.netns.run("curl", ["-s", "-m", "2", "-w", "\n%{http_code}", `http://127.0.0.1:${HEALTH_PORT}${path}`], { reject: false });
    const lines = r.stdout.trimEnd().split("\n");
    const code = lines.pop();
    return { ok: code === "200", body: lines.join("\n") };
  }

  async waitReady(n: WeftNode, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if ((await this.health(n, "/readyz")).ok) return;
      if (!n.proc) throw new Error(`node ${n.lab.index}: weftd exited before it was ready; log:\n${this.log(n).slice(-3000)}${this.childLogs(n)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`node ${n.lab.index}: weftd not ready after ${timeoutMs} ms; log:\n${this.log(n).slice(-3000)}${this.childLogs(n)}`);
  }

  /**
   * kill -9 of `n`'s weftd while `from`'s pod pings `n`'s pod (100 pings at 20 pps): killed after 1 s, started
   * again 1 s later and awaited ready. `whileDown` runs between the kill and the restart (e.g. to see that a
   * daemon outlived its agent). Resolves to ping's result, to count what was lost.
   */
  async pingThroughAgentKill(from: WeftNode, n: WeftNode, whileDown?: () => void | Promise<void>): Promise<RunResult> {
    if (!from.pod || !n.pod) throw new Error("pingThroughAgentKill: the cluster has no pods; start it with pods");
    const ping = from.pod.netns.run("ping", ["-n", "-q", "-c", "100", "-i", "0.05", "-W", "1", n.pod.ip], { reject: false });
    await sleep(1000);
    await this.stopAgent(n, "SIGKILL");
    await sleep(1000);
    await whileDown?.();
    await this.startAgent(n);
    await this.waitReady(n);
    return ping;
  }

  /** The logs of processes weftd started (wireguard-go's <state-dir>/<dev>.log), for a failure message. */
  childLogs(n: WeftNode): string {
    if (!existsSync(n.stateDir)) return "";
    return readdirSync(n.stateDir)
      .filter((f) => f.endsWith(".log"))
      .map((f) => `\n--- ${f}:\n${readFileSync(join(n.stateDir, f), "utf8").slice(-1500)}`)
      .join("");
  }

  log(n: WeftNode): string {
    return existsSync(n.logFile) ? readFileSync(n.logFile, "utf8") : "";
  }

  subnetEnv(n: WeftNode): SubnetEnv {
    return parseSubnetEnv(readFileSync(n.subnetFile, "utf8"));
  }

  /** A pod on the node's `cni0` bridge with the 10th address of its subnet(s), gateway = first address. */
  async addPod(n: WeftNode): Promise<LabPod> {
    const env = this.subnetEnv(n);
    const v4 = env.subnet ? IPPrefix.of(env.subnet.network.ip.add(10), env.subnet.prefix) : undefined;
    const v6 = env.ipv6Subnet ? IPPrefix.of(env.ipv6Subnet.network.ip.add(10), env.ipv6Subnet.prefix) : undefined;
    const pod = await this.lab.addPod(n.lab, {
      bridge: "cni0",
      ...(v4 ? { ip: v4.toString(), gateway: env.subnet!.ip.toString() } : {}),
      ...(v6 ? { ipv6: v6.toString(), gatewayV6: env.ipv6Subnet!.ip.toString() } : {}),
      ...(env.mtu ? { mtu: env.mtu } : {}),
    });
    n.pod = pod;
    return pod;
  }

  /**
   * The subnet keys under <prefix>/subnets/ with their values, read straight from etcd; on the kube store, each
   * node's podCIDRs with its weft.io annotations.
   */
  async leases(): Promise<Record<string, string>> {
    if (this.apiServer) {
      const out: Record<string, string> = {};
      for (const n of this.nodes) {
        const node = this.apiServer.getNode(n.nodeName) as { metadata?: { annotations?: Record<string, string> } } | undefined;
        const weft = Object.entries(node?.metadata?.annotations ?? {}).filter(([k]) => k.startsWith("weft.io/"));
        out[this.podCIDRs(n.lab.index).join(",")] = JSON.stringify(Object.fromEntries(weft));
      }
      return out;
    }
    const key = Buffer.from(`${this.prefix}/subnets/`).toString("base64");
    const end = Buffer.from(`${this.prefix}/subnets0`).toString("base64");
    const r = await etcdHttp(this.etcd.endpoint, "/v3/kv/range", { key, range_end: end });
    if (r.status !== 200) throw new Error(`etcd range ${this.prefix}/subnets/: HTTP ${r.status}: ${r.body.slice(0, 200)}`);
    const kvs = (JSON.parse(r.body) as { kvs?: { key: string; value: string }[] }).kvs ?? [];
    return Object.fromEntries(kvs.map((kv) => [Buffer.from(kv.key, "base64").toString().slice(`${this.prefix}/subnets/`.length), Buffer.from(kv.value, "base64").toString()]));
  }

  /** Pings between every pair of pods; returns the failures ("" when all pass). */
  async pingMatrix(opts: { family?: "v4" | "v6"; size?: number; dontFragment?: boolean } = {}): Promise<string[]> {
    const failures: string[] = [];
    const pods = this.nodes.map((n) => n.pod).filter((p): p is LabPod => !!p);
    await Promise.all(
      pods.flatMap((a) =>
        pods
          .filter((b) => b !== a)
          .map(async (b) => {
            // Strictly the family asked for: a pod without an address of it is a failure, never a quiet IPv4 ping.
            const want = opts.family ?? "v4";
            const to = [b.ipv6, b.ip].find((x) => x !== undefined && x.includes(":") === (want === "v6"));
            if (!to) {
              failures.push(`${a.netns.name} -> ${b.netns.name}: that pod has no ${want === "v6" ? "IPv6" : "IPv4"} address (did weftd write its subnet to subnet.env?)`);
              return;
            }
            const ok = await this.lab.ping(a.netns, to.split("/")[0]!, { count: 2, timeoutS: 2, ...(opts.size ? { size: opts.size } : {}), ...(opts.dontFragment ? { dontFragment: true } : {}) });
            if (!ok) failures.push(`${a.netns.name} -> ${to}`);
          }),
      ),
    );
    return failures;
  }

  destroy(): Promise<void> {
    this.destroyed ??= (async () => {
      this.unregister();
      await Promise.all(this.nodes.map((n) => this.stopAgent(n, "SIGKILL").catch(() => undefined)));
      // What a backend keeps running beyond its agent (wireguard-go) is ended the way an operator would:
      // weftd --teardown, which ends it by the PID it recorded.
      await Promise.all(
        this.nodes.map((n) =>
          n.lab.netns
            .run(process.execPath, [this.options.weftd, "--teardown", "--subnet-file", n.subnetFile, "--state-dir", n.stateDir], {
              reject: false,
              timeoutMs: 30_000,
              ...(this.options.env ? { env: this.options.env } : {}),
            })
            .catch(() => undefined),
        ),
      );
      for (const n of this.nodes) {
        n.forwarder?.kill("SIGTERM");
        await n.forwarder?.exited;
      }
      await this.lab.destroy().catch(() => undefined);
      await this.etcdServer?.stop().catch(() => undefined);
      await this.apiServer?.close().catch(() => undefined);
      if (!process.env.WEFT_KEEP_LOGS) rmSync(this.dir, { recursive: true, force: true });
    })();
    return this.destroyed;
  }
}
