/**
 * Store benchmark (issue "Subnet managers"): 5,000 leases in a real etcd delivered to the agent as one
 * snapshot by EtcdSubnetManager, and what holding them costs in memory.
 */
import { IPAddress, MemoryLogger, encodeLeaseAttrs } from "@weft/core";
import { etcdPut, startEtcd } from "@weft/netns-lab";
import { EtcdSubnetManager } from "@weft/subnet-etcd";

export interface StoreBenchResult {
  readonly leases: number;
  readonly writeMs: number;
  readonly configAndAcquireMs: number;
  readonly snapshotMs: number;
  readonly snapshotSize: number;
  readonly heapDeltaMiB: number;
  readonly rssMiB: number;
}

const gc = () => (globalThis as { gc?: () => void }).gc?.();

export async function runStoreBench(n: number): Promise<StoreBenchResult> {
  const etcd = await startEtcd({ listen: "loopback" });
  const prefix = "/weft-bench/network";
  try {
    await etcdPut(etcd.endpoint, `${prefix}/config`, JSON.stringify({ Network: "198.19.0.0/16", SubnetLen: 29, Backend: { Type: "vxlan" } }));
    let t = performance.now();
    let next = 0;
    const writer = async () => {
      for (let i = next++; i < n; i = next++) {
        const v = ((198 << 24) | (19 << 16)) + (i + 1) * 8;
        const sn = `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
        const attrs = encodeLeaseAttrs({
          publicIP: IPAddress.parse(`198.18.${16 + (i >> 8)}.${i & 255}`),
          backendType: "vxlan",
          backendData: { VNI: 1, VtepMAC: `0e:57:00:00:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}` },
        });
        await etcdPut(etcd.endpoint, `${prefix}/subnets/${sn}-29`, attrs);
      }
    };
    await Promise.all(Array.from({ length: 32 }, writer));
    const writeMs = performance.now() - t;

    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    const ctl = new AbortController();
    const m = new EtcdSubnetManager({ endpoints: [etcd.endpoint], prefix, leaseTtlSeconds: 600 }, new MemoryLogger());
    t = performance.now();
    await m.getNetworkConfig(ctl.signal);
    const lease = await m.acquireLease({ publicIP: IPAddress.parse("198.18.0.1"), backendType: "vxlan" }, ctl.signal);
    const configAndAcquireMs = performance.now() - t;
    t = performance.now();
    let snapshotSize = 0;
    let held: unknown;
    for await (const ev of m.watchLeases(lease, ctl.signal)) {
      if (ev.type === "snapshot") {
        snapshotSize = ev.leases.length;
        held = ev.leases;
        break;
      }
    }
    const snapshotMs = performance.now() - t;
    gc();
    const heapDeltaMiB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    const rssMiB = process.memoryUsage().rss / 2 ** 20;
    void held;
    ctl.abort();
    await m.close?.();
    return { leases: n, writeMs, configAndAcquireMs, snapshotMs, snapshotSize, heapDeltaMiB, rssMiB };
  } finally {
    await etcd.stop();
  }
}
