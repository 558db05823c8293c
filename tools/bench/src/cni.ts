/**
 * CNI benchmark (DESIGN §8): ADD and DEL latency of the weft-cni bundle (direct mode and delegate mode) next to
 * the reference bridge + host-local plugins, in the same run, interleaved, each as kubelet runs a plugin: a new
 * process with CNI_* and the config on stdin, under `ip netns exec <node>` (so every figure includes that
 * wrapper, ~15 ms here; it is measured too). A fresh pod namespace per run, created and deleted outside the
 * timings. Addresses: 198.19.0.0/16 inside namespaces this benchmark creates.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createNetns, labRunner, type TestNetns } from "@weft/netns-lab";

export const CNI_BUNDLE = fileURLToPath(new URL("../../../packages/cni/dist/weft-cni.mjs", import.meta.url));
const REF = "/usr/lib/cni";

export interface LatencyStats {
  readonly median: number;
  readonly p90: number;
  readonly min: number;
  readonly max: number;
}

export interface CniBenchRow {
  readonly plugin: string;
  readonly add: LatencyStats;
  readonly del: LatencyStats;
}

export function stats(samples: readonly number[]): LatencyStats {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  return { median: at(0.5), p90: at(0.9), min: s[0]!, max: s[s.length - 1]! };
}

interface Variant {
  readonly plugin: string;
  readonly file: readonly string[];
  readonly conf: (dir: string) => Record<string, unknown>;
}

export async function runCniBench(runs = 30): Promise<{ rows: CniBenchRow[]; wrapper: LatencyStats; nodeStart: LatencyStats }> {
  if (!existsSync(CNI_BUNDLE)) throw new Error(`${CNI_BUNDLE} is missing: run \`npm run build\` (packages/cni) first`);
  const dir = mkdtempSync(join(tmpdir(), "weft-cni-bench-"));
  const node = await createNetns("wbc");
  try {
    writeFileSync(join(dir, "subnet.env"), "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.20.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
    const weftConf = (mode: string, extra: Record<string, unknown>) => ({
      cniVersion: "1.0.0",
      name: `bench-${mode}`,
      type: "weft",
      subnetFile: join(dir, "subnet.env"),
      dataDir: join(dir, `weft-${mode}`),
      isDefaultGateway: true,
      hairpinMode: true,
      ipam: { dataDir: join(dir, "ipam") },
      ...extra,
    });
    // Each variant gets its own bridge and /24 so they do not share state.
    const variants: Variant[] = [
      { plugin: "weft-cni (direct)", file: [process.execPath, CNI_BUNDLE], conf: () => weftConf("direct", { bridge: "wbr1" }) },
      {
        plugin: "weft-cni (delegate → bridge + host-local)",
        file: [process.execPath, CNI_BUNDLE],
        conf: () => ({
          ...weftConf("delegate", { subnetFile: join(dir, "subnet-d.env") }),
          delegate: { bridge: "wbr2", hairpinMode: true, isDefaultGateway: true },
        }),
      },
      {
        plugin: "reference bridge + host-local",
        file: [`${REF}/bridge`],
        conf: () => ({
          cniVersion: "1.0.0",
          name: "bench-ref",
          type: "bridge",
          bridge: "wbr3",
          isGateway: true,
          isDefaultGateway: true,
          hairpinMode: true,
          ipMasq: false,
          mtu: 1450,
          ipam: { type: "host-local", ranges: [[{ subnet: "198.19.22.0/24" }]], routes: [{ dst: "198.19.0.0/16" }], dataDir: join(dir, "ipam") },
        }),
      },
    ];
    writeFileSync(join(dir, "subnet-d.env"), "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.21.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");

    const call = async (v: Variant, command: string, pod: TestNetns, id: string): Promise<number> => {
      const t0 = process.hrtime.bigint();
      const r = await node.run(v.file[0]!, v.file.slice(1), {
        env: { CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: pod.path, CNI_IFNAME: "eth0", CNI_PATH: REF },
        input: JSON.stringify(v.conf(dir)),
        reject: false,
      });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (r.exitCode !== 0) throw new Error(`${v.plugin} ${command} failed: ${r.stdout} ${r.stderr}`);
      return ms;
    };

    const add = variants.map(() => [] as number[]);
    const del = variants.map(() => [] as number[]);
    const wrapper: number[] = [];
    const nodeStart: number[] = [];
    // One warm-up round (creates the bridges, fills the page cache), then `runs` measured rounds, interleaved.
    for (let round = -1; round < runs; round++) {
      for (let i = 0; i < variants.length; i++) {
        const pod = await createNetns("wbp");
        try {
          const a = await call(variants[i]!, "ADD", pod, `b${i}-${round + 1}`);
          const d = await call(variants[i]!, "DEL", pod, `b${i}-${round + 1}`);
          if (round >= 0) {
            add[i]!.push(a);
            del[i]!.push(d);
          }
        } finally {
          await pod.destroy();
        }
      }
      if (round >= 0) {
        let t0 = process.hrtime.bigint();
        await node.run("/bin/true", []);
        wrapper.push(Number(process.hrtime.bigint() - t0) / 1e6);
        t0 = process.hrtime.bigint();
        await labRunner.run(process.execPath, ["-e", "0"]);
        nodeStart.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    }
    return {
      rows: variants.map((v, i) => ({ plugin: v.plugin, add: stats(add[i]!), del: stats(del[i]!) })),
      wrapper: stats(wrapper),
      nodeStart: stats(nodeStart),
    };
  } finally {
    await node.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
