/**
 * The NetfilterPort contract against the real iptables-save/-restore and nft, each test in a fresh network
 * namespace (every command goes through `ip netns exec`, so the root namespace's tables are never touched).
 * Needs root: fails under CI=true without it.
 */
import { ExecaRunner, IptablesNetfilter, NftablesNetfilter } from "@weft/kernel";
import { createNetns } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { NetnsRunner } from "./netns-runner.js";
import { describeNetfilterPortContract } from "./netfilter-contract.js";

const host = new ExecaRunner();

describeReal(
  "netfilter adapters in a network namespace",
  () => {
    describeNetfilterPortContract("IptablesNetfilter", async () => {
      const ns = await createNetns("wnf");
      const port = new IptablesNetfilter(new NetnsRunner(host, ns.name), {
        chains: { postrouting: { chain: "WEFT-POSTRTG", comment: "weft masq" }, forward: { chain: "WEFT-FWD", comment: "weft forward" } },
      });
      return { port, cleanup: () => ns.destroy() };
    });

    describeNetfilterPortContract("NftablesNetfilter", async () => {
      const ns = await createNetns("wnf");
      const port = new NftablesNetfilter(new NetnsRunner(host, ns.name), {
        tables: { v4: { family: "ip", name: "weft-ipv4" }, v6: { family: "ip6", name: "weft-ipv6" } },
        chains: { postrouting: "postrtg", forward: "forward" },
      });
      return { port, cleanup: () => ns.destroy() };
    });
  },
  { tools: ["iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore", "nft"] },
);
