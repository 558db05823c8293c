/**
 * Kernel mode (charon installs SAs and policies into XFRM) on a real 2-node cluster: pods reach each other, the
 * SAs are ESP states in each node's kernel, no ipsec0 exists, and `weftd --teardown` leaves no XFRM state or
 * policy behind.
 *
 * The only gate is the kernel feature itself: where the kernel has no ESP transform (these dev machines: XFRM
 * without esp4) the test is reported as "not run: kernel lacks ESP". Anything else missing (root, etcd, charon)
 * fails under CI=true like every real-kernel test.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type KernelEspSupport, ViciIpsec } from "@weft/kernel";
import { WeftCluster, type WeftNode, createNetns, labRunner, realKernelStatus } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";
import { TEST_PSK } from "./fake-charon.spec-helper.js";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "packages", "daemon", "dist", "main.js");

/** Asks a throw-away namespace's kernel (IpsecPort.kernelEsp); undefined where it cannot be asked (no root). */
async function probeEsp(): Promise<KernelEspSupport | undefined> {
  if (!realKernelStatus(["ip"]).ok) return undefined;
  const ns = await createNetns("wk");
  try {
    return await new ViciIpsec({
      run: (file, args, opts) => labRunner.run("ip", ["netns", "exec", ns.name, file, ...args], opts),
      spawn: (file, args, opts) => labRunner.spawn("ip", ["netns", "exec", ns.name, file, ...args], opts),
    }).kernelEsp();
  } finally {
    await ns.destroy();
  }
}

const esp = await probeEsp();

describeReal(
  "backend ipsec, kernel mode (XFRM): 2 nodes, real etcd, pods",
  () => {
    if (esp && !esp.available) {
      it.skip(`not run: kernel lacks ESP (${esp.reason})`, () => {});
      return;
    }
    let c: WeftCluster;
    beforeAll(async () => {
      c = await WeftCluster.start({
        nodes: 2,
        weftd,
        backend: { Type: "ipsec", PSK: TEST_PSK, Mode: "kernel" },
        resyncInterval: 2,
        name: "ipk",
        env: { WEFT_IPSEC_PRIVATE_PIDFILE: "1" },
      });
    }, 120_000);
    afterAll(async () => {
      for (const n of c?.nodes ?? []) {
        await n.lab.netns.run(process.execPath, [weftd, "--teardown", "--subnet-file", n.subnetFile, "--state-dir", n.stateDir], { reject: false });
      }
      await c?.destroy();
    });

    it("pods reach each other through ESP states in the kernel; no ipsec0; MTU − 77", async () => {
      const deadline = Date.now() + 20_000;
      while ((await c.pingMatrix()).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
      expect(await c.pingMatrix()).toEqual([]);
      for (const n of c.nodes as WeftNode[]) {
        expect(c.subnetEnv(n).mtu).toBe(1500 - 77);
        expect((await n.lab.netns.ip(["link", "show", "ipsec0"], { reject: false })).exitCode).not.toBe(0);
        expect((await n.lab.netns.ip(["xfrm", "state"])).stdout).toMatch(/proto esp/);
      }
    });

    it("weftd --teardown leaves no XFRM state or policy", async () => {
      const n = c.nodes[1]!;
      await c.stopAgent(n);
      const r = await n.lab.netns.run(process.execPath, [weftd, "--teardown", "--subnet-file", n.subnetFile, "--state-dir", n.stateDir], { reject: false });
      expect(r.exitCode, r.stderr).toBe(0);
      expect((await n.lab.netns.ip(["xfrm", "state"])).stdout.trim()).toBe("");
      expect((await n.lab.netns.ip(["xfrm", "policy"])).stdout.trim()).toBe("");
    });
  },
  { tools: ["etcd", "curl", "ping"] },
);
