/**
 * Datapath benchmark (issue "Backends vxlan and host-gw", rows for wireguard and ipsec from issue 11): iperf3
 * between pod namespaces on two nodes of a real Weft cluster, per backend, next to the underlay (node to node)
 * measured in the same run; reported as ratios. host-gw and vxlan also get a hand-built reference (no Weft).
 *
 * Selecting rows: WEFT_BENCH_DATAPATH=wireguard,ipsec (comma-separated backends; default all, in DATAPATH_BACKENDS
 * order); WEFT_BENCH_DATAPATH_SECONDS (default 5) and WEFT_BENCH_DATAPATH_RUNS (default 3) for a short smoke run.
 * The underlay row is always measured, in the first cluster of the run.
 *
 * What a run leaves behind: nothing. Each cluster is destroyed (agents stopped, `weftd --teardown` on every node,
 * which stops wireguard-go and charon by their PIDs, namespaces and files removed); a daemon that survives that is
 * ended by the PID its agent recorded, after checking /proc that it is still that program; and the bind targets
 * the agents create on the machine for their private mounts (an empty /var/run/charon.pid, docs/backends/ipsec.md;
 * an empty /var/run/wireguard, ADR 0008) are removed when they did not exist before this run and are still empty.
 */
import { existsSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type TestNetns, WeftCluster, type WeftNode, labRunner } from "@weft/netns-lab";
import { handBuiltLab } from "./datapath-reference.js";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "packages", "daemon", "dist", "main.js");

/** The backends the datapath bench can measure, in table order. */
export const DATAPATH_BACKENDS = ["host-gw", "vxlan", "wireguard", "ipsec"] as const;
export type DatapathBackend = (typeof DATAPATH_BACKENDS)[number];

export interface DatapathRow {
  readonly path: string;
  /** The backend a Weft row measures (absent for the underlay and the hand-built references). */
  readonly backend?: DatapathBackend;
  readonly gbps: number;
  readonly retransmits: number;
  readonly mtu: number;
}

/** What a run measures: WEFT_BENCH_DATAPATH, WEFT_BENCH_DATAPATH_SECONDS and WEFT_BENCH_DATAPATH_RUNS. */
export interface DatapathSelection {
  readonly backends: readonly DatapathBackend[];
  /**
   * True for a smoke run: a subset of the backends, or another duration or run count than the defaults (main.ts then
   * prints the table and leaves docs/benchmarks.md alone).
   */
  readonly partial: boolean;
  readonly seconds: number;
  readonly runs: number;
}

/** Reads the selection from `env`; an unknown backend or a bad number is one line naming the variable and the fix. */
export function datapathSelection(env: NodeJS.ProcessEnv = process.env): DatapathSelection {
  const raw = env.WEFT_BENCH_DATAPATH?.trim();
  let backends: DatapathBackend[] = [...DATAPATH_BACKENDS];
  if (raw) {
    const names = raw.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean);
    const unknown = names.filter((n) => !(DATAPATH_BACKENDS as readonly string[]).includes(n));
    if (unknown.length > 0 || names.length === 0) {
      throw new Error(`WEFT_BENCH_DATAPATH=${JSON.stringify(raw)}: unknown backend ${unknown.join(", ") || "(none given)"}; use a comma-separated list of ${DATAPATH_BACKENDS.join(", ")}`);
    }
    // Table order, each once.
    backends = DATAPATH_BACKENDS.filter((b) => names.includes(b));
  }
  const positive = (name: string, dflt: number): number => {
    const v = env[name];
    if (v === undefined || v === "") return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name}=${JSON.stringify(v)}: not a whole number of at least 1`);
    return n;
  };
  const seconds = positive("WEFT_BENCH_DATAPATH_SECONDS", 5);
  const runs = positive("WEFT_BENCH_DATAPATH_RUNS", 3);
  return { backends, partial: backends.length < DATAPATH_BACKENDS.length || seconds !== 5 || runs !== 3, seconds, runs };
}

/** `runs` iperf3 runs; the median by throughput (the VM is noisy: one run says little). */
async function iperf(server: TestNetns, client: TestNetns, to: string, seconds: number, runs: number): Promise<{ gbps: number; retransmits: number }> {
  const results: { gbps: number; retransmits: number }[] = [];
  for (let i = 0; i < runs; i++) results.push(await iperfOnce(server, client, to, seconds));
  return results.sort((a, b) => a.gbps - b.gbps)[Math.floor(runs / 2)]!;
}

/** One iperf3 run: a one-shot server (-1) we start and that exits by itself, then the client. */
async function iperfOnce(server: TestNetns, client: TestNetns, to: string, seconds: number): Promise<{ gbps: number; retransmits: number }> {
  const srv = labRunner.spawn("ip", ["netns", "exec", server.name, "iperf3", "-s", "-1", "-p", "5201"]);
  try {
    await new Promise((r) => setTimeout(r, 300));
    const r = await client.run("iperf3", ["-c", to, "-p", "5201", "-t", String(seconds), "-J"], { reject: false, timeoutMs: (seconds + 20) * 1000 });
    const j = JSON.parse(r.stdout) as { end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } }; error?: string };
    if (!j.end?.sum_received) throw new Error(`iperf3 to ${to}: ${j.error ?? r.stderr}`);
    return { gbps: j.end.sum_received.bits_per_second / 1e9, retransmits: j.end.sum_sent?.retransmits ?? 0 };
  } finally {
    srv.kill("SIGKILL");
    await srv.exited;
  }
}

/** How each backend's cluster is set up, and the daemon it leaves running beyond its agent. */
interface BackendSetup {
  readonly backend: Record<string, unknown>;
  readonly env?: Record<string, string>;
  /** The daemon's PID file under the node's STATE_DIR, and the program name its /proc cmdline must show. */
  readonly daemon?: { readonly pidFile: string; readonly program: string };
}

const SETUPS: Record<DatapathBackend, BackendSetup> = {
  "host-gw": { backend: { Type: "host-gw" } },
  vxlan: { backend: { Type: "vxlan" } },
  // wireguard-go (this kernel has no wireguard module); each node its own UAPI socket directory (ADR 0008).
  wireguard: { backend: { Type: "wireguard" }, env: { WEFT_WIREGUARD_PRIVATE_SOCKET_DIR: "1" }, daemon: { pidFile: "weft-wg.pid", program: "wireguard-go" } },
  // charon; each node a private /var/run/charon.pid (docs/backends/ipsec.md). A bench-only PSK of 105 characters.
  ipsec: {
    backend: { Type: "ipsec", PSK: "weft-bench-psk-".repeat(7) },
    env: { WEFT_IPSEC_PRIVATE_PIDFILE: "1" },
    daemon: { pidFile: join("ipsec", "charon.pid"), program: "charon" },
  },
};

/** Bind targets the agents create on the machine (not in their namespaces) when missing: an empty file, an empty directory. */
const BIND_TARGETS = ["/var/run/charon.pid", "/var/run/wireguard"] as const;

/** Removes each bind target that did not exist before the run, if it is still empty (so nobody else's). */
function removeBindTargets(existedBefore: ReadonlySet<string>): void {
  for (const path of BIND_TARGETS) {
    if (existedBefore.has(path) || !existsSync(path)) continue;
    const st = statSync(path);
    if (st.isFile() && st.size === 0) rmSync(path);
    else if (st.isDirectory() && readdirSync(path).length === 0) rmdirSync(path);
  }
}

/** Alive, not a zombie, and running `program` (so a recycled PID is never signalled). */
function runningAs(pid: number, program: string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    if (stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z") return false;
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0]!.endsWith(program);
  } catch {
    return false;
  }
}

/** The PIDs of the daemons the cluster's agents started (read while the cluster runs: destroy removes the files). */
function daemonPids(c: WeftCluster, setup: BackendSetup): number[] {
  if (!setup.daemon) return [];
  const pids: number[] = [];
  for (const n of c.nodes) {
    const f = join(n.stateDir, setup.daemon.pidFile);
    const pid = existsSync(f) ? Number(readFileSync(f, "utf8").trim()) : NaN;
    if (Number.isInteger(pid) && pid > 0) pids.push(pid);
  }
  return pids;
}

/** Destroys the cluster (which tears every node down), then ends any daemon of this run that survived, by PID. */
async function destroyCluster(c: WeftCluster, setup: BackendSetup, pids: readonly number[]): Promise<void> {
  await c.destroy();
  const program = setup.daemon?.program;
  if (!program) return;
  const left = pids.filter((p) => runningAs(p, program));
  for (const pid of left) {
    console.warn(`datapath bench: ${program} ${pid} outlived weftd --teardown; ending it by PID`);
    process.kill(pid, "SIGTERM");
  }
  for (let i = 0; i < 50 && left.some((p) => runningAs(p, program)); i++) await new Promise((r) => setTimeout(r, 100));
}

/** The path label of a Weft row; ipsec names the datapath its agent reports in /status (`backend.datapath`). */
async function rowLabel(c: WeftCluster, node: WeftNode, backend: DatapathBackend): Promise<string> {
  if (backend === "wireguard") return "wireguard, wireguard-go (pod to pod)";
  if (backend !== "ipsec") return `${backend} (pod to pod)`;
  const status = JSON.parse((await c.health(node, "/status")).body) as { backend?: { datapath?: string } };
  return `ipsec, ${status.backend?.datapath ?? "datapath not reported"} (pod to pod)`;
}

/**
 * Measures the selected backends (default all): the underlay once, each backend's pod-to-pod path on a 2-node
 * cluster, and for host-gw and vxlan the hand-built reference.
 */
export async function runDatapathBench(selection: DatapathSelection = datapathSelection()): Promise<DatapathRow[]> {
  const { seconds, runs } = selection;
  const rows: DatapathRow[] = [];
  const existedBefore = new Set(BIND_TARGETS.filter((p) => existsSync(p)));
  try {
    for (const backend of selection.backends) {
      const setup = SETUPS[backend];
      // The default resync interval (10 s), as operators run it: a short test interval would charge reconcile CPU to the datapath.
      const c = await WeftCluster.start({ nodes: 2, weftd, backend: setup.backend, resyncInterval: 10, name: "wp", ...(setup.env ? { env: setup.env } : {}) });
      const pids = daemonPids(c, setup);
      try {
        const [a, b] = c.nodes as [WeftNode, WeftNode];
        if (rows.length === 0) {
          const u = await iperf(b.lab.netns, a.lab.netns, b.lab.underlayIp, seconds, runs);
          rows.push({ path: "underlay (node to node)", ...u, mtu: 1500 });
        }
        const r = await iperf(b.pod!.netns, a.pod!.netns, b.pod!.ip, seconds, runs);
        rows.push({ path: await rowLabel(c, a, backend), backend, ...r, mtu: c.subnetEnv(a).mtu ?? 0 });
      } finally {
        await destroyCluster(c, setup, pids);
      }
      if (backend !== "host-gw" && backend !== "vxlan") continue;
      const ref = await handBuiltLab(backend);
      try {
        const r = await iperf(ref.to.netns, ref.from.netns, ref.to.ip, seconds, runs);
        rows.push({ path: `${backend} by hand, no Weft (pod to pod)`, ...r, mtu: ref.mtu });
      } finally {
        await ref.lab.destroy();
      }
    }
  } finally {
    removeBindTargets(existedBefore);
  }
  return rows;
}
