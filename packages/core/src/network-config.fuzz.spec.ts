/**
 * Properties of net-conf.json parsing (issue 15), on raw text through parseNetworkConfig, the entry both subnet
 * managers call with the text they read:
 *   - it never throws anything but a ConfigError, whose message is one bounded line, and never hangs;
 *   - an accepted config round-trips through formatNetworkConfig;
 *   - keys behave as Go's encoding/json (Flannel): case-insensitive, the last match in the text wins, null
 *     leaves a field as it was.
 */
import { fc, fuzz, hostileJsonText, hostileString } from "@weft/fuzz";
import { describe, expect, it } from "vitest";
import { ConfigError } from "./errors.js";
import { type NetworkConfig, formatNetworkConfig, parseNetworkConfig } from "./network-config.js";

const KEYS = ["Network", "SubnetLen", "SubnetMin", "SubnetMax", "EnableIPv4", "EnableIPv6", "IPv6Network", "IPv6SubnetLen", "IPv6SubnetMin", "IPv6SubnetMax", "EnableNFTables", "Backend"];

/** Parses, returning the config or the ConfigError; anything else thrown fails the property. */
function attempt(text: string, checkSubnets: boolean): NetworkConfig | ConfigError {
  try {
    return parseNetworkConfig(text, { checkSubnets });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw new Error(`threw ${String(err)} (${(err as Error)?.constructor?.name}), not a ConfigError`);
    expect(err.message).not.toMatch(/[\n\r\u001b]/);
    expect(err.message.length).toBeLessThan(700);
    return err;
  }
}

/** The parts of a config that matter (warnings and source aside), in comparable form. */
function project(c: NetworkConfig): unknown {
  const fam = (f: NetworkConfig["v4"]) => f && { network: f.network.toString(), len: f.subnetLen, min: f.subnetMin.toString(), max: f.subnetMax.toString() };
  return { v4on: c.enableIPv4, v6on: c.enableIPv6, v4: fam(c.v4), v6: fam(c.v6), nft: c.enableNFTables, type: c.backendType, backend: JSON.stringify(c.backend) };
}

// ------------------------------------------------------------------------------------------- arbitraries

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join("."));
const v4Net = fc.tuple(fc.constantFrom("198.18.0.0", "198.19.0.0", "10.244.0.0", "172.16.0.0"), fc.integer({ min: 8, max: 30 })).map(([a, p]) => `${a}/${p}`);
const anyV4Net = fc.oneof(v4Net, fc.tuple(ipv4, fc.integer({ min: 0, max: 33 })).map(([a, p]) => `${a}/${p}`));
const v6Net = fc.oneof(
  fc.tuple(fc.constantFrom("2001:2::", "fd00:10:244::", "2001:2:0:f000::"), fc.integer({ min: 40, max: 126 })).map(([a, p]) => `${a}/${p}`),
  fc.constantFrom("::ffff:198.19.0.0/112", "fe80::/64", "ff02::/16", "::/0", "::1/128", "2001:2::/129", "198.19.0.0/16"),
);
const subnetLen = fc.oneof(fc.constant(undefined), fc.constant(0), fc.integer({ min: 8, max: 32 }), fc.integer({ min: 40, max: 128 }), fc.constant(24.5), fc.constant("24"));
const backendType = fc.oneof({ weight: 5, arbitrary: fc.constantFrom("vxlan", "host-gw", "wireguard", "ipsec", "VXLAN") }, { weight: 1, arbitrary: fc.constantFrom("", 5, null) });
const backend = fc.oneof(
  { weight: 6, arbitrary: fc.record({ Type: backendType, VNI: fc.option(fc.integer({ min: -1, max: 70000 }), { nil: undefined }) }, { requiredKeys: ["Type"] }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.constant(undefined) },
);

/** Config objects that look valid most of the time (so the round trip has something to check). */
const configObject = fc.record(
  {
    Network: fc.oneof({ weight: 8, arbitrary: v4Net }, { weight: 1, arbitrary: anyV4Net }, { weight: 1, arbitrary: hostileString(20) }),
    SubnetLen: fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 2, arbitrary: subnetLen }),
    SubnetMin: fc.option(fc.oneof(ipv4, fc.constantFrom("198.19.1.0", "10.244.4.0")), { nil: undefined, freq: 4 }),
    SubnetMax: fc.option(fc.oneof(ipv4, fc.constantFrom("198.19.200.0", "10.244.250.0")), { nil: undefined, freq: 4 }),
    EnableIPv4: fc.constantFrom(undefined, undefined, true, false),
    EnableIPv6: fc.constantFrom(undefined, undefined, false, true),
    IPv6Network: fc.option(v6Net, { nil: undefined }),
    IPv6SubnetLen: fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: subnetLen }),
    EnableNFTables: fc.option(fc.boolean(), { nil: undefined }),
    Backend: backend,
  },
  { requiredKeys: [] },
);

/** A case variant of an ASCII key (random per letter), sometimes with Go's non-ASCII folds (ſ for s, K for k). */
const variantOf = (key: string) =>
  fc.array(fc.integer({ min: 0, max: 3 }), { minLength: key.length, maxLength: key.length }).map((picks) =>
    [...key]
      .map((ch, i) => {
        const p = picks[i]!;
        if (p === 3 && (ch === "s" || ch === "S")) return "\u017f";
        if (p === 3 && (ch === "k" || ch === "K")) return "\u212a";
        return p % 2 === 0 ? ch.toLowerCase() : ch.toUpperCase();
      })
      .join(""),
  );

describe("net-conf.json fuzz", () => {
  it("hostile text: only ConfigError, one bounded line, no hang", () => {
    fuzz("net-conf.json hostile text", fc.tuple(hostileJsonText(KEYS), fc.boolean()), ([text, check]) => {
      attempt(text, check);
    });
  }, 60_000);

  it("hostile values in every field: only ConfigError", () => {
    // Values as hostile as JSON text allows (deep nesting is hostile text's job: building 6,000-level objects
    // per case costs more than the parser does).
    const value = fc.oneof(
      { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
      { weight: 2, arbitrary: fc.oneof({ weight: 6, arbitrary: fc.string({ maxLength: 24, unit: "binary" }) }, { weight: 1, arbitrary: hostileString(64) }) },
      { weight: 1, arbitrary: fc.constantFrom(null, -0, 1e308, Number.MAX_SAFE_INTEGER + 2, 0.1, -1, 65536, 4294967296) },
      { weight: 1, arbitrary: fc.dictionary(fc.oneof(fc.constantFrom("Type", "type", "VNI", "MTU", "PSK", "psk"), hostileString(12)), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 6 }) },
    );
    const key = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...KEYS) }, { weight: 4, arbitrary: fc.string({ maxLength: 12, unit: "binary" }) }, { weight: 1, arbitrary: hostileString(12) });
    const obj = fc.dictionary(key, value, { maxKeys: 8 });
    fuzz("net-conf.json hostile values", fc.tuple(obj, fc.boolean()), ([o, check]) => {
      let text: string;
      try {
        text = JSON.stringify(o);
      } catch {
        return; // a value JSON.stringify cannot write (too deep) never reaches the parser as text
      }
      attempt(text, check);
    });
  }, 60_000);

  it("accepted configs round-trip through formatNetworkConfig", () => {
    let accepted = 0;
    fuzz("net-conf.json round trip", fc.tuple(configObject, fc.boolean()), ([o, check]) => {
      const c = attempt(JSON.stringify(o), check);
      if (c instanceof ConfigError) return;
      accepted++;
      const again = attempt(formatNetworkConfig(c), check);
      expect(again).not.toBeInstanceOf(ConfigError);
      expect(project(again as NetworkConfig)).toEqual(project(c));
    });
    expect(accepted).toBeGreaterThan(1500); // valid input is a good share of the cases
  }, 60_000);

  it("keys behave as Go's encoding/json: any case, the last match wins, null changes nothing", () => {
    // Per field, a list of (key variant, value) occurrences; the model is what Go would decode.
    const field = (key: string, value: fc.Arbitrary<unknown>) =>
      fc.array(fc.tuple(variantOf(key), fc.oneof({ weight: 4, arbitrary: value }, { weight: 1, arbitrary: fc.constant(null) })), { minLength: 0, maxLength: 3 }).map((occ) => ({ key, occ }));
    const fields = fc.tuple(
      field("Network", v4Net),
      field("SubnetLen", fc.integer({ min: 16, max: 30 })),
      field("EnableIPv6", fc.boolean()),
      field("IPv6Network", fc.constantFrom("2001:2::/48", "fd00:10:244::/56")),
      field("EnableNFTables", fc.boolean()),
      field("Backend", fc.record({ Type: fc.constantFrom("vxlan", "host-gw") })),
    );
    fuzz("net-conf.json Go key semantics", fc.tuple(fields, fc.boolean(), fc.context()), ([fs, check]) => {
      // Interleave the occurrences of all fields in a fixed but mixed order.
      const entries: Array<[string, unknown]> = [];
      for (let round = 0; round < 3; round++) for (const f of fs) if (f.occ[round]) entries.push(f.occ[round]!);
      const text = "{" + entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",") + "}";
      const model: Record<string, unknown> = {};
      for (const f of fs) {
        const nonNull = f.occ.filter(([, v]) => v !== null);
        if (nonNull.length > 0) model[f.key] = nonNull[nonNull.length - 1]![1];
        else if (f.occ.length > 0) model[f.key] = null;
      }
      const got = attempt(text, check);
      const want = attempt(JSON.stringify(model), check);
      if (want instanceof ConfigError) {
        expect(got).toBeInstanceOf(ConfigError);
        expect((got as ConfigError).message).toBe(want.message);
      } else {
        expect(got).not.toBeInstanceOf(ConfigError);
        expect(project(got as NetworkConfig)).toEqual(project(want));
      }
    });
  }, 60_000);
});
