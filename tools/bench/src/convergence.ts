/**
 * Control-plane convergence (DESIGN §8): one real weftd (vxlan) in a node namespace, a real etcd, and N peer
 * leases written straight into etcd as other nodes would. Measured: start → every peer programmed (N routes
 * with Weft's protocol on weft.1), then one more peer lease → its route in the kernel, and weftd's CPU time and
 * resident memory at that point (from /proc/<pid>).
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { IPAddress, WEFT_ROUTE_PROTOCOL, encodeLeaseAttrs } from "@weft/core";
import { Lab, etcdPut, labRunner, startEtcd } from "@weft/netns-lab";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "packages", "daemon", "dist", "main.js");

export interface ConvergenceRow {
  readonly peers: number;
  readonly convergeMs: number;
  readonly addOneMs: number;
  readonly cpuSeconds: number;
  readonly rssMiB: number;
}

const subnet = (i: number) => {
  const v = ((198 << 24) | (19 << 16)) + (i + 1) * 8;
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
};
const hex = (n: number) => n.toString(16).padStart(2, "0");

async function putPeers(endpoint: string, prefix: string, from: number, to: number) {
  let next = from;
  const worker = async () => {
    for (let i = next++; i < to; i = next++) {
      const attrs = encodeLeaseAttrs({
        publicIP: IPAddress.parse(`198.18.${16 + (i >> 8)}.${i & 255}`),
        backendType: "vxlan",
        backendData: { VNI: 1, VtepMAC: `0e:57:01:${hex((i >> 16) & 255)}:${hex((i >> 8) & 255)}:${hex(i & 255)}` },
      });
      await etcdPut(endpoint, `${prefix}/subnets/${subnet(i)}-29`, attrs);
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
}

/** CPU seconds (user + system) and RSS of a process, from /proc. */
function usage(pid: number): { cpuSeconds: number; rssMiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
  const rssPages = Number(fields[21]);
  return { cpuSeconds: ticks / 100, rssMiB: (rssPages * 4096) / 2 ** 20 };
}

export async function runConvergenceBench(sizes: readonly number[]): Promise<ConvergenceRow[]> {
  const rows: ConvergenceRow[] = [];
  for (const n of sizes) {
    const lab = await Lab.create({ nodes: 1, name: "wv" });
    const etcd = await startEtcd({ listen: "unix" });
    const prefix = "/weft-bench/convergence";
    const node = lab.nodes[0]!;
    const dir = `/tmp/weft-conv-${process.pid}-${n}`;
    let proc: ReturnType<typeof labRunner.spawn> | undefined;
    try {
      await etcdPut(etcd.endpoint, `${prefix}/config`, JSON.stringify({ Network: "198.19.0.0/16", SubnetLen: 29, Backend: { Type: "vxlan" } }));
      await putPeers(etcd.endpoint, prefix, 0, n);
      const count = async () => (JSON.parse((await node.netns.ip(["-j", "route", "show", "proto", String(WEFT_ROUTE_PROTOCOL)])).stdout || "[]") as unknown[]).length;
      const t0 = performance.now();
      proc = labRunner.spawn("ip", ["netns", "exec", node.netns.name, process.execPath, weftd,
        "--etcd-endpoints", etcd.endpoint, "--etcd-prefix", prefix, "--iface", "eth0", "--subnet-file", `${dir}/subnet.env`, "--state-dir", `${dir}/state`, "--log-level", "warn"]);
      while ((await count()) < n) {
        if ((await Promise.race([proc.exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 20))])) === true) throw new Error("weftd exited");
      }
      const convergeMs = performance.now() - t0;
      const t1 = performance.now();
      await putPeers(etcd.endpoint, prefix, n, n + 1);
      // Poll just the new route: listing all N routes each time would measure `ip`, not weftd.
      const hasNew = async () => (JSON.parse((await node.netns.ip(["-j", "route", "show", `${subnet(n)}/29`])).stdout || "[]") as unknown[]).length > 0;
      while (!(await hasNew())) await new Promise((r) => setTimeout(r, 2));
      const addOneMs = performance.now() - t1;
      rows.push({ peers: n, convergeMs, addOneMs, ...usage(proc.pid) });
    } finally {
      proc?.kill("SIGKILL");
      await proc?.exited;
      await lab.destroy();
      await etcd.stop();
      await labRunner.run("rm", ["-rf", dir]);
    }
  }
  return rows;
}
