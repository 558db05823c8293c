/**
 * Traffic rules against the real iptables and nft, each test in a fresh network namespace (the root
 * namespace's tables are never read or written: every command goes through `ip netns exec`).
 */
import { IPNet } from "@weft/core";
import { ExecaRunner, type ProcessRunner, linuxNetfilter } from "@weft/kernel";
import { type TestNetns, createNetns } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterEach, expect, it } from "vitest";
import { IptablesTrafficRules } from "./iptables.js";
import type { TrafficPlan } from "./model.js";
import { NftablesTrafficRules } from "./nftables.js";
import { cleanupOtherMode, createTrafficRules, trafficNetfilterOptions } from "./factory.js";
import type { TrafficMode } from "./model.js";
import { NetnsRunner, RecordingRunner } from "@weft/kernel-testing";

const v4 = { network: IPNet.parse("198.19.0.0/16"), subnet: IPNet.parse("198.19.1.0/24") };
const v6 = { network: IPNet.parse("2001:2::/48"), subnet: IPNet.parse("2001:2:0:1::/64") };
const plan = (over: Partial<TrafficPlan> = {}): TrafficPlan => ({ v4, masquerade: true, forward: true, fullyRandom: true, ...over });
/** The kernel's netfilter adapter of `mode` with Weft's names, over `runner` (the composition root's job in weftd). */
const nf = (runner: ProcessRunner) => (mode: TrafficMode) => linuxNetfilter(mode, runner, trafficNetfilterOptions());

// flannel.md §6.1.4 golden `iptables -t nat -S`, with Weft's names, in a namespace with nothing else.
const GOLDEN_NAT_S = `-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N WEFT-POSTRTG
-A POSTROUTING -m comment --comment "weft masq" -j WEFT-POSTRTG
-A WEFT-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "weft masq" -j RETURN
-A WEFT-POSTRTG -s 198.19.1.0/24 -d 198.19.0.0/16 -m comment --comment "weft masq" -j RETURN
-A WEFT-POSTRTG -s 198.19.0.0/16 -d 198.19.1.0/24 -m comment --comment "weft masq" -j RETURN
-A WEFT-POSTRTG ! -s 198.19.0.0/16 -d 198.19.1.0/24 -m comment --comment "weft masq" -j RETURN
-A WEFT-POSTRTG -s 198.19.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "weft masq" -j MASQUERADE --random-fully
-A WEFT-POSTRTG ! -s 198.19.0.0/16 -d 198.19.0.0/16 -m comment --comment "weft masq" -j MASQUERADE --random-fully
`;
const GOLDEN_FORWARD_S = `-P FORWARD ACCEPT
-A FORWARD -m comment --comment "weft forward" -j WEFT-FWD
`;
const GOLDEN_NAT6_S = `-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N WEFT-POSTRTG
-A POSTROUTING -m comment --comment "weft masq" -j WEFT-POSTRTG
-A WEFT-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "weft masq" -j RETURN
-A WEFT-POSTRTG -s 2001:2:0:1::/64 -d 2001:2::/48 -m comment --comment "weft masq" -j RETURN
-A WEFT-POSTRTG -s 2001:2::/48 -d 2001:2:0:1::/64 -m comment --comment "weft masq" -j RETURN
-A WEFT-POSTRTG ! -s 2001:2::/48 -d 2001:2:0:1::/64 -m comment --comment "weft masq" -j RETURN
-A WEFT-POSTRTG -s 2001:2::/48 ! -d ff00::/8 -m comment --comment "weft masq" -j MASQUERADE --random-fully
-A WEFT-POSTRTG ! -s 2001:2::/48 -d 2001:2::/48 -m comment --comment "weft masq" -j MASQUERADE --random-fully
`;
// `nft list table ip weft-ipv4` (a leading tab per level, as nft prints).
const GOLDEN_NFT_V4 = `table ip weft-ipv4 {
	chain postrtg {
		type nat hook postrouting priority srcnat; policy accept;
		meta mark & 0x00004000 == 0x00004000 return
		ip saddr 198.19.1.0/24 ip daddr 198.19.0.0/16 return
		ip saddr 198.19.0.0/16 ip daddr 198.19.1.0/24 return
		ip saddr != 198.19.0.0/16 ip daddr 198.19.1.0/24 return
		ip saddr 198.19.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random
		ip saddr != 198.19.0.0/16 ip daddr 198.19.0.0/16 masquerade fully-random
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		ip saddr 198.19.0.0/16 accept
		ip daddr 198.19.0.0/16 accept
	}
}
`;
const GOLDEN_NFT_V6 = `table ip6 weft-ipv6 {
	chain postrtg {
		type nat hook postrouting priority srcnat; policy accept;
		meta mark & 0x00004000 == 0x00004000 return
		ip6 saddr 2001:2:0:1::/64 ip6 daddr 2001:2::/48 return
		ip6 saddr 2001:2::/48 ip6 daddr 2001:2:0:1::/64 return
		ip6 saddr != 2001:2::/48 ip6 daddr 2001:2:0:1::/64 return
		ip6 saddr 2001:2::/48 ip6 daddr != ff00::/8 masquerade fully-random
		ip6 saddr != 2001:2::/48 ip6 daddr 2001:2::/48 masquerade fully-random
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		ip6 saddr 2001:2::/48 accept
		ip6 daddr 2001:2::/48 accept
	}
}
`;

describeReal(
  "traffic rules in a network namespace",
  () => {
    const made: TestNetns[] = [];
    afterEach(async () => {
      for (const ns of made.splice(0)) await ns.destroy();
    });
    async function setup() {
      const ns = await createNetns("wtr");
      made.push(ns);
      const runner = new RecordingRunner(new NetnsRunner(new ExecaRunner(), ns.name));
      const sh = async (file: string, ...args: string[]) => (await ns.run(file, args)).stdout;
      return { ns, runner, sh };
    }

    it("iptables mode: golden rules, unchanged second pass writes nothing, a rule deleted by hand is repaired", async () => {
      const { runner, sh } = await setup();
      const rules = new IptablesTrafficRules(nf(runner)("iptables"));
      const first = await rules.ensure(plan());
      expect(first).toMatchObject({ changed: true, fullyRandom: true, rewritten: ["iptables nat", "iptables filter"] });
      expect(await sh("iptables", "-t", "nat", "-S")).toBe(GOLDEN_NAT_S);
      expect(await sh("iptables", "-t", "filter", "-S", "FORWARD")).toBe(GOLDEN_FORWARD_S);
      expect(await sh("iptables", "-t", "filter", "-S", "WEFT-FWD")).toBe(
        '-N WEFT-FWD\n-A WEFT-FWD -s 198.19.0.0/16 -m comment --comment "weft forward" -j ACCEPT\n-A WEFT-FWD -d 198.19.0.0/16 -m comment --comment "weft forward" -j ACCEPT\n',
      );

      const writesBefore = runner.writes().length;
      const second = await rules.ensure(plan());
      expect(second.changed).toBe(false);
      expect(runner.writes().length).toBe(writesBefore);

      await sh("iptables", "-t", "nat", "-D", "WEFT-POSTRTG", "3");
      await sh("iptables", "-t", "filter", "-D", "FORWARD", "1");
      const repaired = await rules.ensure(plan());
      expect(repaired.rewritten).toEqual(["iptables nat", "iptables filter"]);
      expect(await sh("iptables", "-t", "nat", "-S")).toBe(GOLDEN_NAT_S);
      expect(await sh("iptables", "-t", "filter", "-S", "FORWARD")).toBe(GOLDEN_FORWARD_S);
    });

    it("iptables mode: the previous subnet's rules are replaced", async () => {
      const { runner, sh } = await setup();
      const rules = new IptablesTrafficRules(nf(runner)("iptables"));
      const old = { network: v4.network, subnet: IPNet.parse("198.19.9.0/24") };
      await rules.ensure(plan({ v4: old }));
      const report = await rules.ensure(plan({ v4: { ...v4, previous: old } }));
      expect(report.removedPrevious).toEqual(["v4"]);
      expect(await sh("iptables", "-t", "nat", "-S")).toBe(GOLDEN_NAT_S);
    });

    it("switching to nftables removes the iptables chains (nat and filter) and installs the nft tables", async () => {
      const { runner, sh } = await setup();
      await createTrafficRules(nf(runner)("iptables")).ensure(plan({ v6 }));
      expect(await sh("ip6tables", "-t", "nat", "-S")).toBe(GOLDEN_NAT6_S);

      await cleanupOtherMode("nftables", nf(runner));
      const nft = createTrafficRules(nf(runner)("nftables"));
      const report = await nft.ensure(plan({ v6 }));
      expect(report).toMatchObject({ changed: true, rewritten: ["ip weft-ipv4", "ip6 weft-ipv6"], fullyRandom: true });

      for (const tool of ["iptables", "ip6tables"]) {
        expect(await sh(tool, "-t", "nat", "-S")).not.toContain("WEFT");
        expect(await sh(tool, "-t", "filter", "-S")).not.toContain("WEFT");
      }
      expect(await sh("nft", "list", "table", "ip", "weft-ipv4")).toBe(GOLDEN_NFT_V4);
      expect(await sh("nft", "list", "table", "ip6", "weft-ipv6")).toBe(GOLDEN_NFT_V6);

      const writesBefore = runner.writes().length;
      expect((await nft.ensure(plan({ v6 }))).changed).toBe(false);
      expect(runner.writes().length).toBe(writesBefore);

      // Delete one rule by handle, as an operator would; the next pass puts the table back as it was.
      const listing = JSON.parse(await sh("nft", "-j", "list", "chain", "ip", "weft-ipv4", "postrtg")) as { nftables: Array<{ rule?: { handle: number } }> };
      const handle = listing.nftables.flatMap((i) => (i.rule ? [i.rule.handle] : []))[2]!;
      await sh("nft", "delete", "rule", "ip", "weft-ipv4", "postrtg", "handle", String(handle));
      expect((await nft.ensure(plan({ v6 }))).rewritten).toEqual(["ip weft-ipv4"]);
      expect(await sh("nft", "list", "table", "ip", "weft-ipv4")).toBe(GOLDEN_NFT_V4);

      // And back: iptables mode deletes both nft tables.
      await cleanupOtherMode("iptables", nf(runner));
      expect(await sh("nft", "list", "tables")).not.toContain("weft-");
      await nft.cleanup(); // already gone: still fine
    });

    it("nftables mode: a family leaving the plan and switched-off masquerade are removed", async () => {
      const { runner, sh } = await setup();
      const nft = new NftablesTrafficRules(nf(runner)("nftables"));
      await nft.ensure(plan({ v6 }));
      const r = await nft.ensure(plan({ masquerade: false }));
      expect(r.rewritten).toEqual(["ip weft-ipv4", "ip6 weft-ipv6"]);
      expect(await sh("nft", "list", "tables")).not.toContain("weft-ipv6");
      const t = await sh("nft", "list", "table", "ip", "weft-ipv4");
      expect(t).not.toContain("postrtg");
      expect(t).toContain("ip saddr 198.19.0.0/16 accept");
    });

    it("fully-random can be switched off", async () => {
      const { runner, sh } = await setup();
      expect((await new IptablesTrafficRules(nf(runner)("iptables")).ensure(plan({ fullyRandom: false }))).fullyRandom).toBe(false);
      expect(await sh("iptables", "-t", "nat", "-S")).not.toContain("random-fully");
      expect((await new NftablesTrafficRules(nf(runner)("nftables")).ensure(plan({ fullyRandom: false }))).fullyRandom).toBe(false);
      expect(await sh("nft", "list", "table", "ip", "weft-ipv4")).not.toContain("fully-random");
    });

    // A pod namespace behind a node namespace pings an "outside" namespace that has no route back to the pod
    // network: replies can only arrive if the node masqueraded the pod's address to its own.
    for (const mode of ["iptables", "nftables"] as const) {
      it(`${mode} mode: pod traffic to the outside is masqueraded to the node's address`, async () => {
        const node = await createNetns("wtn");
        made.push(node);
        const pod = await createNetns("wtp");
        made.push(pod);
        const out = await createNetns("wto");
        made.push(out);
        await node.ip(["link", "add", "podside", "type", "veth", "peer", "name", "eth0", "netns", pod.name]);
        await node.ip(["link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", out.name]);
        await node.ip(["addr", "add", "198.19.1.1/24", "dev", "podside"]);
        await node.ip(["addr", "add", "198.18.0.1/24", "dev", "uplink"]);
        await node.ip(["link", "set", "podside", "up"]);
        await node.ip(["link", "set", "uplink", "up"]);
        await node.run("sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
        await pod.ip(["addr", "add", "198.19.1.10/24", "dev", "eth0"]);
        await pod.ip(["link", "set", "eth0", "up"]);
        await pod.ip(["route", "add", "198.18.0.0/15", "via", "198.19.1.1"]);
        await out.ip(["addr", "add", "198.18.0.2/24", "dev", "eth0"]);
        await out.ip(["link", "set", "eth0", "up"]);

        // The outside counts what arrives, by source address.
        await out.run("nft", ["-f", "-"], {
          input: [
            "add table ip seen",
            "add chain ip seen in { type filter hook input priority 0; }",
            "add rule ip seen in ip saddr 198.18.0.1 icmp type echo-request counter",
            "add rule ip seen in ip saddr 198.19.0.0/16 icmp type echo-request counter",
          ].join("\n") + "\n",
        });
        const seen = async () => {
          const j = JSON.parse((await out.run("nft", ["-j", "list", "chain", "ip", "seen", "in"])).stdout) as {
            nftables: Array<{ rule?: { expr: Array<{ counter?: { packets: number } }> } }>;
          };
          const counts = j.nftables.flatMap((i) => (i.rule ? [i.rule.expr.find((e) => e.counter)!.counter!.packets] : []));
          return { node: counts[0], pod: counts[1] };
        };

        const ping = () => pod.run("ping", ["-c1", "-W1", "198.18.0.2"], { reject: false });
        // Control: without masquerade the request arrives from the pod address and the reply has no way back.
        expect((await ping()).exitCode).not.toBe(0);
        expect(await seen()).toEqual({ node: 0, pod: 1 });

        const runner = new NetnsRunner(new ExecaRunner(), node.name);
        await cleanupOtherMode(mode, nf(runner));
        await createTrafficRules(nf(runner)(mode)).ensure(plan());
        expect((await ping()).exitCode).toBe(0);
        expect(await seen()).toEqual({ node: 1, pod: 1 });
      });
    }
  },
  { tools: ["iptables", "ip6tables", "iptables-save", "iptables-restore", "nft", "ping", "sysctl"] },
);
