/**
 * The wireguard backend on a real cluster: 3 nodes, real etcd, real wireguard-go and wg, a pod per node; the
 * full ping matrix, don't-fragment pings at the advertised MTU, kill -9 of an agent while pinging (wireguard-go
 * runs detached and survives; the new agent adopts it through its UAPI socket), and `weftd --teardown` ending
 * wireguard-go by its PID and removing the device. wireguard-go is slow here (~0.2 Gbit/s): pings only.
 *
 * Several nodes on one machine share /var/run/wireguard (it is per mount namespace, not per network namespace),
 * so every weftd gets a private socket directory (WEFT_WIREGUARD_PRIVATE_SOCKET_DIR=1: a bind mount inside the
 * mount namespace `ip netns exec` gives it; docs/adr/0008-wireguard-go.md).
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { WeftCluster, type WeftNode, pidInFile, processAlive as alive, stopDaemons } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "main.js");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The wireguard-go PID the node's agent recorded. */
const wgPid = (n: WeftNode): number | undefined => pidInFile(join(n.stateDir, "weft-wg.pid"));
const link = async (n: WeftNode, name: string) => JSON.parse((await n.lab.netns.ip(["-j", "link", "show", name], { reject: false })).stdout || "[]")[0] as { ifindex: number; mtu: number } | undefined;

describeReal(
  "backend wireguard (wireguard-go): 3 nodes, real etcd, pods, full ping matrix",
  () => {
    let c: WeftCluster;
    const started = new Set<number>();
    beforeAll(async () => {
      c = await WeftCluster.start({
        nodes: 3,
        weftd,
        backend: { Type: "wireguard", PersistentKeepaliveInterval: 5 },
        resyncInterval: 2,
        name: "wg",
        env: { WEFT_WIREGUARD_PRIVATE_SOCKET_DIR: "1" },
      });
      for (const n of c.nodes) if (wgPid(n)) started.add(wgPid(n)!);
    }, 120_000);
    afterAll(async () => {
      // wireguard-go outlives its agent by design: end every one this test's agents started, by PID.
      for (const n of c?.nodes ?? []) {
        const p = wgPid(n);
        if (p) started.add(p);
      }
      await c?.destroy();
      await stopDaemons(started, "wireguard-go");
    });

    it("advertises MTU − 80, each node runs its own weft-wg, and every pod reaches every pod", async () => {
      for (const n of c.nodes) {
        expect(c.subnetEnv(n).mtu).toBe(1420);
        expect((await link(n, "weft-wg"))?.mtu).toBe(1420);
        expect(alive(wgPid(n)!)).toBe(true);
      }
      expect(new Set(c.nodes.map(wgPid)).size).toBe(3);
      expect(await c.pingMatrix()).toEqual([]);
      expect(await c.pingMatrix({ size: 1420 - 28, dontFragment: true })).toEqual([]);
      expect(await c.pingMatrix({ size: 1420 - 28 + 1, dontFragment: true })).toHaveLength(6);
      // (`wg show` from here would read this machine's /var/run/wireguard, not a node's private one.)
      const status = JSON.parse((await c.health(c.nodes[0]!, "/status")).body);
      expect(status.peers.map((p: { state: string }) => p.state)).toEqual(["programmed", "programmed"]);
    });

    it("keeps pod traffic flowing through kill -9 of an agent; the new agent adopts the same wireguard-go", async () => {
      const [n1, n2] = c.nodes as [WeftNode, WeftNode];
      const pid = wgPid(n2)!;
      const before = await link(n2, "weft-wg");
      const r = await c.pingThroughAgentKill(n1, n2, () => expect(alive(pid)).toBe(true));
      expect(r.stdout).toMatch(/100 packets transmitted, 100 received/);
      expect(wgPid(n2)).toBe(pid);
      expect((await link(n2, "weft-wg"))?.ifindex).toBe(before?.ifindex);
      // SIGTERM (close "restart") leaves it up too.
      expect((await c.stopAgent(n2, "SIGTERM")).code).toBe(0);
      expect(alive(pid)).toBe(true);
      expect(await c.lab.ping(n1.pod!.netns, n2.pod!.ip, { count: 2 })).toBe(true);
      await c.startAgent(n2);
      await c.waitReady(n2);
      expect(wgPid(n2)).toBe(pid);
      expect(await c.pingMatrix()).toEqual([]);
    });

    it("restarts a wireguard-go that died, and traffic comes back within a few resync intervals", async () => {
      const [n1, , n3] = c.nodes as [WeftNode, WeftNode, WeftNode];
      const pid = wgPid(n3)!;
      process.kill(pid, "SIGKILL");
      const deadline = Date.now() + 20_000;
      let ok = false;
      while (!ok && Date.now() < deadline) {
        await sleep(500);
        ok = wgPid(n3) !== pid && (await c.lab.ping(n1.pod!.netns, n3.pod!.ip, { count: 1, timeoutS: 1 }));
      }
      expect(ok, c.log(n3).slice(-2000)).toBe(true);
      started.add(wgPid(n3)!);
    });

    it("weftd --teardown ends wireguard-go by its PID and removes the device", async () => {
      const n = c.nodes[2]!;
      const pid = wgPid(n)!;
      await c.stopAgent(n);
      expect(alive(pid)).toBe(true);
      const r = await n.lab.netns.run(process.execPath, [weftd, "--teardown", "--subnet-file", n.subnetFile, "--state-dir", n.stateDir], { reject: false });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(alive(pid)).toBe(false);
      expect(await link(n, "weft-wg")).toBeUndefined();
      expect(existsSync(join(n.stateDir, "weft-wg.pid"))).toBe(false);
      expect(JSON.parse((await n.lab.netns.ip(["-j", "route", "show", "proto", "87"])).stdout)).toEqual([]);
    });
  },
  { tools: ["etcd", "curl", "ping", "wireguard-go", "wg"] },
);
