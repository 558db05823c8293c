import { describe, expect, it } from "vitest";
import { IPAddress, IPNet, IPPrefix } from "./ip.js";

describe("IPAddress", () => {
  it("parses and formats both families canonically", () => {
    expect(IPAddress.parse("198.18.0.1").toString()).toBe("198.18.0.1");
    expect(IPAddress.parse("2001:0002:0000:0000:0000:0000:0000:0001").toString()).toBe("2001:2::1");
    expect(IPAddress.parse("2001:2::1").family).toBe("v6");
  });
  it("rejects non-dotted-quad IPv4 forms, zones and garbage", () => {
    for (const bad of ["1", "010.1.1.1x", "1.2.3", "256.1.1.1", "fe80::1%eth0", "", "x", "1.2.3.4/24"]) {
      expect(IPAddress.tryParse(bad), bad).toBeUndefined();
    }
  });
  it("does arithmetic and equality by value", () => {
    const a = IPAddress.parse("198.19.0.255");
    expect(a.add(1).toString()).toBe("198.19.1.0");
    expect(a.equals(IPAddress.parse("198.19.0.255"))).toBe(true);
    expect(a.equals(IPAddress.parse("::ffff:198.19.0.255"))).toBe(false);
    expect(() => IPAddress.parse("255.255.255.255").add(1)).toThrow(RangeError);
  });
});

describe("IPNet", () => {
  it("clears host bits unless strict, and reports it", () => {
    const r = IPNet.tryParse("198.19.1.7/16");
    expect(r?.net.toString()).toBe("198.19.0.0/16");
    expect(r?.hadHostBits).toBe(true);
    expect(IPNet.tryParse("198.19.1.7/16", true)).toBeUndefined();
  });
  it("answers contains/overlaps/next/size for v4 and v6", () => {
    const n = IPNet.parse("198.19.0.0/16");
    expect(n.contains(IPAddress.parse("198.19.255.255"))).toBe(true);
    expect(n.contains(IPAddress.parse("198.20.0.0"))).toBe(false);
    expect(n.contains(IPNet.parse("198.19.4.0/24"))).toBe(true);
    expect(n.contains(IPNet.parse("198.18.0.0/15"))).toBe(false);
    expect(IPNet.parse("198.19.4.0/24").overlaps(IPNet.parse("198.19.4.128/25"))).toBe(true);
    expect(IPNet.parse("198.19.4.0/24").overlaps(IPNet.parse("198.19.5.0/24"))).toBe(false);
    expect(IPNet.parse("198.19.4.0/24").next().toString()).toBe("198.19.5.0/24");
    expect(IPNet.parse("2001:2::/48").size).toBe(1n << 80n);
    expect(IPNet.parse("2001:2:0:1::/64").next().toString()).toBe("2001:2:0:2::/64");
    expect(IPNet.parse("2001:2::/48").contains(IPAddress.parse("198.19.0.1"))).toBe(false);
  });
});

describe("IPPrefix", () => {
  it("keeps host bits and gives the network", () => {
    const p = IPPrefix.parse("198.19.1.1/24");
    expect(p.toString()).toBe("198.19.1.1/24");
    expect(p.network.toString()).toBe("198.19.1.0/24");
    expect(IPPrefix.tryParse("198.19.1.1/40")).toBeUndefined();
  });
});
