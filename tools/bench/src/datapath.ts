/**
 * Datapath benchmark (issue "Backends vxlan and host-gw"): iperf3 between pod namespaces on two nodes of a real
 * Weft cluster, per backend, next to the underlay (node to node) measured in the same run; reported as ratios.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type TestNetns, WeftCluster, labRunner } from "@weft/netns-lab";
import { handBuiltLab } from "./datapath-reference.js";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "packages", "daemon", "dist", "main.js");

export interface DatapathRow {
  readonly path: string;
  readonly gbps: number;
  readonly retransmits: number;
  readonly mtu: number;
}

/** RUNS iperf3 runs; the median by throughput (the VM is noisy: one run says little). */
const RUNS = 3;
async function iperf(server: TestNetns, client: TestNetns, to: string, seconds: number): Promise<{ gbps: number; retransmits: number }> {
  const runs: { gbps: number; retransmits: number }[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(await iperfOnce(server, client, to, seconds));
  return runs.sort((a, b) => a.gbps - b.gbps)[Math.floor(RUNS / 2)]!;
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

export async function runDatapathBench(seconds: number): Promise<DatapathRow[]> {
  const rows: DatapathRow[] = [];
  for (const backend of ["host-gw", "vxlan"]) {
    // The default resync interval (10 s), as operators run it: a short test interval would charge reconcile CPU to the datapath.
    const c = await WeftCluster.start({ nodes: 2, weftd, backend: { Type: backend }, resyncInterval: 10, name: "wp" });
    try {
      const [a, b] = c.nodes as [(typeof c.nodes)[0], (typeof c.nodes)[0]];
      if (rows.length === 0) {
        const u = await iperf(b.lab.netns, a.lab.netns, b.lab.underlayIp, seconds);
        rows.push({ path: "underlay (node to node)", ...u, mtu: 1500 });
      }
      const r = await iperf(b.pod!.netns, a.pod!.netns, b.pod!.ip, seconds);
      rows.push({ path: `${backend} (pod to pod)`, ...r, mtu: c.subnetEnv(a).mtu ?? 0 });
    } finally {
      await c.destroy();
    }
    const ref = await handBuiltLab(backend as "vxlan" | "host-gw");
    try {
      const r = await iperf(ref.to.netns, ref.from.netns, ref.to.ip, seconds);
      rows.push({ path: `${backend} by hand, no Weft (pod to pod)`, ...r, mtu: ref.mtu });
    } finally {
      await ref.lab.destroy();
    }
  }
  // ipsec (charon + kernel-libipsec here: the kernel lacks ESP): userspace ESP-in-UDP, no hand-built reference.
  // Each node needs a private /var/run/charon.pid (docs/backends/ipsec.md).
  const c = await WeftCluster.start({
    nodes: 2,
    weftd,
    backend: { Type: "ipsec", PSK: "weft-bench-psk-".repeat(7) },
    resyncInterval: 10,
    name: "wp",
    env: { WEFT_IPSEC_PRIVATE_PIDFILE: "1" },
  });
  try {
    const [a, b] = c.nodes as [(typeof c.nodes)[0], (typeof c.nodes)[0]];
    const r = await iperf(b.pod!.netns, a.pod!.netns, b.pod!.ip, seconds);
    rows.push({ path: "ipsec, libipsec (pod to pod)", ...r, mtu: c.subnetEnv(a).mtu ?? 0 });
  } finally {
    // charon outlives its agent by design: teardown stops it by PID before the lab goes.
    for (const n of c.nodes) {
      await c.stopAgent(n);
      await n.lab.netns.run(process.execPath, [weftd, "--teardown", "--subnet-file", n.subnetFile, "--state-dir", n.stateDir], { reject: false });
    }
    await c.destroy();
  }
  return rows;
}
