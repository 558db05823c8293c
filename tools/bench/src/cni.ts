/**
 * CNI benchmark (DESIGN §8): ADD and DEL latency of the `weft` plugin next to the reference bridge + host-local
 * plugins, in the same run, interleaved, each as a container runtime runs a plugin:
 *   - the executable itself is exec'd: `weft` as `weft-cni install` puts it in a CNI bin dir (the C shim, which
 *     forwards to weftd's CNI server, with the Node plugin `weft-cni` as its fallback, its shebang pinned to this
 *     node binary), the reference plugin from /usr/lib/cni;
 *   - a new process per call, CNI_* in its environment, the config on stdin, under `ip netns exec <node>` (every
 *     figure includes that wrapper, measured alone too);
 *   - with a runtime's environment: `env -i PATH=...` plus CNI_*, not this shell's. That matters for Node: this
 *     sandbox exports NODE_EXTRA_CA_CERTS, and Node then parses the whole CA bundle at every start (~40 ms here)
 *     although the plugin opens no TLS connection; containerd or CRI-O do not pass such a variable unless an
 *     operator sets it for them. When it is set here, one extra row shows the Node plugin with it.
 * weftd's side is its CNI server alone (./cni-server-main.ts: the same CniServer and ports weftd wires), started
 * in the node namespace; "weftd down" rows point the shim at a socket nobody serves, so it runs the fallback.
 * Timed calls go through SpawnRunner (no execa in the measuring path). A fresh pod namespace per run, created and
 * deleted outside the timings. The Node plugin's V8 code cache lives in the benchmark's directory; the warm-up
 * round writes it, as a node's first pod does (one row shows it without). Peak RSS: one more ADD per variant
 * under /usr/bin/time (GNU time's %M: the largest resident set of the plugin's process, which for the shim
 * includes the few pages `time` itself had before the exec). Addresses: 198.19.0.0/16 inside namespaces this
 * benchmark creates.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SpawnRunner } from "@weft/kernel";
import { createNetns, labRunner, type TestNetns } from "@weft/netns-lab";

export const CNI_BUNDLE = fileURLToPath(new URL("../../../packages/cni/dist/weft-cni.cjs", import.meta.url));
export const CNI_SHIM = fileURLToPath(new URL("../../../packages/cni/dist/weft-cni-shim", import.meta.url));
const SERVER = fileURLToPath(new URL("./cni-server-main.js", import.meta.url));
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
  /** Peak resident set of one ADD's process, KiB. */
  readonly addRssKiB: number;
  /** The reference row. */
  readonly reference?: boolean;
}

export function stats(samples: readonly number[]): LatencyStats {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  return { median: at(0.5), p90: at(0.9), min: s[0]!, max: s[s.length - 1]! };
}

interface Variant {
  readonly plugin: string;
  readonly file: string;
  /** Added to the runtime environment (PATH + CNI_*). */
  readonly env?: Readonly<Record<string, string>>;
  readonly conf: Record<string, unknown>;
  readonly reference?: boolean;
}

const runner = new SpawnRunner();

export async function runCniBench(runs = 30): Promise<{ rows: CniBenchRow[]; wrapper: LatencyStats; nodeStart: LatencyStats }> {
  for (const f of [CNI_BUNDLE, CNI_SHIM]) if (!existsSync(f)) throw new Error(`${f} is missing: run \`npm run build\` (packages/cni) first`);
  const dir = mkdtempSync(join(tmpdir(), "weft-cni-bench-"));
  const node = await createNetns("wbc");
  const socket = join(dir, "cni.sock");
  const server = labRunner.spawn("ip", ["netns", "exec", node.name, process.execPath, SERVER, socket]);
  try {
    for (let waited = 0; !existsSync(socket); waited += 20) {
      if (waited > 15_000) throw new Error(`the CNI server did not create ${socket} within 15 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const inst = await labRunner.run(process.execPath, [CNI_BUNDLE, "install", "--bin-dir", join(dir, "bin"), "--conf-dir", join(dir, "net.d"), "--node", process.execPath], {
      reject: false,
    });
    if (inst.exitCode !== 0) throw new Error(`weft-cni install failed: ${inst.stderr}`);
    const weft = join(dir, "bin", "weft");
    const nodePlugin = join(dir, "bin", "weft-cni");
    const cache = { WEFT_CNI_CODE_CACHE_DIR: join(dir, "code-cache") };
    const served = { agentSocket: socket };
    const down = { agentSocket: join(dir, "nobody.sock") };

    const subnetFile = (name: string, third: number) => {
      writeFileSync(join(dir, name), `FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.${third}.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n`);
      return join(dir, name);
    };
    // Each variant gets its own network name, bridge and /24, so they share no state.
    const direct = (name: string, bridge: string, third: number) => ({
      cniVersion: "1.0.0",
      name,
      type: "weft",
      subnetFile: subnetFile(`${name}.env`, third),
      bridge,
      isDefaultGateway: true,
      hairpinMode: true,
      ipam: { dataDir: join(dir, "ipam") },
    });
    const variants: Variant[] = [
      { plugin: "weft: shim → weftd (direct)", file: weft, conf: { ...direct("bench-direct", "wbr1", 20), ...served } },
      {
        plugin: "weft: shim → weftd (delegate → bridge + host-local)",
        file: weft,
        conf: {
          ...served,
          cniVersion: "1.0.0",
          name: "bench-delegate",
          type: "weft",
          subnetFile: subnetFile("bench-delegate.env", 21),
          dataDir: join(dir, "weft-delegate"),
          ipam: { dataDir: join(dir, "ipam") },
          delegate: { bridge: "wbr2", hairpinMode: true, isDefaultGateway: true },
        },
      },
      {
        plugin: "reference bridge + host-local",
        reference: true,
        file: `${REF}/bridge`,
        conf: {
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
        },
      },
      { plugin: "weft: shim, weftd down → Node fallback (direct)", file: weft, env: cache, conf: { ...direct("bench-fallback", "wbr4", 23), ...down } },
      { plugin: "weft-cni Node plugin alone (direct; before the shim)", file: nodePlugin, env: cache, conf: direct("bench-node", "wbr6", 25) },
      { plugin: "weft-cni Node plugin alone (direct), no code cache", file: nodePlugin, env: { WEFT_CNI_CODE_CACHE_DIR: "off" }, conf: direct("bench-nocache", "wbr7", 26) },
    ];
    const ca = process.env.NODE_EXTRA_CA_CERTS;
    if (ca) {
      variants.push({
        plugin: "weft-cni Node plugin alone (direct), NODE_EXTRA_CA_CERTS set (as in this sandbox)",
        file: nodePlugin,
        env: { ...cache, NODE_EXTRA_CA_CERTS: ca },
        conf: direct("bench-ca", "wbr5", 24),
      });
    }

    // A container runtime's environment: its PATH, nothing of this shell's. Passed through `env -i` (one extra
    // exec, ~1 ms, in every figure alike) because a ProcessRunner adds to the environment, never removes.
    const runtimeEnv = (extra: Readonly<Record<string, string>>) => Object.entries({ PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...extra }).map(([k, v]) => `${k}=${v}`);
    const timed = async (args: readonly string[], input?: string) => {
      const t0 = process.hrtime.bigint();
      const r = await runner.run("ip", ["netns", "exec", node.name, "env", "-i", ...args], { ...(input !== undefined ? { input } : {}), reject: false });
      return { ms: Number(process.hrtime.bigint() - t0) / 1e6, r };
    };
    const call = async (v: Variant, command: string, pod: TestNetns, id: string): Promise<number> => {
      const env = runtimeEnv({ CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: pod.path, CNI_IFNAME: "eth0", CNI_PATH: REF, ...v.env });
      const { ms, r } = await timed([...env, v.file], JSON.stringify(v.conf));
      if (r.exitCode !== 0) throw new Error(`${v.plugin} ${command} failed: ${r.stdout} ${r.stderr}`);
      return ms;
    };

    const add = variants.map(() => [] as number[]);
    const del = variants.map(() => [] as number[]);
    const wrapper: number[] = [];
    const nodeStart: number[] = [];
    // One warm-up round (creates the bridges and weft-cni's code cache, fills the page cache), then `runs`
    // measured rounds, interleaved.
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
        wrapper.push((await timed([...runtimeEnv({}), "/bin/true"])).ms);
        // Node's own start, outside the namespace wrapper but with the same environment.
        const t0 = process.hrtime.bigint();
        await runner.run("env", ["-i", ...runtimeEnv({}), process.execPath, "-e", "0"]);
        nodeStart.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    }
    // Peak RSS of one ADD's process per variant (not timed).
    const rss: number[] = [];
    for (let i = 0; i < variants.length; i++) {
      const v = variants[i]!;
      const pod = await createNetns("wbp");
      const out = join(dir, `rss-${i}`);
      try {
        const env = runtimeEnv({ CNI_COMMAND: "ADD", CNI_CONTAINERID: `rss-${i}`, CNI_NETNS: pod.path, CNI_IFNAME: "eth0", CNI_PATH: REF, ...v.env });
        const { r } = await timed([...env, "/usr/bin/time", "-f", "%M", "-o", out, v.file], JSON.stringify(v.conf));
        if (r.exitCode !== 0) throw new Error(`${v.plugin} ADD (RSS) failed: ${r.stdout} ${r.stderr}`);
        rss.push(Number(readFileSync(out, "utf8").trim().split("\n").pop()));
        await call(v, "DEL", pod, `rss-${i}`);
      } finally {
        await pod.destroy();
      }
    }
    return {
      rows: variants.map((v, i) => ({ plugin: v.plugin, add: stats(add[i]!), del: stats(del[i]!), addRssKiB: rss[i]!, ...(v.reference ? { reference: true } : {}) })),
      wrapper: stats(wrapper),
      nodeStart: stats(nodeStart),
    };
  } finally {
    server.kill("SIGTERM");
    await server.exited;
    await node.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
