import { ConfigError, clearRegisteredSecrets, redactCredentials } from "@weft/core";
import { afterEach, describe, expect, it } from "vitest";
import { MAX_ETCD_LEASE_TTL_SECONDS, checkLeaseTtl, parseEndpoint, parseEndpoints, redactEndpoint } from "./endpoints.js";

afterEach(() => clearRegisteredSecrets());

describe("redactEndpoint", () => {
  it("drops credentials with and without a scheme, whatever the password holds", () => {
    expect(redactEndpoint("https://weft:s3cret@etcd.example:2379")).toBe("https://etcd.example:2379");
    expect(redactEndpoint("weft:pw@198.18.0.5:2379")).toBe("198.18.0.5:2379");
    expect(redactEndpoint("http://weft:p@ss/w:rd@198.18.0.5:2379")).toBe("http://198.18.0.5:2379");
    expect(redactEndpoint("weft:p@ss/w@198.18.0.5:2379")).toBe("198.18.0.5:2379");
  });

  it("leaves values without credentials as they are", () => {
    for (const v of ["http://127.0.0.1:2379", "unix:///run/etcd.sock", "eth0", "weft.1@eth0", "/weft.io/network", ""]) expect(redactEndpoint(v)).toBe(v);
  });
});

describe("parseEndpoint", () => {
  it("takes credentials out of the URL the client dials", () => {
    expect(parseEndpoint("http://weft:p@ss/w%40rd@198.18.0.5:2379")).toEqual({ url: "http://198.18.0.5:2379", scheme: "http", username: "weft", password: "p@ss/w@rd" });
    expect(parseEndpoint("weft:pw@etcd.example:2379")).toEqual({ url: "http://etcd.example:2379", scheme: "http", username: "weft", password: "pw" });
    expect(parseEndpoint("https://[2001:2::5]:2379/")).toEqual({ url: "https://[2001:2::5]:2379", scheme: "https" });
    expect(parseEndpoint("unix:///tmp/weft/we-1:23790")).toEqual({ url: "unix:///tmp/weft/we-1:23790", scheme: "unix" });
    // The password is now a registered secret: no log line shows it even verbatim.
    expect(redactCredentials("p@ss/w@rd")).toBe("(hidden)");
  });

  it("refuses, with one line that shows no credentials, endpoints that can never work", () => {
    const cases: [string, RegExp][] = [
      ["ftp://etcd.example:2379", /has the unsupported scheme "ftp:\/\/": use http:\/\/, https:\/\/ or unix:\/\//],
      ["garbage", /is not host:port \(it has no port\)/],
      ["http://weft:pw@etcd.example", /"http:\/\/etcd.example" \(--etcd-endpoints\) is not host:port \(it has no port\)/],
      ["http://etcd.example:99999", /port 99999, outside 1-65535/],
      ["http://etc d:1", /whitespace or control characters/],
      ["http://weft@etcd:2379", /user name without a password/],
      ["unix://", /names no socket path/],
      ["mailto:x", /is not an etcd endpoint/],
    ];
    for (const [raw, msg] of cases) {
      let err: unknown;
      try {
        parseEndpoint(raw);
      } catch (e) {
        err = e;
      }
      expect(err, raw).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(msg);
      expect((err as Error).message).not.toContain("pw");
    }
    expect(() => parseEndpoint("ftp://" + "x".repeat(10_000))).toThrow(/^etcd options: etcd endpoint "ftp:\/\/x{60,80}…/);
  });
});

describe("parseEndpoints", () => {
  it("gives the one username/password for all endpoints", () => {
    const s = parseEndpoints(["http://weft:pw@198.18.0.5:2379", "http://198.18.0.6:2379", "http://weft:pw@198.18.0.7:2379"]);
    expect(s.endpoints.map((e) => e.url)).toEqual(["http://198.18.0.5:2379", "http://198.18.0.6:2379", "http://198.18.0.7:2379"]);
    expect([s.username, s.password]).toEqual(["weft", "pw"]);
  });

  it("refuses credentials that disagree, and mixed http/https", () => {
    expect(() => parseEndpoints(["http://a:pw1@h1:2379", "http://a:pw2@h2:2379"])).toThrow(/differ from another endpoint's/);
    expect(() => parseEndpoints(["http://a:pw1@h1:2379"], { username: "b", password: "x" })).toThrow(/differ from the etcd username\/password options/);
    expect(() => parseEndpoints(["http://h1:2379", "https://h2:2379"])).toThrow(/mix http:\/\/ and https:\/\//);
    expect(() => parseEndpoints([])).toThrow(/no etcd endpoints given/);
  });
});

describe("checkLeaseTtl", () => {
  it("accepts etcd's range and refuses beyond it with one line", () => {
    expect(() => checkLeaseTtl(86_400)).not.toThrow();
    expect(() => checkLeaseTtl(MAX_ETCD_LEASE_TTL_SECONDS)).not.toThrow();
    expect(() => checkLeaseTtl(MAX_ETCD_LEASE_TTL_SECONDS + 1, "--etcd-lease-ttl")).toThrow(
      /^etcd options: --etcd-lease-ttl 9000000001 is outside etcd's lease TTL range: use a whole number of seconds from 1 to 9000000000/,
    );
    expect(() => checkLeaseTtl(0)).toThrow(ConfigError);
  });
});
