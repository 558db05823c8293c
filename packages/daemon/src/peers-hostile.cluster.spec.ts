/**
 * weftd against hostile keys in a real etcd (issue 15: #3, #7, the hostile PublicIPs): a lease whose
 * BackendData nests 5,000 levels, a key with PublicIP 127.0.0.1, a 198.19.0.0-16 key and a lease-less key
 * carrying node 1's own PublicIP are written, then node 1's agent restarts. It must come back ready, keep the
 * subnet of its subnet.env and live lease, program its real peer and none of the hostile ones, and route
 * nothing to itself. Real namespaces, real devices, real etcd.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { WeftCluster, etcdPut } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "main.js");

describeReal(
  "weftd and hostile peer leases (vxlan, 2 nodes, real etcd)",
  () => {
    let c: WeftCluster;
    beforeAll(async () => {
      c = await WeftCluster.start({ nodes: 2, weftd, backend: { Type: "vxlan" }, resyncInterval: 1 });
    }, 120_000);
    afterAll(async () => {
      await c?.destroy();
    });

    it("restarts ready past them, keeps its subnet, programs its peer and routes nothing to itself", async () => {
      const [n1, n2] = c.nodes as [(typeof c.nodes)[0], (typeof c.nodes)[0]];
      const subnet1 = c.subnetEnv(n1).subnet!.network;
      const subnet2 = c.subnetEnv(n2).subnet!.network;
      const ip1 = n1.lab.underlayIp;
      const put = (key: string, value: string) => etcdPut(c.etcd.endpoint, `${c.prefix}/subnets/${key}`, value);
      const vtep = (mac: string) => ({ VNI: 1, VtepMAC: mac });
      await put("198.19.200.0-24", `{"PublicIP":"198.18.0.200","BackendType":"vxlan","BackendData":${"[".repeat(5_000)}1${"]".repeat(5_000)}}`);
      await put("198.19.201.0-24", JSON.stringify({ PublicIP: "127.0.0.1", BackendType: "vxlan", BackendData: vtep("0e:57:00:00:02:01") }));
      await put("198.19.0.0-16", JSON.stringify({ PublicIP: "198.18.0.202", BackendType: "vxlan", BackendData: vtep("0e:57:00:00:02:02") }));
      await put("198.19.77.0-24", JSON.stringify({ PublicIP: ip1, BackendType: "vxlan", BackendData: vtep("0e:57:00:00:02:03") }));
      await c.stopAgent(n1);
      await c.startAgent(n1);
      await c.waitReady(n1, 30_000);
      // #7: the same subnet as before, from its subnet.env and live lease, not the planted key's.
      expect(c.subnetEnv(n1).subnet!.network.toString()).toBe(subnet1.toString());
      const routes = JSON.parse((await n1.lab.netns.ip(["-j", "route", "show", "proto", "87"])).stdout || "[]") as { dst: string; gateway?: string }[];
      expect(routes.map((r) => r.dst).sort()).toEqual([subnet2.toString()]);
      const status = JSON.parse((await c.health(n1, "/status")).body) as { peers: { peer: string; state: string }[] };
      const state = Object.fromEntries(status.peers.map((p) => [p.peer, p.state]));
      expect(state).toMatchObject({ "198.19.201.0-24": "skipped", "198.19.77.0-24": "skipped" });
      expect(Object.values(state).filter((s) => s === "programmed")).toHaveLength(1);
      const metrics = (await c.health(n1, "/metrics")).body;
      expect(metrics).toContain('weft_peer_skips_total{reason="address"} 1');
      expect(metrics).toContain('weft_peer_skips_total{reason="own-address"} 1');
      expect(await c.pingMatrix()).toEqual([]);
      // Node 2 is unaffected: ready, its peer programmed.
      expect((await c.health(n2, "/readyz")).ok).toBe(true);
    }, 90_000);
  },
  { tools: ["etcd", "curl", "ping"] },
);
