/**
 * Properties of each built-in backend's config section (issue 15), through the path weftd takes: net-conf.json
 * text -> parseNetworkConfig -> module.configSchema.parse(config.backend, "<source>: Backend").
 *   - only a WeftError (ConfigError) is thrown, one bounded line without control characters or the PSK;
 *   - no hang;
 *   - keys behave as Go's encoding/json (Flannel): any case, the last match in the text wins, null changes
 *     nothing. (Backend configs have no formatter; the round trip is net-conf.json's, in core.)
 */
import "reflect-metadata";
import { type BackendModule, isWeftError, parseNetworkConfig } from "@weft/core";
import { fc, fuzz, hostileJsonText, hostileString } from "@weft/fuzz";
import { describe, expect, it } from "vitest";
import { BUILTIN_BACKENDS } from "./builtins.js";

const PSK = "WPAaVyQ7fIPA7S6xWvpfi+lzLcVnCODOQnVlKuS0o7c=";
const WG_PSK = PSK;

const KEYS: Record<string, readonly string[]> = {
  vxlan: ["Type", "VNI", "Port", "MTU", "GBP", "Learning", "DirectRouting", "DisableTxChecksumOffload"],
  "host-gw": ["Type"],
  wireguard: ["Type", "ListenPort", "ListenPortV6", "MTU", "PSK", "PersistentKeepaliveInterval", "Mode"],
  ipsec: ["Type", "PSK", "PSKFile", "UDPEncap", "ESPProposal", "Mode"],
};

/** Runs weftd's path; returns the parsed config (as JSON text) or the error; anything but a WeftError fails. */
function attempt(module: BackendModule, text: string): { ok: string } | { err: { code: string; path: string } } {
  try {
    const config = parseNetworkConfig(text, { checkSubnets: true });
    const parsed = module.configSchema.parse(config.backend, `${config.source}: Backend`) as Record<string, unknown>;
    const { warnings: _warnings, ...rest } = parsed; // warnings name keys as written; the values are what count
    return { ok: JSON.stringify(rest) };
  } catch (err) {
    if (!isWeftError(err)) throw new Error(`threw ${String(err)} (${(err as Error)?.constructor?.name}), not a WeftError`);
    expect(err.message).not.toMatch(/[\n\r\u001b\u0000]/);
    expect(err.message.length).toBeLessThan(700);
    expect(err.message).not.toContain(PSK.slice(0, 12));
    return { err: { code: err.code, path: (err as { path?: string }).path ?? "" } };
  }
}

const wrap = (type: string, section: string) => `{"Network":"198.19.0.0/16","Backend":${section.replace(/^\{/, `{"Type":${JSON.stringify(type)},`).replace(/,}$/, "}")}}`;

const sectionValue = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(1, 0, 4789, 51820, 1450, 9000, 25, -1, 70000, 1.5, true, false, "separate", "auto", "kernel", "aes256-sha256", "", "x") },
  { weight: 1, arbitrary: hostileString(40) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
);

/** A value for `key`: the PSK (valid, or a near miss that is just as secret) only under PSK, where it is never echoed. */
const valueOf = (key: string): fc.Arbitrary<unknown> =>
  key.toLowerCase() === "psk" ? fc.oneof(fc.constantFrom(PSK, `${PSK}!`, ` ${PSK}x`, PSK.slice(0, 40)), sectionValue) : sectionValue;

describe.each(BUILTIN_BACKENDS.map((m) => [m.type, m] as const))("Backend section fuzz: %s", (type, module) => {
  const keys = KEYS[type] ?? ["Type"];

  it("hostile section text: only WeftError, one bounded line, never the PSK", () => {
    fuzz(`backend ${type} hostile section`, hostileJsonText(keys), (section) => {
      attempt(module, wrap(type, section.startsWith("{") ? section : `{"X":${JSON.stringify(section)}}`));
      attempt(module, `{"Network":"198.19.0.0/16","Backend":${section}}`);
    });
  }, 60_000);

  it("hostile values of every key: only WeftError", () => {
    const entry = fc.oneof(fc.constantFrom(...keys), hostileString(12)).chain((k) => fc.tuple(fc.constant(k), valueOf(k)));
    fuzz(`backend ${type} hostile values`, fc.array(entry, { maxLength: 6 }), (entries) => {
      const o = Object.fromEntries(entries.filter(([k]) => k !== "__proto__"));
      attempt(module, `{"Network":"198.19.0.0/16","Backend":${JSON.stringify({ ...o, Type: type })}}`);
    });
  }, 60_000);

  it("keys behave as Go's encoding/json: any case, the last match wins, null changes nothing", () => {
    const variant = (key: string) =>
      fc.array(fc.boolean(), { minLength: key.length, maxLength: key.length }).map((up) => [...key].map((c, i) => (up[i] ? c.toUpperCase() : c.toLowerCase())).join(""));
    const occurrences = fc.array(
      fc.constantFrom(...(keys.length > 1 ? keys.filter((k) => k !== "Type") : ["DirectRouting"])).chain((k) => fc.tuple(fc.constant(k), variant(k), fc.oneof({ weight: 4, arbitrary: valueOf(k) }, { weight: 1, arbitrary: fc.constant(null) }))),
      { maxLength: 6 },
    );
    fuzz(`backend ${type} Go key semantics`, occurrences, (occ) => {
      const text = `{"Network":"198.19.0.0/16","Backend":{"Type":${JSON.stringify(type)}${occ.map(([, v, val]) => `,${JSON.stringify(v)}:${JSON.stringify(val)}`).join("")}}}`;
      const model: Record<string, unknown> = { Type: type };
      for (const [k, , val] of occ) if (val !== null || !(k in model)) model[k] = val;
      const got = attempt(module, text);
      const want = attempt(module, `{"Network":"198.19.0.0/16","Backend":${JSON.stringify(model)}}`);
      if ("err" in want) expect("err" in got ? got.err.code : got).toBe(want.err.code);
      else expect(got).toEqual(want);
    });
  }, 60_000);
});

describe("issue 15 #11: duplicate PSK keys (Flannel takes the last)", () => {
  it('{"PSK":"","psk":"<key>"} uses the key, for wireguard and ipsec', () => {
    const IPSEC_PSK = "a".repeat(96);
    for (const type of ["wireguard", "ipsec"]) {
      const module = BUILTIN_BACKENDS.find((m) => m.type === type)!;
      const PSK = type === "ipsec" ? IPSEC_PSK : WG_PSK;
      const config = parseNetworkConfig(`{"Network":"198.19.0.0/16","Backend":{"Type":"${type}","PSK":"","psk":"${PSK}"}}`);
      const parsed = module.configSchema.parse(config.backend, "net-conf.json: Backend") as { psk?: string };
      expect(parsed.psk, type).toBe(PSK);
      const reversed = parseNetworkConfig(`{"Network":"198.19.0.0/16","Backend":{"Type":"${type}","psk":"${PSK}","PSK":""}}`);
      // The last key is the empty one: no PSK (ipsec requires one, so that is its one-line error).
      if (type === "ipsec") expect(() => module.configSchema.parse(reversed.backend, "net-conf.json: Backend")).toThrow(/Backend\.PSK is required/);
      else expect((module.configSchema.parse(reversed.backend, "net-conf.json: Backend") as { psk?: string }).psk, type).toBeUndefined();
    }
  });
});
