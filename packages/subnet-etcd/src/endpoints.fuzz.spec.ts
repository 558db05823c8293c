/**
 * Properties of the etcd endpoint/credential parser and of credential redaction (issue 15): any input either
 * parses or is refused with a ConfigError (never another throw, never a hang); accepted endpoints round-trip
 * through their URL; and no password, whatever characters it holds, survives redaction or reaches an error text.
 */
import { ConfigError, clearRegisteredSecrets, redactCredentials } from "@weft/core";
import { fc, fuzz, hostileString } from "@weft/fuzz";
import { afterEach, describe, expect, it } from "vitest";
import { parseEndpoint, redactEndpoint } from "./endpoints.js";

afterEach(() => clearRegisteredSecrets());

const host = fc.oneof(
  fc.constantFrom("127.0.0.1", "198.18.0.5", "etcd", "etcd-0.etcd.kube-system.svc", "[2001:2::5]", "[::1]"),
  fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 })).map(([a, b]) => `198.18.${a}.${b}`),
);
const port = fc.integer({ min: 1, max: 65_535 });
// Passwords with every printable character an operator might type, '@', '/', ':' and '%' included, but no
// whitespace or control characters (an endpoint holding those is refused before it is used).
const password = fc.string({ minLength: 1, maxLength: 24, unit: fc.constantFrom(..."abcXYZ019@/:%#?&=+!$'\"(),;[]{}|\\^`~*-._é€") });
const user = fc.string({ minLength: 1, maxLength: 8, unit: fc.constantFrom(..."abcxyz019-_.") });
const scheme = fc.constantFrom("http://", "https://", "HTTP://", "");

/** A valid-looking endpoint, with what it must parse to. */
// Without a scheme, `user://x@host` reads as the scheme "user": an operator who wants a password starting with
// "//" must write the scheme, so such cases are not valid scheme-less endpoints.
const validEndpoint = fc.record({ scheme, user, password, host, port, creds: fc.boolean(), slash: fc.boolean() }).filter((v) => v.scheme !== "" || !v.creds || !v.password.startsWith("//")).map((v) => {
  const userinfo = v.creds ? `${v.user}:${v.password}@` : "";
  const s = (v.scheme || "http://").toLowerCase();
  return { ...v, raw: `${v.scheme}${userinfo}${v.host}:${v.port}${v.slash ? "/" : ""}`, url: `${s}${v.host}:${v.port}` };
});

/** Parses or refuses with ConfigError; anything else fails the property. */
function parseOrRefuse(raw: string): ReturnType<typeof parseEndpoint> | ConfigError {
  try {
    return parseEndpoint(raw);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw new Error(`parseEndpoint(${JSON.stringify(raw).slice(0, 200)}) threw ${String(e)}`);
    return e;
  }
}

describe("etcd endpoint parser (fuzz)", () => {
  it("throws nothing but ConfigError, and a refusal is one bounded line", () => {
    const arb = fc.oneof(
      { weight: 2, arbitrary: hostileString(96) },
      { weight: 2, arbitrary: validEndpoint.map((e) => e.raw) },
      // Valid endpoints with one character changed, inserted or cut.
      { weight: 2, arbitrary: fc.tuple(validEndpoint, fc.nat(), fc.string({ maxLength: 2, unit: "binary" })).map(([e, i, s]) => e.raw.slice(0, i % (e.raw.length + 1)) + s + e.raw.slice((i % (e.raw.length + 1)) + 1)) },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom("ftp", "unix", "unixs", "dns", "grpc", "mailto", "h"), hostileString(32)).map(([s, r]) => `${s}://${r}`) },
    );
    fuzz("subnet-etcd: parseEndpoint throws only ConfigError", arb, (raw) => {
      const r = parseOrRefuse(raw);
      if (r instanceof ConfigError) {
        expect(r.message).not.toContain("\n");
        expect(r.message.length).toBeLessThan(400);
      } else {
        // What the client dials never holds credentials, and parses back to itself.
        if (r.scheme !== "unix") expect(r.url).not.toContain("@");
        expect(parseEndpoint(r.url).url).toBe(r.url);
      }
    });
  });

  it("round-trips valid endpoints and takes their credentials out whole", () => {
    fuzz("subnet-etcd: parseEndpoint round-trips and extracts credentials", validEndpoint, (e) => {
      const r = parseEndpoint(e.raw);
      expect(r.url).toBe(e.url);
      expect(parseEndpoint(r.url)).toEqual({ url: r.url, scheme: r.scheme });
      if (e.creds) {
        expect(r.username).toBe(decodeURIComponentSafe(e.user));
        expect(r.password).toBe(decodeURIComponentSafe(e.password));
      } else {
        expect(r.username).toBeUndefined();
      }
    });
  });

  it("never shows the password, for any password, in redacted output or an error", () => {
    const arb = fc.record({ e: validEndpoint, badPort: fc.boolean() });
    fuzz("subnet-etcd: no password survives redaction", arb, ({ e, badPort }) => {
      clearRegisteredSecrets();
      const raw = `${e.scheme}${e.user}:${e.password}@${e.host}${badPort ? "" : `:${e.port}`}`;
      const clean = `${e.scheme}${e.host}${badPort ? "" : `:${e.port}`}`;
      // Structural: the credential part goes whole, exactly.
      expect(redactEndpoint(raw)).toBe(clean);
      const r = parseOrRefuse(raw);
      if (r instanceof ConfigError) expect(r.message).not.toContain(`${e.user}:${e.password}`);
      // A third-party error text quoting the endpoint, as grpc-js did before the credentials left the URL.
      const text = `14 UNAVAILABLE: Name resolution failed for target dns:${raw} (see ${raw})`;
      const out = redactCredentials(text);
      expect(out).not.toContain(`${e.user}:${e.password}@`);
      if (!(r instanceof ConfigError) && e.password.length >= 3 && !`${text}`.replaceAll(`${e.user}:${e.password}@`, "").includes(e.password)) {
        expect(out).not.toContain(e.password);
      }
    });
  });
});

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
