/**
 * The built-in backends on real clusters: 3 nodes, real etcd, a pod on each node, the full ping matrix in both
 * directions, and the advertised MTU checked with don't-fragment pings (a wrong MTU fails the large ping).
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { WeftCluster } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "main.js");

const scenarios: { name: string; backend: Record<string, unknown>; ipv6?: boolean; v6only?: boolean; mtu: number }[] = [
  { name: "host-gw, IPv4", backend: { Type: "host-gw" }, mtu: 1500 },
  { name: "host-gw, dual-stack", backend: { Type: "host-gw" }, ipv6: true, mtu: 1500 },
  // Dual-stack vxlan carries IPv6 pods over the IPv6 underlay (70 bytes of overhead): one pod MTU fits both.
  { name: "vxlan, dual-stack", backend: { Type: "vxlan" }, ipv6: true, mtu: 1430 },
  { name: "vxlan, IPv6 only", backend: { Type: "vxlan", VNI: 7 }, ipv6: true, v6only: true, mtu: 1430 },
];

for (const sc of scenarios) {
  describeReal(
    `backend ${sc.name}: 3 nodes, real etcd, pods, full ping matrix`,
    () => {
      let c: WeftCluster;
      beforeAll(async () => {
        c = await WeftCluster.start({
          nodes: 3,
          weftd,
          backend: sc.backend,
          ...(sc.ipv6 ? { ipv6Network: "2001:2:0:f000::/52" } : {}),
          ...(sc.v6only ? { enableIPv4: false } : {}),
          name: "wk",
        });
      }, 120_000);
      afterAll(async () => {
        await c?.destroy();
      });

      it("advertises the backend's MTU and reaches every pod from every pod", async () => {
        for (const n of c.nodes) {
          const env = c.subnetEnv(n);
          expect(env.mtu).toBe(sc.mtu);
          // Each family the scenario is about really is there (the ping matrix below is strict about it too).
          expect(env.ipv6Subnet !== undefined, "FLANNEL_IPV6_SUBNET").toBe(sc.ipv6 === true);
          expect(env.subnet !== undefined, "FLANNEL_SUBNET").toBe(!sc.v6only);
        }
        const families = sc.v6only ? (["v6"] as const) : sc.ipv6 ? (["v4", "v6"] as const) : (["v4"] as const);
        for (const family of families) {
          expect(await c.pingMatrix({ family }), family).toEqual([]);
          // An IPv4 header is 20 + 8 bytes of ICMP; IPv6 is 40 + 8.
          const header = family === "v4" ? 28 : 48;
          expect(await c.pingMatrix({ family, size: sc.mtu - header, dontFragment: true }), `${family} at MTU`).toEqual([]);
        }
      });
    },
    { tools: ["etcd", "curl", "ping"] },
  );
}
