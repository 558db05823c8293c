/**
 * Property-based tests of every other parser of tool output in packages/kernel (issue 15): `wg show dump`, VICI
 * messages (charon's answers; swanctl is not run, see ipsec/vici.ts), `ethtool --show-features`, `ip xfrm`,
 * iptables-save and `nft -j`. Hostile output gives values or the parser's typed error (KernelError, WeftError,
 * ViciFormatError), never a TypeError or RangeError, never a hang; well-formed output, printed the way the tool
 * prints it (by the adapter's own renderer where it has one), reads back as what was printed.
 */
import { IPNet, WeftError } from "@weft/core";
import { fc, fuzz, hostileJson, hostileJsonText, hostileString } from "@weft/fuzz";
import { describe, expect, it } from "vitest";
import { parseEthtoolFeatures } from "./ethtool/linux-ethtool.js";
import { ViciFormatError, type ViciMessage, decodeViciMessage, encodeViciMessage } from "./ipsec/vici.js";
import { iptablesRuleSpec, parseIptablesRule, parseIptablesSave } from "./netfilter/iptables.js";
import { type NftJson, nftRuleJson, parseNftRule, parseNftTable } from "./netfilter/nftables.js";
import type { NetfilterRule } from "./netfilter/port.js";
import { KernelError } from "./port.js";
import { type WgDump, parseWgDump } from "./wireguard/wg-dump.js";
import { parseXfrmPolicies, parseXfrmStates } from "./xfrm/linux-xfrm.js";

/**
 * An object with keys drawn from `key` (repeats: the last wins) and values from `value`. Not fc.dictionary: that
 * one costs milliseconds per value (its keys go through a unique-array search), 10,000 cases made it minutes.
 */
function objectOf<V>(key: fc.Arbitrary<string>, value: fc.Arbitrary<V>, options: { maxKeys?: number } = {}): fc.Arbitrary<Record<string, V>> {
  return fc.array(fc.tuple(key, value), { maxLength: options.maxKeys ?? 5 }).map((e) => Object.fromEntries(e) as Record<string, V>);
}
import type { XfrmPolicy, XfrmState } from "./xfrm/port.js";

/** Lines of text made of the tool's own words, separators and hostile pieces: close enough to real output to get past the first check. */
function textLike(words: readonly string[], sep: readonly string[]): fc.Arbitrary<string> {
  const token = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...words) }, { weight: 1, arbitrary: hostileString(12) }, { weight: 1, arbitrary: fc.nat().map(String) });
  const line = fc.array(fc.tuple(token, fc.constantFrom(...sep)), { maxLength: 10 }).map((ts) => ts.map(([t, s]) => t + s).join(""));
  return fc.oneof({ weight: 4, arbitrary: fc.array(line, { maxLength: 8 }).map((ls) => ls.join("\n")) }, { weight: 1, arbitrary: hostileString(300) });
}

/** Only the parser's typed error may escape `f`. */
function onlyTyped(f: () => unknown, typed: (err: unknown) => boolean): void {
  try {
    f();
  } catch (err) {
    if (!typed(err)) throw new Error(`unexpected ${String(err)}`);
  }
}

describe("wg show dump", () => {
  const key = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString("base64"));
  const v4 = fc.tuple(fc.nat(255), fc.nat(255)).map(([c, d]) => `198.18.${c}.${d}`);
  const dump: fc.Arbitrary<WgDump> = fc.record({
    publicKey: fc.option(key, { nil: undefined }),
    listenPort: fc.integer({ min: 0, max: 65535 }),
    peers: fc.uniqueArray(
      fc.record({
        publicKey: key,
        presharedKey: fc.option(key, { nil: undefined }),
        endpoint: fc.option(fc.tuple(v4, fc.integer({ min: 1, max: 65535 })).map(([a, p]) => `${a}:${p}`), { nil: undefined }),
        allowedIPs: fc.uniqueArray(fc.tuple(fc.nat(255), fc.integer({ min: 8, max: 32 })).map(([c, l]) => `198.19.${c}.0/${l}`), { maxLength: 3 }).map((a) => a.sort()),
        latestHandshake: fc.nat(2_000_000_000),
        persistentKeepalive: fc.nat(65535),
      }),
      { maxLength: 5, selector: (p) => p.publicKey },
    ),
  }).map((d) => JSON.parse(JSON.stringify(d)) as WgDump);

  /** What `wg show <dev> dump` prints for `d`. */
  function render(d: WgDump): string {
    const head = ["PRIVATE", d.publicKey ?? "(none)", String(d.listenPort), "off"].join("\t");
    const peers = d.peers.map((p) =>
      [p.publicKey, p.presharedKey ?? "(none)", p.endpoint ?? "(none)", p.allowedIPs.length ? p.allowedIPs.join(",") : "(none)", String(p.latestHandshake), "123", "456", p.persistentKeepalive ? String(p.persistentKeepalive) : "off"].join("\t"),
    );
    return [head, ...peers, ""].join("\n");
  }

  it("hostile output gives a dump or a KernelError; printed dumps read back", () => {
    fuzz("kernel: wg dump never throws but KernelError", textLike(["(none)", "off", "PK=", "198.18.0.1:51820", "198.19.0.0/24", "0", "25"], ["\t", "\t", ",", "\n", " ", ""]), (text) => {
      onlyTyped(() => parseWgDump(text), (e) => e instanceof KernelError);
    });
    fuzz("kernel: wg dump round-trip", dump, (d) => {
      expect(parseWgDump(render(d))).toEqual(d);
    });
  }, 240_000);
});

describe("VICI messages", () => {
  const name = fc.string({ maxLength: 12 }).filter((s) => Buffer.byteLength(s) <= 255);
  const value = fc.oneof(fc.string({ maxLength: 20 }), fc.string({ maxLength: 20, unit: "binary" }).map((s) => Buffer.from(s).toString("utf8")));
  const message: fc.Arbitrary<ViciMessage> = fc.letrec<{ msg: ViciMessage }>((tie) => ({
    msg: fc
      .array(fc.tuple(fc.oneof(name, fc.constantFrom("__proto__", "constructor", "toString")), fc.oneof({ weight: 3, arbitrary: value }, { weight: 1, arbitrary: fc.array(value, { maxLength: 3 }) }, { weight: 1, arbitrary: tie("msg") })), { maxLength: 4 })
      .map((entries) => {
        // A message as decode builds it: own properties, the last of a repeated key wins.
        const m: ViciMessage = {};
        for (const [k, v] of entries) Object.defineProperty(m, k, { value: v, enumerable: true, writable: true, configurable: true });
        return m;
      }),
  })).msg;

  it("any bytes decode to a message or a ViciFormatError; encoded messages decode to themselves", () => {
    const bytes = fc.oneof(
      { weight: 3, arbitrary: fc.uint8Array({ maxLength: 64 }) },
      // Bytes that start well: element types 1..6 with short lengths.
      { weight: 3, arbitrary: fc.array(fc.oneof(fc.integer({ min: 1, max: 6 }), fc.nat(8), fc.nat(255)), { maxLength: 64 }).map((a) => Uint8Array.from(a)) },
      { weight: 1, arbitrary: message.map((m) => encodeViciMessage(m)).chain((b) => fc.nat(b.length).map((n) => b.subarray(0, n))) },
    );
    fuzz("kernel: VICI decode never throws but ViciFormatError", bytes, (b) => {
      onlyTyped(() => decodeViciMessage(Buffer.from(b)), (e) => e instanceof ViciFormatError);
    });
    fuzz("kernel: VICI messages round-trip", message, (m) => {
      const back = decodeViciMessage(encodeViciMessage(m));
      expect(JSON.stringify(entriesDeep(back))).toBe(JSON.stringify(entriesDeep(m)));
      expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    });
  }, 240_000);
});

/** A message as nested entry lists: compares own keys such as `__proto__` too. */
function entriesDeep(m: ViciMessage): unknown {
  return Object.entries(m).map(([k, v]) => [k, typeof v === "string" || Array.isArray(v) ? v : entriesDeep(v as ViciMessage)]);
}

describe("ethtool --show-features", () => {
  const feature = fc.stringMatching(/^[a-z][a-z0-9-]{0,30}$/);
  it("hostile output gives a feature map; printed features read back", () => {
    fuzz("kernel: ethtool features never throw", textLike(["tx-checksumming", "on", "off", "[fixed]", "[requested on]", "Features for eth0"], [": ", "\t", " ", "\n", ""]), (text) => {
      expect(parseEthtoolFeatures(text)).toBeInstanceOf(Map);
    });
    fuzz("kernel: ethtool features round-trip", objectOf(feature, fc.record({ enabled: fc.boolean(), fixed: fc.boolean() }), { maxKeys: 8 }), (d) => {
      const text = ["Features for weft.1:", ...Object.entries(d).map(([k, f]) => `${k}: ${f.enabled ? "on" : "off"}${f.fixed ? " [fixed]" : ""}`)].join("\n");
      expect(Object.fromEntries(parseEthtoolFeatures(text))).toEqual(d);
    });
  }, 240_000);
});

describe("ip xfrm", () => {
  const addr = fc.tuple(fc.nat(255), fc.nat(255)).map(([c, d]) => `198.18.${c}.${d}`);
  const mark = fc.option(fc.record({ value: fc.nat(0xffff), mask: fc.nat(0xffff) }), { nil: undefined });
  const state: fc.Arbitrary<XfrmState> = fc
    .record({ src: addr, dst: addr, proto: fc.constantFrom("esp", "ah"), spi: fc.nat(0xffffffff), reqid: fc.nat(100000), mode: fc.constantFrom("tunnel", "transport"), mark, ifId: fc.option(fc.nat(0xffff), { nil: undefined }) })
    .map((s) => JSON.parse(JSON.stringify(s)) as XfrmState);
  const policy: fc.Arbitrary<XfrmPolicy> = fc
    .record({ src: addr.map((a) => `${a}/32`), dst: addr.map((a) => `${a}/32`), dir: fc.constantFrom("in", "out", "fwd"), index: fc.nat(1_000_000), ptype: fc.constantFrom("main", "sub"), reqids: fc.array(fc.nat(1000), { maxLength: 2 }), mark, ifId: fc.option(fc.nat(0xffff), { nil: undefined }) })
    .map((p) => JSON.parse(JSON.stringify(p)) as XfrmPolicy);
  const hex = (n: number) => `0x${n.toString(16).padStart(8, "0")}`;
  const renderState = (s: XfrmState) =>
    [`src ${s.src} dst ${s.dst}`, `\tproto ${s.proto} spi ${hex(s.spi)} reqid ${s.reqid} mode ${s.mode}`, "\treplay-window 0 flag af-unspec", ...(s.mark ? [`\tmark ${hex(s.mark.value)}/${hex(s.mark.mask)}`] : []), ...(s.ifId !== undefined ? [`\tif_id ${hex(s.ifId)}`] : [])].join("\n");
  const renderPolicy = (p: XfrmPolicy) =>
    [
      `src ${p.src} dst ${p.dst} uid 0`,
      `\tdir ${p.dir} action allow index ${p.index} priority 375423 ptype ${p.ptype} share any flag  (0x00000000)`,
      ...(p.mark ? [`\tmark ${hex(p.mark.value)}/${hex(p.mark.mask)}`] : []),
      ...p.reqids.flatMap((r) => [`\ttmpl src 198.18.0.1 dst 198.18.0.2`, `\t\tproto esp spi 0x00000000(0) reqid ${r}(0x${r.toString(16).padStart(8, "0")}) mode tunnel`]),
      ...(p.ifId !== undefined ? [`\tif_id ${hex(p.ifId)}`] : []),
    ].join("\n");

  it("hostile output gives lists; printed states and policies read back", () => {
    const words = ["src", "dst", "proto", "esp", "spi", "0x00000001", "reqid", "1", "mode", "tunnel", "dir", "out", "index", "8", "ptype", "main", "mark", "0x5/0xff", "if_id", "tmpl"];
    fuzz("kernel: ip xfrm never throws", textLike(words, [" ", "\n\t", "\n", "\t", "(0)", ""]), (text) => {
      expect(Array.isArray(parseXfrmStates(text))).toBe(true);
      expect(Array.isArray(parseXfrmPolicies(text))).toBe(true);
    });
    fuzz("kernel: ip xfrm states and policies round-trip", fc.tuple(fc.array(state, { maxLength: 4 }), fc.array(policy, { maxLength: 4 })), ([states, policies]) => {
      expect(parseXfrmStates(states.map(renderState).join("\n"))).toEqual(states);
      expect(parseXfrmPolicies(policies.map(renderPolicy).join("\n"))).toEqual(policies);
    });
  }, 240_000);
});

const netMatch = fc.option(
  fc.record({ ip: fc.tuple(fc.nat(255), fc.nat(255)).map(([c, d]) => `198.19.${c}.${d}`), len: fc.integer({ min: 8, max: 32 }), negate: fc.boolean() }).map((m) => ({ net: IPNet.parse(`${m.ip}/${m.len}`), negate: m.negate })),
  { nil: undefined },
);
const rule: fc.Arbitrary<NetfilterRule> = fc
  .record({ markBits: fc.option(fc.integer({ min: 1, max: 0xffffffff }), { nil: undefined }), src: netMatch, dst: netMatch, verdict: fc.constantFrom("return", "accept", "masquerade"), fullyRandom: fc.boolean() })
  .map((r) => ({
    ...(r.markBits !== undefined ? { markBits: r.markBits } : {}),
    ...(r.src ? { src: { net: IPNet.of(r.src.net.first, r.src.net.prefix), negate: r.src.negate } } : {}),
    ...(r.dst ? { dst: { net: IPNet.of(r.dst.net.first, r.dst.net.prefix), negate: r.dst.negate } } : {}),
    verdict: r.verdict,
    ...(r.verdict === "masquerade" ? { fullyRandom: r.fullyRandom } : {}),
  }) as NetfilterRule);

describe("iptables-save", () => {
  it("hostile output gives tables and rules; rules printed as iptables-save prints them read back", () => {
    const words = ["*nat", "*filter", "COMMIT", ":WEFT-POSTRTG", "-", "ACCEPT", "[0:0]", "-A", "WEFT-POSTRTG", "-s", "198.19.0.0/16", "!", "-d", "-m", "mark", "--mark", "0x4000/0x4000", "comment", "--comment", '"weft masq"', "-j", "MASQUERADE", "--random-fully", "RETURN"];
    fuzz("kernel: iptables-save never throws", textLike(words, [" ", "\n", ""]), (text) => {
      const t = parseIptablesSave(text, "nat");
      for (const r of t.rules) parseIptablesRule(r.spec, "weft masq");
    });
    fuzz("kernel: iptables rules round-trip", fc.array(rule, { maxLength: 5 }), (rules) => {
      const text = ["*nat", ":POSTROUTING ACCEPT [0:0]", ":WEFT-POSTRTG - [0:0]", ...rules.map((r) => `-A WEFT-POSTRTG ${iptablesRuleSpec(r, "weft masq")}`), "COMMIT", ""].join("\n");
      const saved = parseIptablesSave(text, "nat");
      expect(saved.rules.map((r) => parseIptablesRule(r.spec, "weft masq"))).toEqual(rules);
    });
  }, 240_000);
});

describe("nft -j", () => {
  it("hostile output gives a table or a WeftError; rule JSON as nft prints it reads back", () => {
    // Small JSON values (hostileJsonText below brings the deep and odd text), plus one expr nested 3,000 levels.
    let deep: unknown = 1;
    for (let i = 0; i < 3000; i++) deep = { match: { op: "==", left: deep, right: 1 } };
    const small = fc.oneof({ weight: 30, arbitrary: fc.jsonValue({ maxDepth: 2 }) }, { weight: 1, arbitrary: fc.constant(deep) });
    const exprLike: fc.Arbitrary<unknown> = fc.oneof(
      small,
      fc.array(fc.oneof(small, objectOf(fc.constantFrom("match", "masquerade", "return", "accept", "counter"), fc.oneof(small, objectOf(fc.constantFrom("op", "left", "right", "flags"), small)))), { maxLength: 3 }),
    );
    const doc = fc.oneof(
      hostileJsonText(["nftables", "table", "chain", "rule", "family", "name", "expr"]),
      fc.array(objectOf(fc.constantFrom("table", "chain", "rule", "metainfo"), fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.record({ family: fc.constantFrom("ip", "ip6", "inet"), table: fc.constantFrom("weft-ipv4", "x"), name: fc.constantFrom("weft-ipv4", "postrouting"), chain: fc.constantFrom("postrouting", "forward"), expr: exprLike })))).map((items) => {
        try {
          return JSON.stringify({ nftables: items });
        } catch {
          return "{}"; // a value nested past JSON.stringify's stack
        }
      }),
    );
    fuzz("kernel: nft -j never throws but WeftError", doc, (text) => {
      onlyTyped(() => {
        const t = parseNftTable(text, "ip", "weft-ipv4");
        for (const c of t?.chains.values() ?? []) for (const r of c.rules) parseNftRule(r, "ip");
      }, (e) => e instanceof WeftError);
    });
    fuzz("kernel: nft rules round-trip", fc.tuple(rule, fc.constantFrom("ip" as const)), ([r, fam]) => {
      const printed = JSON.parse(JSON.stringify(nftRuleJson(r, fam))) as NftJson[];
      expect(parseNftRule(printed, fam)).toEqual(r);
    });
  }, 240_000);
});
