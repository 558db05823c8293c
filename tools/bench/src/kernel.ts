/**
 * Kernel benchmark (issue "Foundation"): program N vxlan peers (route + permanent neighbour + self FDB entry
 * each, so 3·N objects) from empty through the real DatapathEngine and LinuxKernel in a fresh namespace, then
 * time a no-drift pass (must write nothing). Targets on these 2-core machines: 5,000 peers ≤ 1 s, no-drift ≤ 300 ms.
 */
import "reflect-metadata";
import { type KernelObjects, LOGGER, type LinkSpec, silentLogger } from "@weft/core";
import { ExecaRunner, KERNEL, LinuxKernel } from "@weft/kernel";
import { createNetns } from "@weft/netns-lab";
import { DatapathEngine, registerDatapath } from "@weft/reconcile";
import { container } from "tsyringe";

export interface KernelBenchResult {
  readonly peers: number;
  readonly objects: number;
  readonly programMs: number;
  readonly noDriftMs: number;
  readonly noDriftWrites: number;
  readonly removeAllMs: number;
}

const mac = (i: number) => `0e:57:${((i >> 24) & 255).toString(16).padStart(2, "0")}:${((i >> 16) & 255).toString(16).padStart(2, "0")}:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;
/** Peer i's /29 inside 198.19.0.0/16, and its public IP in 198.18.16.0/20 + … (198.18.0.0/15 only). */
const peerSubnet = (i: number) => {
  const base = (198 << 24) | (19 << 16);
  const v = base + i * 8;
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
};
const peerPublic = (i: number) => `198.18.${16 + (i >> 8)}.${i & 255}`;

export async function runKernelBench(sizes: readonly number[]): Promise<KernelBenchResult[]> {
  const results: KernelBenchResult[] = [];
  for (const n of sizes) {
    const ns = await createNetns("wbk");
    try {
      const runner = new ExecaRunner();
      await ns.ip(["link", "add", "wbu0", "type", "veth", "peer", "name", "wbu1"]);
      await ns.ip(["addr", "add", "198.18.0.1/24", "dev", "wbu0"]);
      await ns.ip(["link", "set", "wbu0", "up"]);
      await ns.ip(["link", "set", "wbu1", "up"]);
      const kernel = new LinuxKernel({ runner, netns: ns.name });
      const c = container.createChildContainer();
      c.register(KERNEL, { useValue: kernel });
      c.register(LOGGER, { useValue: silentLogger });
      registerDatapath(c);
      const engine = c.resolve(DatapathEngine);
      const vx: LinkSpec = { name: "weft.1", kind: "vxlan", vxlan: { vni: 1, local: "198.18.0.1", dev: "wbu0", port: 8472, learning: false }, mtu: 1450, up: true, addrGenMode: "none" };
      engine.declare("local", { links: [vx], addresses: [{ dev: "weft.1", address: "198.19.255.248/32" }] });
      await engine.flush();
      for (let i = 0; i < n; i++) {
        const sn = peerSubnet(i);
        const objs: KernelObjects = {
          neighbours: [{ dev: "weft.1", ip: sn, lladdr: mac(i), state: "permanent" }],
          fdb: [{ dev: "weft.1", mac: mac(i), dst: peerPublic(i), self: true, permanent: true }],
          routes: [{ family: "v4", dst: `${sn}/29`, gateway: sn, dev: "weft.1", onlink: true }],
        };
        engine.declare(`peer ${i}`, objs);
      }
      let t = performance.now();
      const first = await engine.reconcile({ prune: true });
      const programMs = performance.now() - t;
      if (first.failures > 0) throw new Error(`programming ${n} peers had ${first.failures} failures: ${JSON.stringify(first.kinds.flatMap((k) => k.failures.slice(0, 2)))}`);
      t = performance.now();
      const second = await engine.reconcile({ prune: true });
      const noDriftMs = performance.now() - t;
      for (let i = 0; i < n; i++) engine.retract(`peer ${i}`);
      t = performance.now();
      await engine.flush();
      const removeAllMs = performance.now() - t;
      results.push({ peers: n, objects: 3 * n, programMs, noDriftMs, noDriftWrites: second.writes, removeAllMs });
    } finally {
      await ns.destroy();
    }
  }
  return results;
}
