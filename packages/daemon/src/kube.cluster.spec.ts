/**
 * weftd in kube mode as a DaemonSet runs it: --kube-subnet-mgr, a kubeconfig, NODE_NAME, net-conf.json from a
 * file; 3 node namespaces, the in-repo Kubernetes API server (ADR 0003) reached from each node through a local
 * forwarder, vxlan, real pods and traffic. The kube-mode counterpart of agent.cluster.spec.ts.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { WeftCluster, type WeftNode } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "main.js");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type KubeNode = { metadata: { annotations?: Record<string, string> }; status?: { conditions?: { type: string; status: string; reason?: string }[] } };

describeReal(
  "weftd in kube mode (vxlan, 3 nodes, the in-repo API server)",
  () => {
    let c: WeftCluster;
    beforeAll(async () => {
      c = await WeftCluster.start({ nodes: 3, weftd, backend: { Type: "vxlan" }, store: "kube", resyncInterval: 2, name: "wq" });
    }, 120_000);
    afterAll(async () => {
      await c?.destroy();
    });

    const node = (n: WeftNode) => c.api.getNode(n.nodeName) as unknown as KubeNode;

    it("takes each node's podCIDR, publishes Flannel's annotations, sets NetworkUnavailable=False, and every pod reaches every pod", async () => {
      for (const n of c.nodes) {
        const cidr = c.podCIDRs(n.lab.index)[0]!;
        expect(c.subnetEnv(n).subnet?.network.toString()).toBe(cidr);
        expect(readFileSync(n.subnetFile, "utf8")).toContain("FLANNEL_MTU=1450\n");
        const a = node(n).metadata.annotations ?? {};
        expect(a["weft.io/kube-subnet-manager"]).toBe("true");
        expect(a["weft.io/backend-type"]).toBe("vxlan");
        expect(a["weft.io/public-ip"]).toBe(n.lab.underlayIp);
        expect(JSON.parse(a["weft.io/backend-data"]!)).toMatchObject({ VNI: 1, VtepMAC: expect.stringMatching(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/) });
        const deadline = Date.now() + 5000;
        const cond = () => node(n).status?.conditions?.find((x) => x.type === "NetworkUnavailable");
        while (!cond() && Date.now() < deadline) await sleep(50);
        expect(cond()).toMatchObject({ status: "False", reason: "WeftIsUp" });
        const status = JSON.parse((await c.health(n, "/status")).body);
        expect(status.peers.map((p: { state: string }) => p.state)).toEqual(["programmed", "programmed"]);
        // Running counts are counters, and a healthy watch has not failed.
        const metrics = (await c.health(n, "/metrics")).body;
        expect(metrics).toContain("# TYPE weft_store_watch_reconnects_total counter\nweft_store_watch_reconnects_total 0\n");
        expect(metrics).toContain("# TYPE weft_malformed_peer_leases_total counter\nweft_malformed_peer_leases_total 0\n");
      }
      expect(await c.pingMatrix()).toEqual([]);
      expect(await c.pingMatrix({ size: 1450 - 28, dontFragment: true })).toEqual([]);
    });

    it("keeps pod traffic flowing through kill -9 and restart of an agent, with the same VTEP MAC published", async () => {
      const [n1, n2] = c.nodes as [WeftNode, WeftNode];
      const mac = JSON.parse(node(n2).metadata.annotations!["weft.io/backend-data"]!).VtepMAC;
      const ping = n1.pod!.netns.run("ping", ["-n", "-q", "-c", "100", "-i", "0.05", "-W", "1", n2.pod!.ip], { reject: false });
      await sleep(1000);
      await c.stopAgent(n2, "SIGKILL");
      await sleep(500);
      await c.startAgent(n2);
      await c.waitReady(n2);
      const r = await ping;
      expect(r.stdout).toMatch(/100 packets transmitted, 100 received/);
      expect(JSON.parse(node(n2).metadata.annotations!["weft.io/backend-data"]!).VtepMAC).toBe(mac);
      // Node 1 never dropped node 2's entries while node 2's agent re-acquired its lease.
      expect((await n1.lab.netns.ip(["neigh", "show", "dev", "weft.1"])).stdout).toContain(mac);
    });

    it("a node whose podCIDR lies outside Network: one error line naming both, exit 1, the node's kernel untouched", async () => {
      const n3 = c.nodes[2]!;
      await c.stopAgent(n3);
      const before = await kernelState(n3);
      c.api.addNode({ metadata: { name: "stray" }, spec: { podCIDR: "198.18.200.0/24" } });
      const r = await n3.lab.netns.run(
        process.execPath,
        [weftd, ...c.agentArgs(n3, ["--healthz-port", "0", "--subnet-file", join(n3.dir, "stray.env"), "--state-dir", join(n3.dir, "stray-state")])],
        { env: { NODE_NAME: "stray" }, reject: false, timeoutMs: 60_000 },
      );
      expect(r.exitCode, r.stderr).toBe(1);
      const errors = r.stderr.split("\n").filter((l) => l.includes('"level":"error"'));
      expect(errors, r.stderr).toHaveLength(1);
      expect(errors[0]).toContain("198.18.200.0/24");
      expect(errors[0]).toContain("198.19.0.0/16");
      expect(await kernelState(n3)).toEqual(before);
      await c.startAgent(n3);
      await c.waitReady(n3);
    });
  },
  { tools: ["curl", "ping"] },
);

/** What weftd could have changed on a node: links, addresses, routes (all tables), neighbours. */
async function kernelState(n: WeftNode): Promise<string> {
  const parts: string[] = [];
  for (const args of [["-br", "link"], ["-br", "addr"], ["route", "show", "table", "all"], ["-6", "route", "show", "table", "all"], ["neigh", "show", "nud", "permanent"]]) {
    parts.push((await n.lab.netns.ip(args)).stdout);
  }
  return parts.join("\n---\n");
}
