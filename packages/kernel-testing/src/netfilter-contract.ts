/**
 * The NetfilterPort contract: one suite, run on FakeNetfilter (unit, both modes) and on IptablesNetfilter and
 * NftablesNetfilter against the real tools in a fresh network namespace (netns tier). It imports vitest, so
 * it is not part of the package index. Addresses are from 198.18.0.0/15 and 2001:2::/48 only.
 */
import { type Family, IPNet, isWeftError } from "@weft/core";
import { type NetfilterPort, type NetfilterRule, type NetfilterRuleset, type NetfilterState, netsOf, sameRule } from "@weft/kernel";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

export interface NetfilterPortFixture {
  readonly port: NetfilterPort;
  cleanup(): Promise<void>;
}

const NET = { v4: IPNet.parse("198.19.0.0/16"), v6: IPNet.parse("2001:2::/48") };
const POD = { v4: IPNet.parse("198.19.1.0/24"), v6: IPNet.parse("2001:2:0:1::/64") };
const MOVED = { v4: IPNet.parse("198.19.7.0/24"), v6: IPNet.parse("2001:2:0:7::/64") };
const MCAST = { v4: IPNet.parse("224.0.0.0/4"), v6: IPNet.parse("ff00::/8") };
const HOST = { v4: IPNet.parse("198.18.0.1/32"), v6: IPNet.parse("2001:2::1/128") };

function masquerade(f: Family, pod: IPNet, fullyRandom: boolean): NetfilterRule[] {
  const net = NET[f];
  return [
    { markBits: 0x4000, verdict: "return" },
    { src: { net: pod, negate: false }, dst: { net, negate: false }, verdict: "return" },
    { src: { net, negate: true }, dst: { net: pod, negate: false }, verdict: "return" },
    { src: { net, negate: false }, dst: { net: MCAST[f], negate: true }, verdict: "masquerade", fullyRandom },
    // A full-length prefix: nft prints it as a bare address.
    { src: { net: HOST[f], negate: false }, verdict: "masquerade", fullyRandom: false },
  ];
}

function forward(f: Family): NetfilterRule[] {
  return [
    { src: { net: NET[f], negate: false }, verdict: "accept" },
    { dst: { net: NET[f], negate: false }, verdict: "accept" },
  ];
}

function full(f: Family, pod = POD[f], fullyRandom = false): NetfilterRuleset {
  return { family: f, chains: { postrouting: masquerade(f, pod, fullyRandom), forward: forward(f) } };
}

function expectRules(state: NetfilterState, ruleset: NetfilterRuleset): void {
  for (const hook of ["postrouting", "forward"] as const) {
    const want = ruleset.chains[hook];
    const got = state.chains[hook];
    if (!want) {
      expect(got, `${state.family} ${hook} should not exist`).toBeUndefined();
      continue;
    }
    expect(got, `${state.family} ${hook} should exist`).toBeDefined();
    expect(got!.length, `${state.family} ${hook}: ${JSON.stringify(got)}`).toBe(want.length);
    got!.forEach((r, i) => expect(sameRule(r, want[i]!), `${state.family} ${hook} rule ${i + 1}: ${JSON.stringify(r)}`).toBe(true));
  }
}

export function describeNetfilterPortContract(name: string, factory: () => Promise<NetfilterPortFixture>): void {
  describe(`NetfilterPort contract: ${name}`, () => {
    let fx: NetfilterPortFixture;
    let port: NetfilterPort;
    beforeEach(async () => {
      fx = await factory();
      port = fx.port;
    });
    afterEach(async () => {
      await fx?.cleanup();
    });

    it("starts with nothing of Weft's", async () => {
      for (const f of ["v4", "v6"] as const) expect(await port.read(f)).toEqual({ family: f, chains: {}, strays: [] });
    });

    it("applies rulesets of both families, reads them back as data, and a second apply writes nothing", async () => {
      const first = await port.apply([full("v4"), full("v6")]);
      expect(first.map((c) => c.family)).toEqual(["v4", "v6"]);
      for (const c of first) expect(c.rewritten.length).toBeGreaterThan(0);
      expectRules(await port.read("v4"), full("v4"));
      expectRules(await port.read("v6"), full("v6"));
      expect((await port.read("v4")).strays).toEqual([]);
      const second = await port.apply([full("v4"), full("v6")]);
      expect(second.flatMap((c) => c.rewritten)).toEqual([]);
    });

    it("rewrites a changed ruleset and reports what was there before", async () => {
      await port.apply([full("v4")]);
      const [change] = await port.apply([full("v4", MOVED.v4)]);
      expect(change!.rewritten.length).toBeGreaterThan(0);
      expect(netsOf(change!.before).some((n) => n.equals(POD.v4))).toBe(true);
      expectRules(await port.read("v4"), full("v4", MOVED.v4));
      expect(netsOf(await port.read("v4")).some((n) => n.equals(POD.v4))).toBe(false);
    });

    it("a hook left out of the ruleset loses its chain; the other stays", async () => {
      await port.apply([full("v4")]);
      await port.apply([{ family: "v4", chains: { postrouting: masquerade("v4", POD.v4, false) } }]);
      expectRules(await port.read("v4"), { family: "v4", chains: { postrouting: masquerade("v4", POD.v4, false) } });
    });

    it("an empty ruleset removes the family's rules and leaves the other family alone", async () => {
      await port.apply([full("v4"), full("v6")]);
      const [change] = await port.apply([{ family: "v6", chains: {} }]);
      expect(change!.rewritten.length).toBeGreaterThan(0);
      expect((await port.read("v6")).chains).toEqual({});
      expectRules(await port.read("v4"), full("v4"));
    });

    it("remove takes everything Weft owns in both families and succeeds again when nothing is left", async () => {
      await port.apply([full("v4"), full("v6")]);
      expect((await port.remove()).length).toBeGreaterThan(0);
      for (const f of ["v4", "v6"] as const) expect((await port.read(f)).chains).toEqual({});
      expect(await port.remove()).toEqual([]);
    });

    it("fully-random masquerade round-trips when the tool supports it", async () => {
      const s = await port.supportsFullyRandom("v4");
      expect(typeof s.supported).toBe("boolean");
      if (!s.supported) return;
      await port.apply([full("v4", POD.v4, true)]);
      expectRules(await port.read("v4"), full("v4", POD.v4, true));
      const [again] = await port.apply([full("v4", POD.v4, false)]);
      expect(again!.rewritten.length).toBeGreaterThan(0);
      expectRules(await port.read("v4"), full("v4", POD.v4, false));
    });

    it("rejects a ruleset with a network of the other family as KERNEL_INVALID and changes nothing", async () => {
      await port.apply([full("v4")]);
      const bad: NetfilterRuleset = { family: "v4", chains: { forward: [{ src: { net: NET.v6, negate: false }, verdict: "accept" }] } };
      const err = await port.apply([full("v6"), bad]).catch((e: unknown) => e);
      expect(isWeftError(err, "KERNEL_INVALID")).toBe(true);
      expect((err as Error).message).toContain("2001:2::/48");
      expectRules(await port.read("v4"), full("v4"));
      expect((await port.read("v6")).chains).toEqual({});
    });
  });
}
