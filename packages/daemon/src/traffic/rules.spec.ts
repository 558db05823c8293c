/**
 * The traffic rules' own logic (which rules for which plan, what the report says) over the FakeNetfilter,
 * in both modes: assertions are on the fake's final state, as data.
 */
import { IPNet, MemoryLogger, isWeftError } from "@weft/core";
import { FakeNetfilter } from "@weft/kernel-testing";
import { describe, expect, it } from "vitest";
import { KUBE_PROXY_MARK, type TrafficPlan, forwardRules, masqueradeRules } from "./model.js";
import { NetfilterTrafficRules } from "./rules.js";

const v4 = { network: IPNet.parse("198.19.0.0/16"), subnet: IPNet.parse("198.19.1.0/24") };
const v6 = { network: IPNet.parse("2001:2::/48"), subnet: IPNet.parse("2001:2:0:1::/64") };
const plan = (over: Partial<TrafficPlan> = {}): TrafficPlan => ({ v4, masquerade: true, forward: true, fullyRandom: true, ...over });

describe.each(["iptables", "nftables"] as const)("NetfilterTrafficRules over FakeNetfilter (%s)", (mode) => {
  it("installs Flannel's six masquerade and two forward rules as data, then writes nothing", async () => {
    const nf = new FakeNetfilter(mode);
    const rules = new NetfilterTrafficRules(nf);
    const report = await rules.ensure(plan());
    expect(report).toMatchObject({ changed: true, fullyRandom: true, removedPrevious: [] });
    expect(nf.rules("v4", "postrouting")).toEqual(masqueradeRules(v4, true));
    expect(nf.rules("v4", "postrouting")![0]).toEqual({ markBits: KUBE_PROXY_MARK, verdict: "return" });
    expect(nf.rules("v4", "forward")).toEqual(forwardRules(v4));
    const writes = nf.writes;
    expect(await rules.ensure(plan())).toMatchObject({ changed: false, rewritten: [] });
    expect(nf.writes).toBe(writes);
  });

  it("repairs a hand edit and reports the previous network it replaced", async () => {
    const nf = new FakeNetfilter(mode);
    const rules = new NetfilterTrafficRules(nf);
    const old = { network: IPNet.parse("198.18.128.0/17"), subnet: IPNet.parse("198.18.130.0/24") };
    await rules.ensure(plan({ v4: old }));
    const report = await rules.ensure(plan({ v4: { ...v4, previous: old } }));
    expect(report.removedPrevious).toEqual(["v4"]);
    nf.editRule("v4", "forward", 0);
    expect((await rules.ensure(plan())).changed).toBe(true);
    expect(nf.rules("v4", "forward")).toEqual(forwardRules(v4));
  });

  it("removes a family leaving the plan and switched-off chains; tolerates a host without IPv6 tools", async () => {
    const nf = new FakeNetfilter(mode);
    const rules = new NetfilterTrafficRules(nf);
    await rules.ensure(plan({ v6 }));
    expect(nf.rules("v6", "postrouting")).toEqual(masqueradeRules(v6, true));
    await rules.ensure(plan({ masquerade: false }));
    expect(nf.rules("v6", "postrouting")).toBeUndefined();
    expect(nf.rules("v6", "forward")).toBeUndefined();
    expect(nf.rules("v4", "postrouting")).toBeUndefined();
    expect(nf.rules("v4", "forward")).toEqual(forwardRules(v4));

    const bare = new FakeNetfilter(mode);
    bare.missing.add("v6");
    await expect(new NetfilterTrafficRules(bare).ensure(plan())).resolves.toMatchObject({ changed: true });
  });

  it("masquerades without fully-random when the tool lacks it, and warns once", async () => {
    const nf = new FakeNetfilter(mode);
    nf.fullyRandom = false;
    const logger = new MemoryLogger();
    const rules = new NetfilterTrafficRules(nf, { logger });
    expect((await rules.ensure(plan())).fullyRandom).toBe(false);
    await rules.ensure(plan());
    expect(nf.rules("v4", "postrouting")).toEqual(masqueradeRules(v4, false));
    expect(logger.records.filter((r) => r.level === "warn" && r.msg.includes("--random-fully"))).toHaveLength(1);
  });

  it("cleanup removes everything; a failed write leaves the old rules and is reported", async () => {
    const nf = new FakeNetfilter(mode);
    const rules = new NetfilterTrafficRules(nf);
    await rules.ensure(plan({ v6 }));
    nf.failNextWrite(new Error("restore failed"));
    await expect(rules.cleanup()).rejects.toThrow("restore failed");
    expect(nf.rules("v4", "forward")).toEqual(forwardRules(v4));
    await rules.cleanup();
    for (const f of ["v4", "v6"] as const) expect((await nf.read(f)).chains).toEqual({});
    const err = await rules.ensure(plan({ v4: { network: v4.network, subnet: IPNet.parse("198.18.1.0/24") } })).catch((e: unknown) => e);
    expect(isWeftError(err, "CONFIG_INVALID")).toBe(true);
  });
});
