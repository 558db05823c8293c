/**
 * Traffic rules and the blackhole route through weftd itself (not just the rule builders): --ip-masq in iptables
 * mode, repaired after a hand edit, kept over SIGTERM, then switched to nftables by the network config with the
 * iptables chains (nat and filter) cleaned up; --ip-blackhole-route beside the bridge's own route.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { WeftCluster, etcdPut, type WeftNode } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "main.js");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeReal(
  "weftd traffic rules and blackhole route on a real cluster",
  () => {
    let c: WeftCluster;
    beforeAll(async () => {
      c = await WeftCluster.start({ nodes: 2, weftd, backend: { Type: "vxlan" }, flags: ["--ip-masq", "--ip-blackhole-route"], resyncInterval: 1, name: "wr" });
    }, 120_000);
    afterAll(async () => {
      await c?.destroy();
    });
    const nat = async (n: WeftNode) => (await n.lab.netns.run("iptables-save", ["-t", "nat"])).stdout;
    const filter = async (n: WeftNode) => (await n.lab.netns.run("iptables-save", ["-t", "filter"])).stdout;

    it("installs Flannel's masquerade and forward rules in Weft's chains, and repairs a rule deleted by hand", async () => {
      const n = c.nodes[0]!;
      const sn = c.subnetEnv(n).subnet!.network.toString();
      const rules = (await nat(n)).split("\n").filter((l) => l.startsWith("-A WEFT-POSTRTG"));
      expect(rules).toHaveLength(6);
      expect(rules.join("\n")).toContain(`-A WEFT-POSTRTG -s ${sn} -d 198.19.0.0/16 -m comment --comment "weft masq" -j RETURN`);
      expect(await nat(n)).toContain("-A POSTROUTING -m comment --comment \"weft masq\" -j WEFT-POSTRTG");
      expect(await filter(n)).toContain("-A WEFT-FWD -s 198.19.0.0/16 -m comment --comment \"weft forward\" -j ACCEPT");
      await n.lab.netns.run("iptables", ["-t", "nat", "-D", "WEFT-POSTRTG", "1"]);
      expect((await nat(n)).split("\n").filter((l) => l.startsWith("-A WEFT-POSTRTG"))).toHaveLength(5);
      const deadline = Date.now() + 8000;
      while ((await nat(n)).split("\n").filter((l) => l.startsWith("-A WEFT-POSTRTG")).length !== 6 && Date.now() < deadline) await sleep(100);
      expect((await nat(n)).split("\n").filter((l) => l.startsWith("-A WEFT-POSTRTG"))).toHaveLength(6);
      expect((await c.health(n, "/metrics")).body).toMatch(/weft_traffic_rule_repairs_total [1-9]/);
    });

    it("adds a blackhole route for the node's subnet below the bridge's route; pods still talk", async () => {
      const n = c.nodes[0]!;
      const sn = c.subnetEnv(n).subnet!.network.toString();
      const bh = JSON.parse((await n.lab.netns.ip(["-j", "route", "show", "type", "blackhole"])).stdout) as { dst: string; protocol: string; metric?: number }[];
      expect(bh).toEqual([expect.objectContaining({ dst: sn, metric: 65535 })]);
      expect(await c.pingMatrix()).toEqual([]);
    });

    it("keeps the rules over SIGTERM, and a restart into nftables mode removes the iptables chains", async () => {
      const n = c.nodes[0]!;
      await c.stopAgent(n);
      expect(await nat(n)).toContain("WEFT-POSTRTG");
      await etcdPut(c.etcd.endpoint, `${c.prefix}/config`, JSON.stringify({ ...c.netConf(), EnableNFTables: true }));
      await c.startAgent(n);
      await c.waitReady(n);
      expect(await nat(n)).not.toContain("WEFT");
      expect(await filter(n)).not.toContain("WEFT");
      const ruleset = (await n.lab.netns.run("nft", ["list", "ruleset"])).stdout;
      expect(ruleset).toContain("table ip weft-ipv4");
      expect(ruleset).toContain("masquerade");
      expect(await c.pingMatrix()).toEqual([]);
    });
  },
  { tools: ["etcd", "curl", "ping", "iptables-save", "nft"] },
);
