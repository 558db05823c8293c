/**
 * Fault injection on a real node (issue 15, "Fault injection"): a real weftd in a node namespace, a real etcd.
 * - kill -9 in the middle of flushing 5,000 peers: the next agent converges to exactly the peers' objects;
 * - the subnet-file dir and the state dir full (a 1 MB tmpfs): one clear error line, the previous subnet.env
 *   intact byte for byte, never a truncated or temporary file left behind.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { sleep } from "@weft/core";
import { type FakePeer, WeftCluster, type WeftNode, fakePeer, labRunner, putFakePeers, vxlanObjects } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "main.js");
const PEERS = 5000;

/** Resolves to the exit of `n`'s weftd, or undefined if it still runs after `ms`. */
async function exitWithin(n: WeftNode, ms: number): Promise<{ code: number | null; signal: string | null } | undefined> {
  const p = n.proc;
  if (!p) return undefined;
  return Promise.race([p.exited, sleep(ms).then(() => undefined)]);
}

/** A 1 MB tmpfs on a fresh directory; `fill()` takes every free byte; `close()` unmounts and removes it. */
async function smallTmpfs(): Promise<{ dir: string; fill: () => Promise<void>; close: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "weft-full-"));
  const m = await labRunner.run("mount", ["-t", "tmpfs", "-o", "size=1m,mode=0755", "weft-fault-tmpfs", dir], { reject: false });
  if (m.exitCode !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`mount tmpfs on ${dir}: ${m.stderr}`);
  }
  return {
    dir,
    fill: async () => {
      // dd stops at ENOSPC (exit 1): the filesystem is then full to the last block.
      await labRunner.run("dd", ["if=/dev/zero", `of=${join(dir, "filler")}`, "bs=4096"], { reject: false });
      const df = await labRunner.run("df", ["--output=avail", "-B1", dir]);
      expect(Number(df.stdout.trim().split("\n").pop())).toBe(0);
    },
    close: async () => {
      await labRunner.run("umount", [dir], { reject: false });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describeReal(
  "weftd faults (vxlan, 1 node, real etcd)",
  () => {
    let c: WeftCluster;
    let n: WeftNode;
    beforeAll(async () => {
      c = await WeftCluster.start({ nodes: 1, weftd, backend: { Type: "vxlan" }, subnetLen: 29, resyncInterval: 10, pods: false, name: "wf" });
      n = c.nodes[0]!;
    }, 120_000);
    afterAll(async () => {
      await c?.destroy();
    });

    it("with the subnet-file dir full: one clear error line, the previous subnet.env intact byte for byte, no truncated or temporary file", async () => {
      const fs = await smallTmpfs();
      try {
        const runDir = join(fs.dir, "run");
        const subnetFile = join(runDir, "subnet.env");
        const args = ["--subnet-file", subnetFile, "--state-dir", join(fs.dir, "state")];
        await c.stopAgent(n);
        await c.startAgent(n, args);
        await c.waitReady(n);
        expect((await c.stopAgent(n)).code).toBe(0);
        // A previous file that differs from what the agent would write now, so any write would show.
        const previous = readFileSync(subnetFile, "utf8").replace(/^FLANNEL_MTU=\d+$/m, "FLANNEL_MTU=1400");
        writeFileSync(subnetFile, previous);
        const before = readdirSync(runDir).sort();
        await fs.fill();
        const logFrom = c.log(n).length;
        await c.startAgent(n, args);
        const exit = await exitWithin(n, 30_000);
        const log = c.log(n).slice(logFrom);
        expect(exit, `weftd still runs 30 s after start with its subnet-file dir full; log:\n${log.slice(-2000)}`).toBeDefined();
        expect(exit!.code).not.toBe(0);
        // One clear line: the file and the cause.
        const lines = log.split("\n").filter((l) => /ENOSPC|no space left/i.test(l));
        expect.soft(lines.length, log.slice(-2000)).toBeGreaterThanOrEqual(1);
        expect.soft(lines.some((l) => l.includes(runDir)), `no error line names ${runDir}:\n${lines.join("\n")}`).toBe(true);
        expect.soft(readFileSync(subnetFile, "utf8")).toBe(previous);
        expect.soft(readdirSync(runDir).sort()).toEqual(before);
      } finally {
        await c.stopAgent(n, "SIGKILL");
        await fs.close();
        await c.startAgent(n);
        await c.waitReady(n);
      }
    }, 120_000);

    it("with the state dir full: one clear error line naming the state dir, non-zero exit, no temporary file left behind", async () => {
      const fs = await smallTmpfs();
      try {
        const stateDir = join(fs.dir, "state");
        await c.stopAgent(n);
        // A fresh state dir on a full filesystem, and a sysctl the agent must change (and record there) again.
        await labRunner.run("mkdir", ["-p", stateDir]);
        await n.lab.netns.run("sysctl", ["-qw", "net.ipv4.ip_forward=0"]);
        await fs.fill();
        const logFrom = c.log(n).length;
        await c.startAgent(n, ["--subnet-file", join(c.dir, "n1-full-subnet.env"), "--state-dir", stateDir]);
        const exit = await exitWithin(n, 30_000);
        const log = c.log(n).slice(logFrom);
        expect(exit, `weftd still runs 30 s after start with its state dir full; log:\n${log.slice(-2000)}`).toBeDefined();
        expect(exit!.code).not.toBe(0);
        const lines = log.split("\n").filter((l) => /ENOSPC|no space left/i.test(l));
        expect.soft(lines.length, log.slice(-2000)).toBeGreaterThanOrEqual(1);
        expect.soft(lines.some((l) => l.includes(stateDir)), `no error line names ${stateDir}:\n${lines.join("\n")}`).toBe(true);
        expect.soft(readdirSync(stateDir)).toEqual([]);
      } finally {
        await c.stopAgent(n, "SIGKILL");
        await fs.close();
        await n.lab.netns.run("sysctl", ["-qw", "net.ipv4.ip_forward=1"], { reject: false });
        await c.startAgent(n);
        await c.waitReady(n);
      }
    }, 120_000);

    it(`after kill -9 in the middle of flushing ${PEERS} peers, the next agent converges to exactly their objects, nothing duplicated or leaked`, async () => {
      const own = c.subnetEnv(n).subnet!.network.toString();
      const ownLeaseBefore = Object.entries(await c.leases()).filter(([, v]) => !v.includes("0e:57:01:"));
      expect(ownLeaseBefore).toHaveLength(1);
      // 5,000 well-formed peers, none on the agent's own subnet.
      const peers: FakePeer[] = [];
      for (let i = 0; peers.length < PEERS; i++) {
        const p = fakePeer(i);
        if (p.subnet !== own) peers.push(p);
      }
      await c.stopAgent(n);
      await putFakePeers(c.etcd.endpoint, c.prefix, peers);
      // Start, and SIGKILL once some but not all of the peers' objects exist (up to three tries: the flush can
      // be quicker than one look; each retry starts from a kernel without the peers' objects).
      let killedAt: { routes: number; neighbours: number; fdb: number } | undefined;
      for (let attempt = 0; attempt < 3 && !killedAt; attempt++) {
        await c.startAgent(n);
        for (;;) {
          const o = await vxlanObjects(n.lab.netns);
          const total = o.routes.length + o.neighbours.length + o.fdb.length;
          if (total > 0 && total < 3 * PEERS) {
            await c.stopAgent(n, "SIGKILL");
            killedAt = { routes: o.routes.length, neighbours: o.neighbours.length, fdb: o.fdb.length };
            break;
          }
          if (total >= 3 * PEERS || !n.proc) {
            await c.stopAgent(n, "SIGKILL");
            await n.lab.netns.ip(["link", "del", "weft.1"], { reject: false });
            break;
          }
        }
      }
      expect(killedAt, "never caught the agent mid-flush in three tries").toBeDefined();
      const partial = await vxlanObjects(n.lab.netns);
      expect(partial.routes.length + partial.neighbours.length + partial.fdb.length).toBeLessThan(3 * PEERS);

      const restarted = Date.now();
      await c.startAgent(n);
      await c.waitReady(n, 60_000);
      const readyMs = Date.now() - restarted;
      const o = await vxlanObjects(n.lab.netns);
      const want = (f: (p: FakePeer) => string) => peers.map(f).sort();
      expect(o.routes.length).toBe(PEERS);
      expect([...o.routes].sort()).toEqual(want((p) => p.subnet));
      expect(o.neighbours.length).toBe(PEERS);
      expect([...o.neighbours].sort()).toEqual(want((p) => `${p.subnet.split("/")[0]} ${p.vtepMac}`));
      expect(o.fdb.length).toBe(PEERS);
      expect([...o.fdb].sort()).toEqual(want((p) => `${p.vtepMac} ${p.publicIP}`));
      // Its own lease is the same one, and it holds exactly one.
      expect(c.subnetEnv(n).subnet!.network.toString()).toBe(own);
      const ownLeaseAfter = Object.entries(await c.leases()).filter(([, v]) => !v.includes("0e:57:01:"));
      expect(ownLeaseAfter.map(([k]) => k)).toEqual(ownLeaseBefore.map(([k]) => k));
      expect(Object.keys(await c.leases())).toHaveLength(PEERS + 1);
      const metrics = (await c.health(n, "/metrics")).body;
      expect(metrics).toContain(`weft_peers{state="programmed"} ${PEERS}`);
      console.log(`kill -9 mid-flush at ${JSON.stringify(killedAt)}; the next agent was ready (all ${PEERS} peers programmed) ${readyMs} ms after its start`);
    }, 300_000);
  },
  { tools: ["etcd", "bridge", "mount"] },
);
