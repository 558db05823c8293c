/**
 * Properties of weftd's flags and WEFTD_* environment (issue 15): parsing never throws anything but a
 * WeftError (CONFIG_INVALID, one bounded line, no control characters, never a secret), never hangs, and
 * accepted flags round-trip through flagsToArgv.
 */
import { isWeftError } from "@weft/core";
import { fc, fuzz, hostileString } from "@weft/fuzz";
import { describe, expect, it } from "vitest";
import { FLAG_DEFS, type Flags, envName, flagsToArgv, parseFlags } from "./flags.js";

const NAMES = Object.keys(FLAG_DEFS) as Array<keyof typeof FLAG_DEFS>;
const SECRET = "s3cr3t-Pw";

function attempt(argv: readonly string[], env: Record<string, string> = {}): Flags | Error {
  try {
    return parseFlags(argv, env);
  } catch (err) {
    if (!isWeftError(err, "CONFIG_INVALID")) throw new Error(`threw ${String(err)}, not a CONFIG_INVALID WeftError`);
    expect(err.message).not.toMatch(/[\n\r\u001b\u0000]/);
    expect(err.message.length).toBeLessThan(400);
    expect(err.message).not.toContain(SECRET);
    return err;
  }
}

/** A plausible value for a flag, by kind and name; sometimes hostile. */
function valueFor(name: string): fc.Arbitrary<string> {
  const def = (FLAG_DEFS as Record<string, { kind: string; min?: number; max?: number }>)[name]!;
  const plain = fc.string({ minLength: 1, maxLength: 16 }).filter((s) => !s.includes(",") && s.trim() === s);
  let good: fc.Arbitrary<string>;
  if (def.kind === "bool") good = fc.constantFrom("true", "false", "1", "0", "yes", "no", "TRUE");
  else if (def.kind === "int") good = fc.integer({ min: def.min ?? -5, max: def.max ?? 100_000 }).map(String);
  else if (name === "healthz-ip") good = fc.constantFrom("127.0.0.1", "0.0.0.0", "::", "::1", "198.18.0.1");
  else if (name === "public-ip") good = fc.constantFrom("198.18.0.1", "198.19.3.4");
  else if (name === "public-ipv6") good = fc.constantFrom("2001:2::1", "2001:2:0:1::9");
  else if (name === "log-level") good = fc.constantFrom("debug", "info", "warn", "error");
  else if (name === "cni-socket") good = fc.constantFrom("off", "/run/weft/cni.sock", "/tmp/x.sock");
  else if (name === "etcd-password") good = fc.constant(SECRET);
  else if (name === "etcd-certfile" || name === "etcd-keyfile") good = fc.constant("");
  else if (def.kind === "commaList") good = fc.array(plain, { minLength: 1, maxLength: 3 }).map((xs) => xs.join(","));
  else good = plain;
  return fc.oneof({ weight: 5, arbitrary: good }, { weight: 1, arbitrary: hostileString(64) });
}

const flagArg = fc.constantFrom(...NAMES).chain((name) => valueFor(name).map((v) => `--${name}=${v}`));
const argv = fc.array(fc.oneof({ weight: 8, arbitrary: flagArg }, { weight: 1, arbitrary: hostileString(40) }, { weight: 1, arbitrary: fc.constantFrom("--iface", "-v", "--help", "--", "-", "--=x") }), { maxLength: 8 });
const env = fc.dictionary(
  fc.oneof(fc.constantFrom(...NAMES.map((n) => envName(n))), hostileString(12)),
  fc.oneof(fc.constantFrom("true", "1", "5", "198.18.0.1", "debug"), hostileString(40)),
  { maxKeys: 5 },
);

describe("weftd flags fuzz", () => {
  it("argv and WEFTD_* environment: only CONFIG_INVALID, one bounded line, never the password", () => {
    fuzz("weftd flags and environment", fc.tuple(argv, env), ([a, e]) => {
      attempt(a, { ...e, WEFTD_ETCD_PASSWORD: SECRET });
    });
  }, 60_000);

  it("accepted flags round-trip through flagsToArgv", () => {
    let accepted = 0;
    fuzz("weftd flags round trip", argv, (a) => {
      const flags = attempt(a);
      if (flags instanceof Error) return;
      accepted++;
      const again = attempt(flagsToArgv(flags));
      expect(again).not.toBeInstanceOf(Error);
      expect(again).toEqual(flags);
    });
    expect(accepted).toBeGreaterThan(1000);
  }, 60_000);
});
