import { IPNet, isWeftError } from "@weft/core";
import { NftablesNetfilter, type ProcessRunner, nftMentionsAny, nftRuleJson, nftRuleText, parseNftTable, planNftTable, stableJson } from "@weft/kernel";
import { describe, expect, it } from "vitest";
import { NftablesTrafficRules, nftDesiredTable, nftablesNetfilterOptions } from "./nftables.js";
import { NFT_JSON_WEFT_IPV4, withoutRule } from "./testing/nft-fixtures.js";

const v4 = { network: IPNet.parse("198.19.0.0/16"), subnet: IPNet.parse("198.19.1.0/24") };
const v6 = { network: IPNet.parse("2001:2::/48"), subnet: IPNet.parse("2001:2:0:1::/64") };
const both = { masquerade: true, forward: true };

// What `nft list table ip weft-ipv4` prints inside the chains (flannel.md §6.2's rules, Weft's fixed rule 4
// and masked kube-proxy mark; see model.ts).
const GOLDEN_POSTRTG_V4 = [
  "meta mark & 0x00004000 == 0x00004000 return",
  "ip saddr 198.19.1.0/24 ip daddr 198.19.0.0/16 return",
  "ip saddr 198.19.0.0/16 ip daddr 198.19.1.0/24 return",
  "ip saddr != 198.19.0.0/16 ip daddr 198.19.1.0/24 return",
  "ip saddr 198.19.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random",
  "ip saddr != 198.19.0.0/16 ip daddr 198.19.0.0/16 masquerade fully-random",
];
const GOLDEN_POSTRTG_V6 = [
  "meta mark & 0x00004000 == 0x00004000 return",
  "ip6 saddr 2001:2:0:1::/64 ip6 daddr 2001:2::/48 return",
  "ip6 saddr 2001:2::/48 ip6 daddr 2001:2:0:1::/64 return",
  "ip6 saddr != 2001:2::/48 ip6 daddr 2001:2:0:1::/64 return",
  "ip6 saddr 2001:2::/48 ip6 daddr != ff00::/8 masquerade fully-random",
  "ip6 saddr != 2001:2::/48 ip6 daddr 2001:2::/48 masquerade fully-random",
];

describe("nft rule text", () => {
  it("renders the postrtg and forward chains as nft lists them", () => {
    const t = nftDesiredTable("v4", v4, both, true);
    expect(t).toMatchObject({ family: "ip", name: "weft-ipv4" });
    expect(t.chains.map((c) => c.name)).toEqual(["postrtg", "forward"]);
    expect(t.chains[0]!.rules.map((r) => nftRuleText(r, "ip"))).toEqual(GOLDEN_POSTRTG_V4);
    expect(t.chains[1]!.rules.map((r) => nftRuleText(r, "ip"))).toEqual(["ip saddr 198.19.0.0/16 accept", "ip daddr 198.19.0.0/16 accept"]);
  });

  it("renders IPv6 into ip6 weft-ipv6 with ff00::/8", () => {
    const t = nftDesiredTable("v6", v6, both, true);
    expect(t).toMatchObject({ family: "ip6", name: "weft-ipv6" });
    expect(t.chains[0]!.rules.map((r) => nftRuleText(r, "ip6"))).toEqual(GOLDEN_POSTRTG_V6);
  });

  it("plain masquerade without fully-random", () => {
    const t = nftDesiredTable("v4", v4, both, false);
    expect(nftRuleText(t.chains[0]!.rules[4]!, "ip")).toBe("ip saddr 198.19.0.0/16 ip daddr != 224.0.0.0/4 masquerade");
    expect(nftRuleJson(t.chains[0]!.rules[4]!, "ip").at(-1)).toEqual({ masquerade: null });
  });

  it("the transaction for an absent table: add table, add chain with spec, flush, rules", () => {
    expect(planNftTable(undefined, nftDesiredTable("v4", v4, both, true))).toEqual([
      "add table ip weft-ipv4",
      "add chain ip weft-ipv4 postrtg { type nat hook postrouting priority srcnat; policy accept; }",
      "flush chain ip weft-ipv4 postrtg",
      ...GOLDEN_POSTRTG_V4.map((r) => `add rule ip weft-ipv4 postrtg ${r}`),
      "add chain ip weft-ipv4 forward { type filter hook forward priority filter; policy accept; }",
      "flush chain ip weft-ipv4 forward",
      "add rule ip weft-ipv4 forward ip saddr 198.19.0.0/16 accept",
      "add rule ip weft-ipv4 forward ip daddr 198.19.0.0/16 accept",
    ]);
  });
});

describe("planNftTable against real nft -j output", () => {
  const desired = nftDesiredTable("v4", v4, both, true);
  const live = parseNftTable(NFT_JSON_WEFT_IPV4, "ip", "weft-ipv4");

  it("parses chains and rules of the table", () => {
    expect(live).toBeDefined();
    expect([...live!.chains.keys()]).toEqual(["postrtg", "forward"]);
    expect(live!.chains.get("postrtg")).toMatchObject({ type: "nat", hook: "postrouting", prio: 100, policy: "accept" });
    expect(live!.chains.get("postrtg")!.rules).toHaveLength(6);
  });

  it("expected JSON equals what nft prints, so an in-sync table plans nothing", () => {
    desired.chains[0]!.rules.forEach((r, i) => expect(stableJson(nftRuleJson(r, "ip"))).toBe(stableJson(live!.chains.get("postrtg")!.rules[i])));
    expect(planNftTable(live, desired)).toEqual([]);
  });

  it("a rule deleted by hand: flush and refill", () => {
    const lines = planNftTable(parseNftTable(withoutRule(NFT_JSON_WEFT_IPV4, 6), "ip", "weft-ipv4"), desired);
    expect(lines[0]).toBe("add table ip weft-ipv4");
    expect(lines).toContain("flush chain ip weft-ipv4 postrtg");
    expect(lines.filter((l) => l.startsWith("add rule ip weft-ipv4 postrtg"))).toHaveLength(6);
    expect(lines).not.toContain("delete table ip weft-ipv4");
  });

  it("a change of subnet rewrites, and the old subnet is recognised as previous", () => {
    const moved = { network: v4.network, subnet: IPNet.parse("198.19.7.0/24") };
    expect(planNftTable(live, nftDesiredTable("v4", moved, both, true))).toContain("add rule ip weft-ipv4 postrtg ip saddr 198.19.7.0/24 ip daddr 198.19.0.0/16 return");
    expect(nftMentionsAny(live, [v4.subnet])).toBe(true);
    expect(nftMentionsAny(live, [IPNet.parse("198.18.0.0/24")])).toBe(false);
  });

  it("an unknown chain or a chain with another spec: delete and rebuild the table in one transaction", () => {
    const doc = JSON.parse(NFT_JSON_WEFT_IPV4) as { nftables: unknown[] };
    doc.nftables.push({ chain: { family: "ip", table: "weft-ipv4", name: "extra", handle: 99 } });
    const lines = planNftTable(parseNftTable(JSON.stringify(doc), "ip", "weft-ipv4"), desired);
    expect(lines.slice(0, 3)).toEqual(["delete table ip weft-ipv4", "add table ip weft-ipv4", "add chain ip weft-ipv4 postrtg { type nat hook postrouting priority srcnat; policy accept; }"]);

    const dropped = NFT_JSON_WEFT_IPV4.replace('"prio":0,"policy":"accept"', '"prio":0,"policy":"drop"');
    expect(planNftTable(parseNftTable(dropped, "ip", "weft-ipv4"), desired)[0]).toBe("delete table ip weft-ipv4");
  });

  it("forward switched off: the forward chain goes (rebuild), masquerade stays", () => {
    const lines = planNftTable(live, nftDesiredTable("v4", v4, { masquerade: true, forward: false }, true));
    expect(lines[0]).toBe("delete table ip weft-ipv4");
    expect(lines.join("\n")).not.toContain("forward");
  });

  it("nothing wanted: delete the table if present, nothing if absent", () => {
    expect(planNftTable(live, nftDesiredTable("v4", undefined, both, true))).toEqual(["delete table ip weft-ipv4"]);
    expect(planNftTable(undefined, nftDesiredTable("v4", v4, { masquerade: false, forward: false }, true))).toEqual([]);
  });

  it("a full-length prefix is compared as the bare address nft prints", () => {
    const host = { network: IPNet.parse("198.19.0.0/16"), subnet: IPNet.parse("198.19.1.1/32") };
    const rule = nftDesiredTable("v4", host, both, true).chains[0]!.rules[1]!;
    expect(nftRuleJson(rule, "ip")[0]).toEqual({ match: { op: "==", left: { payload: { protocol: "ip", field: "saddr" } }, right: "198.19.1.1" } });
  });
});

describe("NftablesTrafficRules when nft is missing", () => {
  it("behind `ip netns exec` a missing nft is still one PROCESS_MISSING line naming the package", async () => {
    // What `ip netns exec <ns> nft ...` answers when nft is not installed.
    const netnsWithoutNft: ProcessRunner = {
      run: async () => ({ exitCode: 1, stdout: "", stderr: 'exec of "nft" failed: No such file or directory\n' }),
      spawn: () => {
        throw new Error("not used");
      },
    };
    const err = await new NftablesTrafficRules(new NftablesNetfilter(netnsWithoutNft, nftablesNetfilterOptions())).ensure({ v4, masquerade: true, forward: true, fullyRandom: true }).catch((e: unknown) => e);
    expect(isWeftError(err, "PROCESS_MISSING")).toBe(true);
    expect((err as Error).message).toBe('program "nft" not found on PATH; install it: apt-get install -y --no-install-recommends nftables');
  });
});
