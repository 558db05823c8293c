import { describe, expect, it } from "vitest";
import { IPAddress, IPNet } from "./ip.js";
import { decodeLeaseAttrs, encodeLeaseAttrs, parseSubnetKey, sameSubnets, subnetKey } from "./lease.js";

describe("Flannel subnet keys", () => {
  it("formats and parses v4, dual-stack and v6-only keys", () => {
    const v4 = { subnet: IPNet.parse("10.5.52.0/24") };
    expect(subnetKey(v4)).toBe("10.5.52.0-24");
    const dual = { subnet: IPNet.parse("10.12.13.0/24"), ipv6Subnet: IPNet.parse("fd00:12:13::/56") };
    expect(subnetKey(dual)).toBe("10.12.13.0-24&fd00:12:13::-56");
    expect(sameSubnets(parseSubnetKey("10.12.13.0-24&fd00:12:13::-56")!, dual)).toBe(true);
    const v6 = { ipv6Subnet: IPNet.parse("2001:2:0:1::/64") };
    expect(subnetKey(v6)).toBe("0.0.0.0-0&2001:2:0:1::-64");
    expect(parseSubnetKey("0.0.0.0-0&2001:2:0:1::-64")?.subnet).toBeUndefined();
  });
  it("rejects malformed keys", () => {
    for (const k of ["10.5.52.0", "10.5.52.1-24", "10.5.52.0-33", "x-24", "10.5.52.0-24&1.2.3.4-24", "0.0.0.0-0", "10.5.52.0-24&"]) {
      expect(parseSubnetKey(k), k).toBeUndefined();
    }
  });
});

describe("LeaseAttrs JSON (Flannel's exact shape)", () => {
  it("reads a Flannel-written lease", () => {
    const a = decodeLeaseAttrs('{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:1d:2e:3f:40:51"}}');
    expect(a.publicIP?.toString()).toBe("192.168.64.3");
    expect(a.publicIPv6).toBeUndefined();
    expect(a.backendType).toBe("vxlan");
    expect(a.backendData).toEqual({ VNI: 1, VtepMAC: "c6:1d:2e:3f:40:51" });
  });
  it("writes what Flannel writes, and round-trips", () => {
    const text = encodeLeaseAttrs({
      publicIP: IPAddress.parse("198.18.0.1"),
      backendType: "vxlan",
      backendData: { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:ff" },
    });
    expect(text).toBe('{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}');
    const v6only = encodeLeaseAttrs({ publicIPv6: IPAddress.parse("2001:2::1"), backendType: "host-gw", backendV6Data: null });
    expect(JSON.parse(v6only)).toEqual({ PublicIP: "0.0.0.0", PublicIPv6: "2001:2::1", BackendType: "host-gw", BackendV6Data: null });
    expect(decodeLeaseAttrs(v6only).publicIP).toBeUndefined();
    expect(decodeLeaseAttrs(v6only).publicIPv6?.toString()).toBe("2001:2::1");
  });
  it("names the field on malformed input", () => {
    expect(() => decodeLeaseAttrs("nope")).toThrow(/not JSON/);
    expect(() => decodeLeaseAttrs('{"PublicIP":"2001:2::1"}')).toThrow(/PublicIP "2001:2::1" is not an IPv4 address/);
    expect(() => decodeLeaseAttrs('{"PublicIP":"198.18.0.1","BackendType":7}')).toThrow(/BackendType/);
  });
});

describe("LeaseAttrs JSON from a hostile store (issue 15)", () => {
  it("refuses a value over 64 KiB unparsed, and backend data nested 5,000 levels, with one short line", () => {
    const huge = `{"PublicIP":"198.18.0.2","BackendType":"vxlan","BackendData":{"Pad":"${"x".repeat(1_000_000)}"}}`;
    expect(() => decodeLeaseAttrs(huge)).toThrow(/^lease attributes are 1000\d+ characters long, over the 65536 a lease may hold$/);
    const deep = `{"PublicIP":"198.18.0.2","BackendType":"vxlan","BackendData":${"[".repeat(5_000)}1${"]".repeat(5_000)}}`;
    expect(() => decodeLeaseAttrs(deep)).toThrow(/^BackendData is nested more than 32 levels deep$/);
    // A long garbage address is echoed cut short, never whole.
    let msg = "";
    try {
      decodeLeaseAttrs(`{"PublicIP":"${"9".repeat(50_000)}"}`);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/^PublicIP "9+…/);
    expect(msg.length).toBeLessThan(200);
  });

  it("takes the last of several keys matching a field case-insensitively, as Go's encoding/json does", () => {
    expect(decodeLeaseAttrs('{"PublicIP":"198.18.0.1","publicip":"198.18.0.2"}').publicIP?.toString()).toBe("198.18.0.2");
    expect(decodeLeaseAttrs('{"backendtype":"host-gw","BackendType":"vxlan"}').backendType).toBe("vxlan");
  });
});
