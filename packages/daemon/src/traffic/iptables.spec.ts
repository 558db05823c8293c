import { IPNet, MemoryLogger, isWeftError } from "@weft/core";
import { describe, expect, it } from "vitest";
import { IptablesNetfilter, iptablesRuleLines, parseIptablesSave, planIptablesChain } from "@weft/kernel";
import { IPT_FWD, IPT_MASQ, IptablesTrafficRules, iptablesForwardSpecs, iptablesMasqueradeSpecs, iptablesNetfilterOptions } from "./iptables.js";
import type { TrafficPlan } from "./model.js";
import { FakeXtables } from "@weft/kernel-testing";

const v4 = { network: IPNet.parse("198.19.0.0/16"), subnet: IPNet.parse("198.19.1.0/24") };
const v6 = { network: IPNet.parse("2001:2::/48"), subnet: IPNet.parse("2001:2:0:1::/64") };
const plan = (over: Partial<TrafficPlan> = {}): TrafficPlan => ({ v4, masquerade: true, forward: true, fullyRandom: true, ...over });
/** The kernel's iptables adapter with Weft's names, over the fake iptables tools. */
const ipt = (x: FakeXtables) => new IptablesNetfilter(x, iptablesNetfilterOptions());

// flannel.md §6.1.4: `iptables -t nat -S` shows these 7 lines in order (Flannel's names replaced by Weft's).
const GOLDEN_NAT_V4 = [
  '-A POSTROUTING -m comment --comment "weft masq" -j WEFT-POSTRTG',
  '-A WEFT-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "weft masq" -j RETURN',
  '-A WEFT-POSTRTG -s 198.19.1.0/24 -d 198.19.0.0/16 -m comment --comment "weft masq" -j RETURN',
  '-A WEFT-POSTRTG -s 198.19.0.0/16 -d 198.19.1.0/24 -m comment --comment "weft masq" -j RETURN',
  '-A WEFT-POSTRTG ! -s 198.19.0.0/16 -d 198.19.1.0/24 -m comment --comment "weft masq" -j RETURN',
  '-A WEFT-POSTRTG -s 198.19.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "weft masq" -j MASQUERADE --random-fully',
  '-A WEFT-POSTRTG ! -s 198.19.0.0/16 -d 198.19.0.0/16 -m comment --comment "weft masq" -j MASQUERADE --random-fully',
];
const GOLDEN_NAT_V6 = [
  '-A POSTROUTING -m comment --comment "weft masq" -j WEFT-POSTRTG',
  '-A WEFT-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "weft masq" -j RETURN',
  '-A WEFT-POSTRTG -s 2001:2:0:1::/64 -d 2001:2::/48 -m comment --comment "weft masq" -j RETURN',
  '-A WEFT-POSTRTG -s 2001:2::/48 -d 2001:2:0:1::/64 -m comment --comment "weft masq" -j RETURN',
  '-A WEFT-POSTRTG ! -s 2001:2::/48 -d 2001:2:0:1::/64 -m comment --comment "weft masq" -j RETURN',
  '-A WEFT-POSTRTG -s 2001:2::/48 ! -d ff00::/8 -m comment --comment "weft masq" -j MASQUERADE --random-fully',
  '-A WEFT-POSTRTG ! -s 2001:2::/48 -d 2001:2::/48 -m comment --comment "weft masq" -j MASQUERADE --random-fully',
];
const GOLDEN_FILTER_V4 = [
  '-A FORWARD -m comment --comment "weft forward" -j WEFT-FWD',
  '-A WEFT-FWD -s 198.19.0.0/16 -m comment --comment "weft forward" -j ACCEPT',
  '-A WEFT-FWD -d 198.19.0.0/16 -m comment --comment "weft forward" -j ACCEPT',
];

function rulesOf(x: FakeXtables, f: "v4" | "v6", table: "nat" | "filter"): string[] {
  return x.listRules(f, table).filter((l) => l.startsWith("-A "));
}

describe("iptables rule text (Flannel's §6.1 lines with Weft's names)", () => {
  it("renders the masquerade chain exactly like Flannel's golden output", () => {
    expect(iptablesRuleLines(IPT_MASQ, iptablesMasqueradeSpecs(v4, true))).toEqual(GOLDEN_NAT_V4);
  });

  it("renders IPv6 with ff00::/8 instead of 224.0.0.0/4", () => {
    expect(iptablesRuleLines(IPT_MASQ, iptablesMasqueradeSpecs(v6, true))).toEqual(GOLDEN_NAT_V6);
  });

  it("drops --random-fully when not wanted", () => {
    const lines = iptablesRuleLines(IPT_MASQ, iptablesMasqueradeSpecs(v4, false));
    expect(lines[5]).toBe('-A WEFT-POSTRTG -s 198.19.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "weft masq" -j MASQUERADE');
    expect(lines[6]).toBe('-A WEFT-POSTRTG ! -s 198.19.0.0/16 -d 198.19.0.0/16 -m comment --comment "weft masq" -j MASQUERADE');
  });

  it("renders the forward chain", () => {
    expect(iptablesRuleLines(IPT_FWD, iptablesForwardSpecs(v4))).toEqual(GOLDEN_FILTER_V4);
  });
});

describe("planIptablesChain", () => {
  const save = (lines: string[], chains = ":WEFT-POSTRTG - [0:0]") =>
    parseIptablesSave(`*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n${chains}\n${lines.join("\n")}\nCOMMIT\n`, "nat");
  const desired = iptablesMasqueradeSpecs(v4, true);

  it("creates chain, jump and rules on an empty table, the chain line first", () => {
    const lines = planIptablesChain(save([], ""), IPT_MASQ, desired);
    expect(lines).toEqual([":WEFT-POSTRTG - [0:0]", ...GOLDEN_NAT_V4]);
  });

  it("is empty when the live table already holds exactly the golden lines", () => {
    expect(planIptablesChain(save(GOLDEN_NAT_V4), IPT_MASQ, desired)).toEqual([]);
  });

  it("keeps foreign rules and leaves the jump where it is (after kube-proxy's)", () => {
    const live = save(["-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING", ...GOLDEN_NAT_V4], ":WEFT-POSTRTG - [0:0]\n:KUBE-POSTROUTING - [0:0]");
    expect(planIptablesChain(live, IPT_MASQ, desired)).toEqual([]);
  });

  it("refills the whole chain when one rule is missing or reordered", () => {
    const missing = GOLDEN_NAT_V4.filter((_, i) => i !== 3);
    expect(planIptablesChain(save(missing), IPT_MASQ, desired)).toEqual([":WEFT-POSTRTG - [0:0]", ...GOLDEN_NAT_V4.slice(1)]);
    const swapped = [GOLDEN_NAT_V4[0]!, GOLDEN_NAT_V4[2]!, GOLDEN_NAT_V4[1]!, ...GOLDEN_NAT_V4.slice(3)];
    expect(planIptablesChain(save(swapped), IPT_MASQ, desired)).toEqual([":WEFT-POSTRTG - [0:0]", ...GOLDEN_NAT_V4.slice(1)]);
  });

  it("deletes duplicate jumps, keeping one", () => {
    const live = save([GOLDEN_NAT_V4[0]!, ...GOLDEN_NAT_V4]);
    expect(planIptablesChain(live, IPT_MASQ, desired)).toEqual([
      ":WEFT-POSTRTG - [0:0]",
      '-D POSTROUTING -m comment --comment "weft masq" -j WEFT-POSTRTG',
      ...GOLDEN_NAT_V4.slice(1),
    ]);
  });

  it("replaces the rules of a previous network and subnet and deletes owned strays elsewhere", () => {
    const old = { network: IPNet.parse("198.18.128.0/17"), subnet: IPNet.parse("198.18.130.0/24") };
    const oldLines = iptablesRuleLines(IPT_MASQ, iptablesMasqueradeSpecs(old, true));
    const stray = '-A POSTROUTING -s 198.18.128.0/17 -m comment --comment "weft masq" -j MASQUERADE';
    const lines = planIptablesChain(save([...oldLines, stray]), IPT_MASQ, desired);
    expect(lines).toEqual([
      ":WEFT-POSTRTG - [0:0]",
      '-D POSTROUTING -s 198.18.128.0/17 -m comment --comment "weft masq" -j MASQUERADE',
      ...GOLDEN_NAT_V4.slice(1),
    ]);
    expect(lines.join("\n")).not.toContain("198.18.130.0/24");
  });

  it("removes jump and chain when the chain is not wanted", () => {
    expect(planIptablesChain(save(GOLDEN_NAT_V4), IPT_MASQ, undefined)).toEqual([
      '-D POSTROUTING -m comment --comment "weft masq" -j WEFT-POSTRTG',
      ":WEFT-POSTRTG - [0:0]",
      "-X WEFT-POSTRTG",
    ]);
    expect(planIptablesChain(save([], ""), IPT_MASQ, undefined)).toEqual([]);
  });
});

describe("IptablesTrafficRules over a stateful fake iptables", () => {
  it("installs Flannel's rules, then reports unchanged and writes nothing", async () => {
    const x = new FakeXtables();
    const rules = new IptablesTrafficRules(ipt(x));
    const first = await rules.ensure(plan());
    expect(first).toEqual({ changed: true, rewritten: ["iptables nat", "iptables filter"], fullyRandom: true, removedPrevious: [] });
    expect(rulesOf(x, "v4", "nat")).toEqual(GOLDEN_NAT_V4);
    expect(rulesOf(x, "v4", "filter")).toEqual(GOLDEN_FILTER_V4);
    expect(x.listRules("v4", "nat")).toContain("-N WEFT-POSTRTG");

    const commits = x.commits;
    const second = await rules.ensure(plan());
    expect(second.changed).toBe(false);
    expect(second.rewritten).toEqual([]);
    expect(x.commits).toBe(commits);
  });

  it("overlapping calls run one after another", async () => {
    const x = new FakeXtables();
    const rules = new IptablesTrafficRules(ipt(x));
    const [a, b, c] = await Promise.all([rules.ensure(plan()), rules.ensure(plan()), rules.cleanup().then(() => rules.ensure(plan()))]);
    expect([a.changed, b.changed, c.changed]).toEqual([true, false, true]);
    expect(rulesOf(x, "v4", "nat")).toEqual(GOLDEN_NAT_V4);
  });

  it("repairs a rule deleted by hand and a jump deleted by hand", async () => {
    const x = new FakeXtables();
    const rules = new IptablesTrafficRules(ipt(x));
    await rules.ensure(plan());
    expect(x.deleteRuleContaining("v4", "nat", "WEFT-POSTRTG", "! -d 224.0.0.0/4")).toBe(true);
    expect(x.deleteRuleContaining("v4", "filter", "FORWARD", "-j WEFT-FWD")).toBe(true);
    const report = await rules.ensure(plan());
    expect(report.rewritten).toEqual(["iptables nat", "iptables filter"]);
    expect(rulesOf(x, "v4", "nat")).toEqual(GOLDEN_NAT_V4);
    expect(rulesOf(x, "v4", "filter")).toEqual(GOLDEN_FILTER_V4);
  });

  it("leaves foreign rules alone", async () => {
    const x = new FakeXtables();
    x.addRule("v4", "nat", "KUBE-POSTROUTING", '-m comment --comment "kube" -j RETURN');
    x.addRule("v4", "nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING');
    x.addRule("v4", "filter", "FORWARD", "-s 10.0.0.0/8 -j ACCEPT");
    await new IptablesTrafficRules(ipt(x)).ensure(plan());
    expect(rulesOf(x, "v4", "nat")).toEqual([
      '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
      GOLDEN_NAT_V4[0],
      // (listed in chain creation order, as iptables -S does)
      '-A KUBE-POSTROUTING -m comment --comment "kube" -j RETURN',
      ...GOLDEN_NAT_V4.slice(1),
    ]);
    expect(rulesOf(x, "v4", "filter")).toEqual(["-A FORWARD -s 10.0.0.0/8 -j ACCEPT", ...GOLDEN_FILTER_V4]);
  });

  it("removes the rules of the previous network and says so", async () => {
    const x = new FakeXtables();
    const rules = new IptablesTrafficRules(ipt(x));
    const old = { network: IPNet.parse("198.18.128.0/17"), subnet: IPNet.parse("198.18.130.0/24") };
    await rules.ensure(plan({ v4: old }));
    expect(rulesOf(x, "v4", "nat").join("\n")).toContain("198.18.130.0/24");
    const report = await rules.ensure(plan({ v4: { ...v4, previous: old } }));
    expect(report.removedPrevious).toEqual(["v4"]);
    expect(rulesOf(x, "v4", "nat")).toEqual(GOLDEN_NAT_V4);
    expect(rulesOf(x, "v4", "filter")).toEqual(GOLDEN_FILTER_V4);
    const again = await rules.ensure(plan({ v4: { ...v4, previous: old } }));
    expect(again).toMatchObject({ changed: false, removedPrevious: [] });
  });

  it("dual-stack: both families, IPv6 through ip6tables", async () => {
    const x = new FakeXtables();
    const report = await new IptablesTrafficRules(ipt(x)).ensure(plan({ v6 }));
    expect(report.rewritten).toEqual(["iptables nat", "iptables filter", "ip6tables nat", "ip6tables filter"]);
    expect(rulesOf(x, "v6", "nat")).toEqual(GOLDEN_NAT_V6);
    expect(rulesOf(x, "v6", "filter")).toEqual([
      '-A FORWARD -m comment --comment "weft forward" -j WEFT-FWD',
      '-A WEFT-FWD -s 2001:2::/48 -m comment --comment "weft forward" -j ACCEPT',
      '-A WEFT-FWD -d 2001:2::/48 -m comment --comment "weft forward" -j ACCEPT',
    ]);
  });

  it("removes a family that leaves the plan, and the chains of switched-off features", async () => {
    const x = new FakeXtables();
    const rules = new IptablesTrafficRules(ipt(x));
    await rules.ensure(plan({ v6 }));
    await rules.ensure(plan({ masquerade: false }));
    expect(rulesOf(x, "v6", "nat")).toEqual([]);
    expect(rulesOf(x, "v6", "filter")).toEqual([]);
    expect(rulesOf(x, "v4", "nat")).toEqual([]);
    expect(x.listRules("v4", "nat")).not.toContain("-N WEFT-POSTRTG");
    expect(rulesOf(x, "v4", "filter")).toEqual(GOLDEN_FILTER_V4);
  });

  it("masquerades without --random-fully when asked to or when iptables lacks it", async () => {
    const x = new FakeXtables();
    const off = await new IptablesTrafficRules(ipt(x)).ensure(plan({ fullyRandom: false }));
    expect(off.fullyRandom).toBe(false);
    expect(rulesOf(x, "v4", "nat").join("\n")).not.toContain("--random-fully");

    const old = new FakeXtables();
    old.randomFully = false;
    const log = new MemoryLogger();
    const r = await new IptablesTrafficRules(ipt(old), { logger: log }).ensure(plan());
    expect(r.fullyRandom).toBe(false);
    expect(rulesOf(old, "v4", "nat")).toHaveLength(7);
    expect(rulesOf(old, "v4", "nat").join("\n")).not.toContain("--random-fully");
    expect(log.records.some((l) => l.level === "warn" && l.msg.includes("--random-fully"))).toBe(true);
  });

  it("cleanup removes everything Weft owns in both tables and families, and nothing else", async () => {
    const x = new FakeXtables();
    x.addRule("v4", "filter", "FORWARD", "-s 10.0.0.0/8 -j ACCEPT");
    const rules = new IptablesTrafficRules(ipt(x));
    await rules.ensure(plan({ v6 }));
    await rules.cleanup();
    for (const f of ["v4", "v6"] as const) {
      expect(x.listRules(f, "nat").filter((l) => l.includes("WEFT"))).toEqual([]);
      expect(x.listRules(f, "filter").filter((l) => l.includes("WEFT"))).toEqual([]);
    }
    expect(rulesOf(x, "v4", "filter")).toEqual(["-A FORWARD -s 10.0.0.0/8 -j ACCEPT"]);
    await rules.cleanup(); // nothing left: still succeeds
  });

  it("a missing iptables is one PROCESS_MISSING line naming the Debian package", async () => {
    const x = new FakeXtables();
    x.missing.add("iptables-save");
    const err = await new IptablesTrafficRules(ipt(x)).ensure(plan()).catch((e: unknown) => e);
    expect(isWeftError(err, "PROCESS_MISSING")).toBe(true);
    expect((err as Error).message).toContain("apt-get install -y --no-install-recommends iptables");
    expect((err as Error).message).not.toContain("\n");
  });

  it("a v4-only plan tolerates a host without ip6tables", async () => {
    const x = new FakeXtables();
    x.missing.add("ip6tables-save");
    x.missing.add("ip6tables-restore");
    await expect(new IptablesTrafficRules(ipt(x)).ensure(plan())).resolves.toMatchObject({ changed: true });
  });

  it("rejects a subnet outside the network with CONFIG_INVALID", async () => {
    const err = await new IptablesTrafficRules(ipt(new FakeXtables())).ensure(plan({ v4: { network: v4.network, subnet: IPNet.parse("198.18.1.0/24") } })).catch((e: unknown) => e);
    expect(isWeftError(err, "CONFIG_INVALID")).toBe(true);
  });
});
