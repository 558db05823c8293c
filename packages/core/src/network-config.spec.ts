import { describe, expect, it } from "vitest";
import { ConfigError } from "./errors.js";
import { parseNetworkConfig, showValue } from "./network-config.js";

const parse = (o: unknown, checkSubnets = true) => parseNetworkConfig(typeof o === "string" ? o : JSON.stringify(o), { checkSubnets });
const errorOf = (o: unknown, checkSubnets = true): ConfigError => {
  try {
    parse(o, checkSubnets);
  } catch (e) {
    return e as ConfigError;
  }
  throw new Error("expected a ConfigError");
};

describe("parseNetworkConfig (Flannel §2)", () => {
  it("derives SubnetLen 24, SubnetMin and SubnetMax for a /16 (Flannel's unit test values)", () => {
    const c = parse({ Network: "10.3.0.0/16", Backend: { Type: "vxlan" } });
    expect(c.v4?.subnetLen).toBe(24);
    expect(c.v4?.subnetMin.toString()).toBe("10.3.1.0");
    expect(c.v4?.subnetMax.toString()).toBe("10.3.255.0");
    expect(c.enableIPv4).toBe(true);
    expect(c.enableIPv6).toBe(false);
    expect(c.backendType).toBe("vxlan");
  });

  it("derives prefix + 2 for networks smaller than /22", () => {
    const c = parse({ Network: "198.19.0.0/24", Backend: { Type: "host-gw" } });
    expect(c.v4?.subnetLen).toBe(26);
    expect(c.v4?.subnetMin.toString()).toBe("198.19.0.64");
    expect(c.v4?.subnetMax.toString()).toBe("198.19.0.192");
  });

  it("derives IPv6 defaults (fc00::/48 gives /64, min fc00:0:0:1::, max fc00:0:0:ffff::)", () => {
    const c = parse({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fc00::/48", Backend: { Type: "vxlan" } });
    expect(c.v4).toBeUndefined();
    expect(c.v6?.subnetLen).toBe(64);
    expect(c.v6?.subnetMin.toString()).toBe("fc00:0:0:1::");
    expect(c.v6?.subnetMax.toString()).toBe("fc00:0:0:ffff::");
  });

  it("matches keys case-insensitively and keeps the Backend section opaque", () => {
    const c = parse({ network: "198.19.0.0/16", SUBNETLEN: 25, backend: { type: "VXLAN", vni: 7, Port: 4789 } });
    expect(c.v4?.network.toString()).toBe("198.19.0.0/16");
    expect(c.v4?.subnetLen).toBe(25);
    expect(c.backendType).toBe("VXLAN");
    expect(c.backend).toEqual({ type: "VXLAN", vni: 7, Port: 4789 });
  });

  it("prefers the exact-case key over a case-insensitive one", () => {
    const c = parse({ network: "198.18.0.0/16", Network: "198.19.0.0/16", Backend: { Type: "vxlan" } });
    expect(c.v4?.network.toString()).toBe("198.19.0.0/16");
  });

  it("names path, value and rule for SubnetLen out of range", () => {
    const e = errorOf({ Network: "198.19.0.0/16", SubnetLen: 31, Backend: { Type: "vxlan" } });
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.path).toBe("SubnetLen");
    expect(e.message).toBe("net-conf.json: SubnetLen 31 is out of range: must be between 18 (Network /16 + 2) and 30");
    expect(errorOf({ Network: "198.19.0.0/16", SubnetLen: 17, Backend: { Type: "vxlan" } }).path).toBe("SubnetLen");
  });

  it("skips subnet range checks in kube mode (podCIDR is the subnet)", () => {
    const c = parse({ Network: "198.19.0.0/16", SubnetLen: 31, Backend: { Type: "vxlan" } }, false);
    expect(c.v4?.subnetLen).toBe(31);
  });

  it("rejects text that is not JSON, non-objects, bad CIDRs and wrong types with one line each", () => {
    expect(errorOf("{not json").message).toMatch(/^net-conf\.json: not valid JSON .*: fix the syntax$/);
    expect(errorOf("[1]").message).toMatch(/must be a JSON object/);
    const bad = errorOf({ Network: "198.19.0.0/33", Backend: { Type: "vxlan" } });
    expect(bad.path).toBe("Network");
    expect(bad.message).toContain('"198.19.0.0/33" is not an IPv4 CIDR');
    expect(errorOf({ Network: "2001:2::/48", Backend: { Type: "vxlan" } }).message).toContain("is not an IPv4 CIDR");
    expect(errorOf({ Network: 5, Backend: { Type: "vxlan" } }).message).toContain("must be a string");
    expect(errorOf({ Network: "198.19.0.0/16", EnableIPv6: "yes", Backend: { Type: "vxlan" } }).path).toBe("EnableIPv6");
    expect(errorOf({ Network: "198.19.0.0/16", SubnetLen: 24.5, Backend: { Type: "vxlan" } }).path).toBe("SubnetLen");
  });

  it("requires at least one family and the network of each enabled family", () => {
    expect(errorOf({ EnableIPv4: false, Backend: { Type: "vxlan" } }).message).toContain("enable at least one address family");
    expect(errorOf({ Backend: { Type: "vxlan" } }).path).toBe("Network");
    const e = errorOf({ Network: "198.19.0.0/16", EnableIPv6: true, Backend: { Type: "vxlan" } });
    expect(e.path).toBe("IPv6Network");
    expect(e.message).toContain("EnableIPv6 is true");
  });

  it("refuses networks smaller than /28 (/124 for IPv6)", () => {
    expect(errorOf({ Network: "198.19.0.0/29", Backend: { Type: "vxlan" } }).message).toContain("minimum useful network prefix is /28");
    expect(errorOf({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "2001:2::/125", Backend: { Type: "vxlan" } }).message).toContain("/124");
  });

  it("checks SubnetMin/SubnetMax are inside the network, aligned and ordered", () => {
    expect(errorOf({ Network: "198.19.0.0/16", SubnetMin: "198.18.1.0", Backend: { Type: "vxlan" } }).message).toContain("outside Network 198.19.0.0/16");
    expect(errorOf({ Network: "198.19.0.0/16", SubnetMax: "198.19.1.7", Backend: { Type: "vxlan" } }).message).toContain("not aligned");
    expect(errorOf({ Network: "198.19.0.0/16", SubnetMin: "198.19.9.0", SubnetMax: "198.19.2.0", Backend: { Type: "vxlan" } }).message).toContain(
      "the range is empty",
    );
    const c = parse({ Network: "198.19.0.0/16", SubnetMin: "198.19.10.0", SubnetMax: "198.19.20.0", Backend: { Type: "vxlan" } });
    expect(c.v4?.subnetMin.toString()).toBe("198.19.10.0");
  });

  it("needs Backend.Type when a Backend section exists; defaults a missing section to vxlan with a warning", () => {
    expect(errorOf({ Network: "198.19.0.0/16", Backend: {} }).path).toBe("Backend.Type");
    expect(errorOf({ Network: "198.19.0.0/16", Backend: { Type: 3 } }).path).toBe("Backend.Type");
    const c = parse({ Network: "198.19.0.0/16" });
    expect(c.backendType).toBe("vxlan");
    expect(c.warnings.join("\n")).toContain("no Backend section");
  });

  it("warns about unknown keys and host bits, and reads dual-stack with EnableNFTables", () => {
    const c = parse({
      Network: "198.19.1.0/16",
      EnableIPv6: true,
      IPv6Network: "2001:2::/48",
      EnableNFTables: true,
      Netwrok: "x",
      Backend: { Type: "host-gw" },
    });
    expect(c.v4?.network.toString()).toBe("198.19.0.0/16");
    expect(c.v6?.network.toString()).toBe("2001:2::/48");
    expect(c.enableNFTables).toBe(true);
    expect(c.warnings.some((w) => w.includes('unknown key "Netwrok"'))).toBe(true);
    expect(c.warnings.some((w) => w.includes("host bits"))).toBe(true);
  });

  it("uses the given source name in errors", () => {
    try {
      parseNetworkConfig("{}", { source: "etcd /weft.io/network/config" });
      expect.unreachable();
    } catch (e) {
      expect((e as Error).message.startsWith("etcd /weft.io/network/config: ")).toBe(true);
    }
  });
});

describe("config source for backend schemas", () => {
  it("carries the source, which backend schemas get back through splitSchemaPath", async () => {
    const { splitSchemaPath } = await import("./backend.js");
    const c = parseNetworkConfig(JSON.stringify({ Network: "198.19.0.0/16" }), { source: "etcd /weft.io/network/config" });
    expect(c.source).toBe("etcd /weft.io/network/config");
    expect(splitSchemaPath(`${c.source}: Backend`)).toEqual({ source: "etcd /weft.io/network/config", jsonPath: "Backend" });
    expect(splitSchemaPath("Backend")).toEqual({ source: "net-conf.json", jsonPath: "Backend" });
    expect([showValue("x"), showValue(3), showValue(undefined)]).toEqual(['"x"', "3", "undefined"]);
  });
});

describe("parseNetworkConfig: issue 15", () => {
  const v6 = (net: string) => ({ Network: "198.19.0.0/16", EnableIPv6: true, IPv6Network: net, Backend: { Type: "vxlan" } });

  it("#10 refuses an IPv4-mapped or link-local IPv6Network", () => {
    const mapped = errorOf(v6("::ffff:198.19.0.0/112"));
    expect(mapped.path).toBe("IPv6Network");
    expect(mapped.message).toContain("IPv4-mapped");
    expect(mapped.message).not.toContain("\n");
    expect(errorOf(v6("fe80::/64")).message).toMatch(/IPv6Network "fe80::\/64" overlaps fe80::\/10 \(link-local\).*: choose a global or ULA block/);
    expect(errorOf(v6("ff02::/64")).message).toContain("multicast");
    expect(parse(v6("2001:2::/48")).v6?.network.toString()).toBe("2001:2::/48");
  });

  it("#11 duplicate keys: the last match in the text wins, as in Go's encoding/json (Flannel)", () => {
    expect(parse('{"Network":"198.18.0.0/16","network":"198.19.0.0/16"}').v4?.network.toString()).toBe("198.19.0.0/16");
    expect(parse('{"network":"198.18.0.0/16","Network":"198.19.0.0/16"}').v4?.network.toString()).toBe("198.19.0.0/16");
    expect(parse('{"Network":"198.19.0.0/16","subnetlen":26,"SUBNETLEN":28}').v4?.subnetLen).toBe(28);
    // An exact duplicate after a case variant: JSON.parse would keep the first position; the text order counts.
    expect(parse('{"Network":"198.17.0.0/16","network":"198.18.0.0/16","Network":"198.19.0.0/16"}').v4?.network.toString()).toBe("198.19.0.0/16");
    // null leaves the field as it was (Go ignores null for value fields).
    expect(parse('{"Network":"198.19.0.0/16","SubnetLen":26,"subnetLen":null}').v4?.subnetLen).toBe(26);
    // Go folds the Kelvin sign and the long s like K and S.
    expect(parse('{"Network":"198.19.0.0/16","\u017fubnetLen":26}').v4?.subnetLen).toBe(26);
    // The Backend section keeps keys in text order, so backends' lookups take the last too.
    const c = parse('{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan","PSK":"","psk":"x","Type":"host-gw"}}');
    expect(c.backendType).toBe("host-gw");
    expect(Object.keys(c.backend)).toEqual(["PSK", "psk", "Type"]);
    expect(parse('{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"},"backend":{"type":"host-gw"}}').backendType).toBe("host-gw");
  });

  it("#12 a deeply nested value is one error naming its path, never a stack overflow", () => {
    const deep = `{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan","X":${"[".repeat(100_000)}${"]".repeat(100_000)}}}`;
    const e = errorOf(deep);
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain("Backend.X");
    expect(e.message).toContain("nested deeper than");
    expect(e.message.length).toBeLessThan(300);
  });

  it("#12 1e400 is reported as out of range (not as null)", () => {
    const e = errorOf('{"Network":"198.19.0.0/16","SubnetLen":1e400}');
    expect(e.path).toBe("SubnetLen");
    expect(e.message).toContain("1e400");
    expect(e.message).not.toContain("null");
    expect(errorOf('{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan","MTU":-1e999}}').message).toContain("Backend.MTU");
  });

  it("#12 a huge value is cut in the error line, control characters escaped", () => {
    const e = errorOf({ Network: `198.19.0.0/16${"x".repeat(1_400_000)}\u001b[31m` });
    expect(e.message.length).toBeLessThan(300);
    expect(e.message).toContain("chars)");
    expect(errorOf({ Network: "a\nb\u001b" }).message).not.toMatch(/[\n\u001b]/);
  });

  it("#12 50,000 unknown keys give one bounded warning", () => {
    const o: Record<string, unknown> = { Network: "198.19.0.0/16", Backend: { Type: "vxlan" } };
    for (let i = 0; i < 50_000; i++) o[`k${i}`] = i;
    const c = parse(o);
    expect(c.warnings).toHaveLength(1);
    expect(c.warnings[0]!.length).toBeLessThan(600);
    expect(c.warnings[0]).toContain("and 49990 more");
  });
});
