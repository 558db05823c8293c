/**
 * Kernel mode (charon installs SAs and policies into XFRM) on a real 2-node cluster: pods reach each other, the
 * SAs are ESP states in each node's kernel carrying Weft's reqids, no ipsec0 exists, kill -9 of charon leaves its
 * states and policies behind and the recovery removes them (only what the new charon holds has Weft's reqids),
 * and `weftd --teardown` leaves no XFRM state or policy behind.
 *
 * The only gate is the kernel feature itself: where the kernel has no ESP transform (these dev machines: XFRM
 * without esp4) the test is reported as "not run: kernel lacks ESP". Anything else missing (root, etcd, charon)
 * fails under CI=true like every real-kernel test.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ExecaRunner, type KernelEspSupport, LinuxXfrm, type ProcessRunner, ViciIpsec, charonFiles } from "@weft/kernel";
import { WeftCluster, type WeftNode, createNetns, labRunner, pidInFile, processAlive, realKernelStatus } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";
import { TEST_PSK } from "./fake-charon.spec-helper.js";
import { isWeftReqid } from "./xfrm-sweep.js";

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
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The XfrmPort of node `n`'s namespace. */
function xfrmOf(n: WeftNode): LinuxXfrm {
  const runner: ProcessRunner = {
    run: (file, args, opts) => n.lab.netns.run(file, args, opts),
    spawn: () => {
      throw new Error("not used");
    },
  };
  return new LinuxXfrm(runner);
}

/** SPIs and reqids node `n`'s charon holds (its VICI socket is a file in the node's state dir). */
async function charonHolds(n: WeftNode): Promise<{ spis: Set<number>; reqids: Set<number> }> {
  const children = (await new ViciIpsec(new ExecaRunner()).listSas(charonFiles(join(n.stateDir, "ipsec")).socket)).flatMap((s) => s.children);
  return {
    spis: new Set(children.flatMap((ch) => [ch.spiIn, ch.spiOut]).filter((x): x is number => x !== undefined)),
    reqids: new Set(children.map((ch) => ch.reqid).filter((x): x is number => x !== undefined)),
  };
}

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

    it("kill -9 of charon: its states and policies stay in the kernel; after recovery only what the new charon holds has Weft's reqids", async () => {
      const n = c.nodes[0]!;
      const xfrm = xfrmOf(n);
      const weftStates = async () => (await xfrm.listStates()).filter((s) => isWeftReqid(s.reqid));
      const weftPolicies = async () => (await xfrm.listPolicies()).filter((p) => p.reqids.length > 0 && p.reqids.every(isWeftReqid));
      const old = new Set((await weftStates()).map((s) => s.spi));
      expect(old.size, "charon's SA carries Weft's reqid on its XFRM states").toBeGreaterThan(0);
      expect((await weftPolicies()).length, "and on its policies").toBeGreaterThan(0);
      const pidFile = join(n.stateDir, "ipsec", "charon.pid");
      const pid = pidInFile(pidFile)!;
      process.kill(pid, "SIGKILL");
      // What Weft has to clean up: charon had no chance to remove them.
      expect((await weftStates()).some((s) => old.has(s.spi))).toBe(true);
      const deadline = Date.now() + 30_000;
      const recovered = async () => {
        const now = pidInFile(pidFile);
        return now !== undefined && now !== pid && processAlive(now) && (await c.pingMatrix()).length === 0;
      };
      while (!(await recovered()) && Date.now() < deadline) await sleep(250);
      expect(await c.pingMatrix()).toEqual([]);
      // The pass that restarted charon removed the leftovers before the connections loaded; what has Weft's reqids
      // now is the new charon's.
      const held = await charonHolds(n);
      const states = await weftStates();
      expect(states.filter((s) => old.has(s.spi)).map((s) => s.spi)).toEqual([]);
      expect(states.filter((s) => !held.spis.has(s.spi)).map((s) => s.spi)).toEqual([]);
      expect((await weftPolicies()).filter((p) => !p.reqids.some((r) => held.reqids.has(r))).map((p) => `${p.dir} ${p.src} ${p.dst}`)).toEqual([]);
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
