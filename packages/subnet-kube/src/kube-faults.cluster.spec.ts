/**
 * Faults of the Kubernetes API server and hostile Nodes, against real weftd processes in kube mode (issue 15):
 * 2 lab nodes, vxlan, pods, the in-repo API server (ADR 0003) with its fault hooks (answer 500s, answer
 * slowly, drop connections, 410 Gone storms, in the forms kube-apiserver sends them). Assertions are on final
 * state: the nodes' kernel routes, pings between pods, /readyz, /status, /metrics, the server's request log,
 * and that no agent exited. The figures each test logs (recovery times, LISTs during a storm, RSS) are the
 * ones docs/operations.md's "what Weft survives" table quotes.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FakeApiServer, JsonObject } from "@weft/kube-testing";
import { WeftCluster, type WeftNode } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "daemon", "dist", "main.js");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A Node as another (absent) agent would have published it: vxlan, podCIDR 198.19.<n>.0/24, public IP 198.18.0.<n>. */
function ghostNode(name: string, n: number, extra: Record<string, string> = {}): JsonObject {
  return {
    metadata: {
      name,
      annotations: {
        "weft.io/kube-subnet-manager": "true",
        "weft.io/backend-type": "vxlan",
        "weft.io/backend-data": JSON.stringify({ VNI: 1, VtepMAC: `0e:57:00:00:01:${n.toString(16).padStart(2, "0")}` }),
        "weft.io/public-ip": `198.18.0.${n}`,
        ...extra,
      },
    },
    spec: { podCIDR: `198.19.${n}.0/24` },
  };
}

async function routes(n: WeftNode): Promise<string> {
  return (await n.lab.netns.ip(["route", "show", "dev", "weft.1"])).stdout;
}

/** Waits until every node has (or lacks) a route to `cidr`; resolves to the time it took. */
async function converge(c: WeftCluster, cidr: string, present = true, timeoutMs = 60_000): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const all = await Promise.all(c.nodes.map(async (n) => (await routes(n)).includes(cidr) === present));
    if (all.every(Boolean)) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`route ${cidr} not ${present ? "programmed" : "removed"} on every node within ${timeoutMs} ms`);
    await sleep(100);
  }
}

function agentsAlive(c: WeftCluster): void {
  for (const n of c.nodes) expect(n.proc, `weftd on ${n.nodeName} exited:\n${c.log(n).slice(-2000)}`).toBeDefined();
}

const lists = (api: FakeApiServer, from: number) => api.requests.slice(from).filter((r) => r.method === "GET" && r.path === "/api/v1/nodes" && r.query.watch !== "true").length;

describeReal(
  "weftd in kube mode under API server faults and hostile Nodes (vxlan, 2 nodes)",
  () => {
    let c: WeftCluster;
    beforeAll(async () => {
      // A generous readiness bound: on a loaded 2-core machine an agent's ordinary start can pass 30 s.
      c = await WeftCluster.start({ nodes: 2, weftd, backend: { Type: "vxlan" }, store: "kube", resyncInterval: 2, name: "wkf", readyTimeoutMs: 120_000 });
    }, 300_000);
    afterAll(async () => {
      await c?.destroy();
    });

    it("API server answering 500 for 8 s: the datapath stays up, the agents stay, and pick up the changes made meanwhile", async () => {
      const [n1, n2] = c.nodes as [WeftNode, WeftNode];
      const ping = n1.pod!.netns.run("ping", ["-n", "-q", "-c", "100", "-i", "0.1", "-W", "1", n2.pod!.ip], { reject: false });
      await sleep(500);
      const down = c.api.fault({ code: 500, message: "etcdserver: leader changed" });
      c.api.closeWatches(); // a failing API server drops its watches too
      c.api.addNode(ghostNode("ghost-500", 50));
      await sleep(8000);
      expect(down.hits).toBeGreaterThan(0);
      down.clear();
      const recoveredMs = await converge(c, "198.19.50.0/24");
      console.log(`[figure] 500s for 8 s: change made during the outage programmed on every node ${recoveredMs} ms after the server answered again`);
      expect((await ping).stdout).toMatch(/100 packets transmitted, 100 received/);
      agentsAlive(c);
      for (const n of c.nodes) expect((await c.health(n, "/readyz")).ok).toBe(true);
    });

    it("slow answers (3 s each, for 10 s): one watch per stream, no duplicate peers, and it converges", async () => {
      const from = c.api.requests.length;
      let maxWatches = 0;
      const sampler = setInterval(() => (maxWatches = Math.max(maxWatches, c.api.watchCount)), 20);
      try {
        const slow = c.api.fault({ delayMs: 3000 });
        c.api.closeWatches();
        c.api.addNode(ghostNode("ghost-slow", 51));
        await sleep(10_000);
        slow.clear();
        const ms = await converge(c, "198.19.51.0/24");
        console.log(`[figure] slow API (3 s per answer for 10 s): converged ${ms} ms after answers were fast again; at most ${maxWatches} watches open`);
      } finally {
        clearInterval(sampler);
      }
      // Each agent holds two watches (all Nodes; its own Node): never more, however slow the server.
      expect(maxWatches).toBeLessThanOrEqual(2 * c.nodes.length);
      // No agent re-published its annotations because answers were slow.
      expect(c.api.requests.slice(from).filter((r) => r.method === "PATCH")).toHaveLength(0);
      for (const n of c.nodes) {
        const r = (await routes(n)).split("\n").filter((l) => l.startsWith("198.19.51.0/24"));
        expect(r, n.nodeName).toHaveLength(1);
        const status = JSON.parse((await c.health(n, "/status")).body) as { peers: { subnet?: string; node?: string; state: string }[] };
        expect(JSON.stringify(status.peers).match(/198\.19\.51\.0/g) ?? [], n.nodeName).toHaveLength(1);
      }
      agentsAlive(c);
    });

    it("a 410 storm for 10 s: re-lists at a bounded rate and converges", async () => {
      const from = c.api.requests.length;
      const storm = c.api.fault({ expire: true });
      c.api.expireWatches();
      c.api.addNode(ghostNode("ghost-410", 52));
      await sleep(10_000);
      const during = lists(c.api, from);
      storm.clear();
      const ms = await converge(c, "198.19.52.0/24");
      console.log(`[figure] 410 storm for 10 s: ${during} LISTs from ${c.nodes.length} agents (2 watches each); converged ${ms} ms after it ended`);
      // Back-off from 1 s doubling: about 4 re-lists per watch in 10 s. Unbounded, it was one per round trip (thousands).
      expect(during).toBeLessThanOrEqual(2 * c.nodes.length * 6);
      agentsAlive(c);
    });

    it("hostile Nodes: each skipped with a line and a metric, every valid peer programmed, memory bounded", async () => {
      const [n1] = c.nodes as [WeftNode];
      const rss = (n: WeftNode) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${n.proc!.pid}/status`, "utf8"))?.[1] ?? 0) * 1024;
      const rssBefore = rss(n1);
      // A 1 MB annotation never reaches an agent: the API server refuses more than 256 KiB of annotations per Node.
      expect(() => c.api.addNode(ghostNode("too-big", 60, { "weft.io/backend-data": "x".repeat(1024 * 1024) }))).toThrow(/256 ?KiB|too long|must have at most/i);
      const hostile: JsonObject[] = [
        ghostNode("h-large", 61, { "weft.io/backend-data": JSON.stringify({ VNI: 1, VtepMAC: "0e:57:00:00:01:3d", pad: "x".repeat(200 * 1024) }) }),
        ghostNode("h-deep", 62, { "weft.io/backend-data": "[".repeat(50_000) + "]".repeat(50_000) }),
        ghostNode("h-zero", 63, { "weft.io/public-ip": "0.0.0.0" }),
        ghostNode("h-loop", 64, { "weft.io/public-ip": "127.0.0.1" }),
        ghostNode("h-mcast", 65, { "weft.io/public-ip": "224.0.0.1" }),
        ghostNode("h-own", 66, { "weft.io/public-ip": n1.lab.underlayIp }),
      ];
      for (let i = 0; i < 100; i++) hostile.push(ghostNode(`h-garbage-${i}`, 100 + i, { "weft.io/backend-data": `\u001b]0;garbage ${i}\u0007{`, "weft.io/public-ip": `not an ip ${i}` }));
      for (const h of hostile) c.api.addNode(h);
      c.api.addNode(ghostNode("ghost-valid", 53));
      await converge(c, "198.19.53.0/24");
      await sleep(3000); // a resync or two
      for (const n of c.nodes) {
        const r = await routes(n);
        for (const h of hostile) {
          const name = (h.metadata as JsonObject).name as string;
          // A peer claiming n1's address is refused by n1 (it would route to itself); to the others it is a peer
          // that shares n1's VTEP address, which is theirs to program.
          if (name === "h-own" && n !== n1) continue;
          expect(r, `${n.nodeName}: route for hostile ${name}`).not.toContain(`${(h.spec as JsonObject).podCIDR as string} `);
        }
        const metrics = (await c.health(n, "/metrics")).body;
        const malformed = Number(/^weft_malformed_peer_leases_total (\d+)/m.exec(metrics)?.[1] ?? -1);
        expect(malformed, n.nodeName).toBeGreaterThanOrEqual(102); // h-large, h-deep, 100 garbage
        const skips = [...metrics.matchAll(/^weft_peer_skips_total\{[^}]*\} (\d+)/gm)].reduce((s, m) => s + Number(m[1]), 0);
        expect(skips, `${n.nodeName} weft_peer_skips_total`).toBeGreaterThanOrEqual(n === n1 ? 4 : 3); // 0.0.0.0, 127.0.0.1, 224.0.0.1 (+ n1's own address on n1)
        const log = c.log(n);
        expect(log).not.toContain("\u001b]0;garbage");
        for (const line of log.split("\n").filter((l) => l.includes("h-large") || l.includes("h-deep"))) expect(line.length).toBeLessThan(2000);
      }
      expect(await c.pingMatrix()).toEqual([]);
      const grown = rss(n1) - rssBefore;
      console.log(`[figure] 106 hostile Nodes (a 200 KiB and a 50,000-deep annotation, 100 garbage, 4 bad addresses): weftd RSS grew ${Math.round(grown / 1024 / 1024)} MiB`);
      expect(grown).toBeLessThan(64 * 1024 * 1024);
      agentsAlive(c);
    });

    it("API server unreachable at start: the agent waits past 30 s (no exit), asks again within 2 s of the server answering, and becomes ready", async () => {
      const n3 = c.nodes[1]!; // the last node
      await c.stopAgent(n3);
      // Only this node's requests are refused (its own Node comes first), so the other agents are unaffected.
      const down = c.api.fault({ path: `/api/v1/nodes/${n3.nodeName}`, drop: true });
      await c.startAgent(n3);
      await sleep(33_000);
      expect(n3.proc, `weftd exited while the API server was unreachable:\n${c.log(n3).slice(-2000)}`).toBeDefined();
      expect(down.hits).toBeGreaterThan(10);
      expect((await c.health(n3, "/readyz")).ok).toBe(false);
      const from = c.api.requests.length;
      down.clear();
      const t0 = Date.now();
      let readyMs = -1;
      let answeredMs = -1;
      while (Date.now() - t0 < 60_000) {
        if (answeredMs < 0 && c.api.requests.slice(from).some((r) => r.path === `/api/v1/nodes/${n3.nodeName}` && r.status === 200)) answeredMs = Date.now() - t0;
        if ((await c.health(n3, "/readyz")).ok) {
          readyMs = Date.now() - t0;
          break;
        }
        await sleep(50);
      }
      console.log(`[figure] API unreachable for 33 s at start: first request answered ${answeredMs} ms and ready ${readyMs} ms after the server answered again`);
      // The agent asks again within its 1 s back-off cap; before the fix it waited 3 s between tries, and gave up
      // (exit) after 30 s. The rest of startup (devices, rules, peers) is the agent's ordinary start, unbounded
      // here: on a loaded machine it takes longer than on an idle one (the unit tier checks the 2 s end to end).
      expect(answeredMs).toBeGreaterThanOrEqual(0);
      expect(answeredMs).toBeLessThan(2000);
      expect(readyMs).toBeGreaterThanOrEqual(0);
      expect(await c.pingMatrix()).toEqual([]);
    });
  },
  { tools: ["curl", "ping"] },
);
