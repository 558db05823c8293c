import { IPNet, isWeftError } from "@weft/core";
import { IptablesNetfilter, type NetfilterRule } from "@weft/kernel";
import { describe, expect, it } from "vitest";
import { FakeNetfilter } from "./fake-netfilter.js";
import { FakeXtables } from "./fake-xtables.js";
import { describeNetfilterPortContract } from "./netfilter-contract.js";

describeNetfilterPortContract("FakeNetfilter (iptables)", async () => ({ port: new FakeNetfilter("iptables"), cleanup: async () => undefined }));
describeNetfilterPortContract("FakeNetfilter (nftables)", async () => ({ port: new FakeNetfilter("nftables"), cleanup: async () => undefined }));

const accept: NetfilterRule = { src: { net: IPNet.parse("198.19.0.0/16"), negate: false }, verdict: "accept" };

describe("FakeNetfilter", () => {
  it("repairs a rule deleted by hand and drops strays on the next apply, with the real labels", async () => {
    const nf = new FakeNetfilter("iptables");
    await nf.apply([{ family: "v4", chains: { forward: [accept, accept] } }]);
    nf.editRule("v4", "forward", 1);
    nf.addStray("v4", "-t nat -A POSTROUTING -j WEFT-POSTRTG");
    const [c] = await nf.apply([{ family: "v4", chains: { forward: [accept, accept] } }]);
    expect(c!.rewritten).toEqual(["iptables nat", "iptables filter"]);
    expect(nf.rules("v4", "forward")).toHaveLength(2);
    expect((await nf.read("v4")).strays).toEqual([]);
  });

  it("a failed write changes nothing; a missing tool is PROCESS_MISSING except for a removal", async () => {
    const nf = new FakeNetfilter("nftables");
    nf.failNextWrite(new Error("boom"));
    await expect(nf.apply([{ family: "v4", chains: { forward: [accept] } }])).rejects.toThrow("boom");
    expect(nf.rules("v4", "forward")).toBeUndefined();
    expect(nf.writes).toBe(0);
    nf.missing.add("v6");
    await expect(nf.apply([{ family: "v6", chains: {} }])).resolves.toEqual([{ family: "v6", rewritten: [], before: undefined }]);
    const err = await nf.read("v6").catch((e: unknown) => e);
    expect(isWeftError(err, "PROCESS_MISSING")).toBe(true);
    expect((err as Error).message).toContain("nftables");
  });
});

// The iptables adapter itself, on the unit tier: IptablesNetfilter driving the stateful fake iptables tools.
describeNetfilterPortContract("IptablesNetfilter over FakeXtables", async () => ({
  port: new IptablesNetfilter(new FakeXtables(), {
    chains: { postrouting: { chain: "WEFT-POSTRTG", comment: "weft masq" }, forward: { chain: "WEFT-FWD", comment: "weft forward" } },
  }),
  cleanup: async () => undefined,
}));
