/**
 * The ipsec backend on a real cluster: 3 nodes, real etcd, real charon with kernel-libipsec (this kernel lacks
 * ESP), a pod per node. Full ping matrix, DF pings at the advertised MTU, nothing but UDP 4500 on the underlay
 * during pod traffic, kill -9 of an agent under 20 pps without loss (the new agent adopts charon), kill -9 of
 * charon (restarted; the loss is reported), a removed lease unloading its connection on the others, and
 * `weftd --teardown` stopping charon by PID and leaving nothing behind.
 *
 * charon's PID file is hard-coded to /var/run/charon.pid, shared by every node on this machine: each weftd gets a
 * private one (WEFT_IPSEC_PRIVATE_PIDFILE=1: a bind mount inside the mount namespace `ip netns exec` gives it).
 */
import { existsSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ExecaRunner, ViciIpsec, charonFiles } from "@weft/kernel";
import { WeftCluster, type WeftNode, etcdHttp, pidInFile, processAlive as alive, stopDaemons } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";
import { TEST_PSK } from "./fake-charon.spec-helper.js";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "packages", "daemon", "dist", "main.js");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const vici = new ViciIpsec(new ExecaRunner());

const runDir = (n: WeftNode) => join(n.stateDir, "ipsec");
const socket = (n: WeftNode) => charonFiles(runDir(n)).socket;
const charonPid = (n: WeftNode): number | undefined => pidInFile(join(runDir(n), "charon.pid"));
const link = async (n: WeftNode, name: string) => JSON.parse((await n.lab.netns.ip(["-j", "link", "show", name], { reject: false })).stdout || "[]")[0] as { mtu: number } | undefined;

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (await check()) return Date.now() - start;
    await sleep(250);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

describeReal(
  "backend ipsec (charon + kernel-libipsec): 3 nodes, real etcd, pods",
  () => {
    let c: WeftCluster;
    const started = new Set<number>();
    // The private PID files are bind-mounted over /var/run/charon.pid, which must exist: note whether it did.
    const hostPidFile = existsSync("/var/run/charon.pid");
    const remember = () => {
      for (const n of c?.nodes ?? []) if (charonPid(n)) started.add(charonPid(n)!);
    };
    beforeAll(async () => {
      c = await WeftCluster.start({
        nodes: 3,
        weftd,
        backend: { Type: "ipsec", PSK: TEST_PSK },
        resyncInterval: 2,
        name: "ips",
        env: { WEFT_IPSEC_PRIVATE_PIDFILE: "1" },
      });
      remember();
    }, 120_000);
    afterAll(async () => {
      // charon outlives its agent by design: end every one this test's agents started, by PID.
      remember();
      await c?.destroy();
      await stopDaemons(started, "charon");
      if (!hostPidFile && existsSync("/var/run/charon.pid") && statSync("/var/run/charon.pid").size === 0) rmSync("/var/run/charon.pid");
    });

    it("libipsec: each node its own charon and ipsec0, pod MTU 1400, every pod reaches every pod, DF at the MTU", async () => {
      for (const n of c.nodes) {
        expect(c.subnetEnv(n).mtu).toBe(1400);
        expect((await link(n, "ipsec0"))?.mtu).toBe(1400);
        expect(alive(charonPid(n)!)).toBe(true);
      }
      expect(new Set(c.nodes.map(charonPid)).size).toBe(3);
      await eventually("full ping matrix", async () => (await c.pingMatrix()).length === 0);
      expect(await c.pingMatrix({ size: 1400 - 28, dontFragment: true })).toEqual([]);
      // One connection per pair, initiated by the lower address: each node has 2, and 3 IKE_SAs exist in all.
      let initiated = 0;
      for (const n of c.nodes) {
        const conns = (await vici.listConnections(socket(n))).filter((x) => x.name.startsWith("weft-"));
        expect(conns).toHaveLength(2);
        const sas = await vici.listSas(socket(n));
        expect(sas.every((s) => s.state === "ESTABLISHED" && s.children.length === 1 && s.children[0]!.encap)).toBe(true);
        initiated += sas.filter((s) => s.initiator).length;
      }
      expect(initiated).toBe(3);
      const status = JSON.parse((await c.health(c.nodes[0]!, "/status")).body);
      expect(status.peers.map((p: { state: string }) => p.state)).toEqual(["programmed", "programmed"]);
      // The datapath and what decided it, with charon's live counts, in /status and /metrics (never the PSK).
      expect(status.backend).toEqual({
        datapath: "libipsec",
        reason: expect.stringMatching(/^auto: kernel lacks ESP/),
        gauges: { connections_desired: 2, connections_loaded: 2, sas_up: 2 },
      });
      const metrics = (await c.health(c.nodes[0]!, "/metrics")).body;
      expect(metrics).toContain('weft_backend_info{type="ipsec",datapath="libipsec"} 1\n');
      expect(metrics).toContain('weft_backend_sas_up{type="ipsec"} 2\n');
      expect(metrics).toContain('weft_backend_connections_loaded{type="ipsec"} 2\n');
      expect(JSON.stringify(status) + metrics).not.toContain(TEST_PSK);
    });

    it("the underlay carries pod traffic only as UDP 4500: no clear packet between pod addresses", async () => {
      const [n1, n2] = c.nodes as [WeftNode, WeftNode];
      const ns = n1.lab.netns;
      const table = "weftipscap";
      await ns.run("nft", ["add", "table", "ip", table]);
      try {
        await ns.run("nft", ["add", "chain", "ip", table, "out", "{ type filter hook postrouting priority 0 ; }"]);
        await ns.run("nft", ["add", "rule", "ip", table, "out", "oifname", "eth0", "ip", "saddr", "198.19.0.0/16", "counter"]);
        await ns.run("nft", ["add", "rule", "ip", table, "out", "oifname", "eth0", "udp", "dport", "4500", "counter"]);
        await ns.run("nft", ["add", "rule", "ip", table, "out", "oifname", "eth0", "ip", "protocol", "icmp", "counter"]);
        expect(await c.lab.ping(n1.pod!.netns, n2.pod!.ip, { count: 20 })).toBe(true);
        const rules = (await ns.run("nft", ["-j", "list", "chain", "ip", table, "out"])).stdout;
        const counters = (JSON.parse(rules).nftables as { rule?: { expr: { counter?: { packets: number } }[] } }[])
          .filter((x) => x.rule)
          .map((x) => x.rule!.expr.find((e) => e.counter)!.counter!.packets);
        const [clearPod, udp4500, icmp] = counters as [number, number, number];
        expect(clearPod).toBe(0);
        expect(icmp).toBe(0);
        expect(udp4500).toBeGreaterThanOrEqual(20);
      } finally {
        await ns.run("nft", ["delete", "table", "ip", table], { reject: false });
      }
    });

    it("kill -9 of an agent during 20 pps pod ping loses nothing; the new agent adopts the same charon", async () => {
      const [n1, n2] = c.nodes as [WeftNode, WeftNode];
      const pid = charonPid(n2)!;
      const r = await c.pingThroughAgentKill(n1, n2, () => expect(alive(pid)).toBe(true));
      expect(r.stdout).toMatch(/100 packets transmitted, 100 received/);
      expect(charonPid(n2)).toBe(pid);
      expect(await c.pingMatrix()).toEqual([]);
    });

    it("kill -9 of charon: restarted with its key and connections, traffic back within a few resync intervals", async () => {
      const [n1, n2] = c.nodes as [WeftNode, WeftNode];
      const pid = charonPid(n1)!;
      // 20 pps from the pod of the node whose charon dies, to count what is lost.
      const ping = n1.pod!.netns.run("ping", ["-n", "-q", "-c", "600", "-i", "0.05", "-W", "1", n2.pod!.ip], { reject: false });
      await sleep(1000);
      process.kill(pid, "SIGKILL");
      const recovered = await eventually(
        "charon restarted and pods reachable again",
        async () => charonPid(n1) !== pid && alive(charonPid(n1) ?? 0) && (await c.lab.ping(n1.pod!.netns, n2.pod!.ip, { count: 1, timeoutS: 1 })),
        30_000,
      );
      started.add(charonPid(n1)!);
      const r = await ping;
      const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
      console.log(`ipsec: kill -9 of charon: recovered in ~${recovered} ms; ${m ? Number(m[1]) - Number(m[2]) : "?"} of ${m?.[1] ?? "?"} packets lost at 20 pps`);
      expect(await c.pingMatrix()).toEqual([]);
    });

    it("a peer's lease removed: its connection is unloaded on the other nodes", async () => {
      const [n1, n2, n3] = c.nodes as [WeftNode, WeftNode, WeftNode];
      await c.stopAgent(n3);
      const key = Object.entries(await c.leases()).find(([, v]) => v.includes(`"${n3.lab.underlayIp}"`))?.[0];
      expect(key, "node 3's lease in etcd").toBeDefined();
      const r = await etcdHttp(c.etcd.endpoint, "/v3/kv/deleterange", { key: Buffer.from(`${c.prefix}/subnets/${key}`).toString("base64") });
      expect(r.status).toBe(200);
      for (const n of [n1, n2]) {
        await eventually(`node ${n.lab.index} unloads the connection to node 3`, async () =>
          (await vici.listConnections(socket(n))).every((x) => x.remoteAddr !== n3.lab.underlayIp),
        );
      }
      expect(await c.lab.ping(n1.pod!.netns, n2.pod!.ip, { count: 2 })).toBe(true);
    });

    it("weftd --teardown stops charon by its PID and leaves nothing behind", async () => {
      const n = c.nodes[2]!;
      const pid = charonPid(n)!;
      expect(alive(pid)).toBe(true);
      const r = await n.lab.netns.run(process.execPath, [weftd, "--teardown", "--subnet-file", n.subnetFile, "--state-dir", n.stateDir], { reject: false });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(alive(pid)).toBe(false);
      expect(await link(n, "ipsec0")).toBeUndefined();
      expect(existsSync(join(runDir(n), "charon.pid"))).toBe(false);
      expect(JSON.parse((await n.lab.netns.ip(["-j", "route", "show", "proto", "87"])).stdout)).toEqual([]);
      expect((await n.lab.netns.ip(["xfrm", "state"])).stdout.trim()).toBe("");
    });
  },
  { tools: ["etcd", "curl", "ping", "nft"] },
);
