import { describe, expect, it } from "vitest";
import { CniError } from "./errors.js";
import { checkVersion, convertResult, type CniResult, parsePrevResult, requireVersion } from "./result.js";

const result: CniResult = {
  cniVersion: "1.1.0",
  interfaces: [
    { name: "cni0", mac: "0a:58:c6:13:01:01", mtu: 1450 },
    { name: "veth12345678", mac: "aa:bb:cc:dd:ee:ff", mtu: 1450 },
    { name: "eth0", mac: "0a:58:c6:13:01:02", mtu: 1450, sandbox: "/run/netns/x" },
  ],
  ips: [
    { address: "198.19.1.2/24", gateway: "198.19.1.1", interface: 2 },
    { address: "2001:2:0:1::2/64", gateway: "2001:2:0:1::1", interface: 2 },
  ],
  routes: [{ dst: "198.19.0.0/16" }, { dst: "0.0.0.0/0", gw: "198.19.1.1" }, { dst: "::/0", gw: "2001:2:0:1::1" }],
  dns: { nameservers: ["198.19.0.10"] },
};

describe("results per cniVersion", () => {
  it("1.1.0 keeps interface mtu", () => {
    const r = convertResult(result, "1.1.0") as { interfaces: Array<{ mtu?: number }> };
    expect(r.interfaces[2]).toEqual({ name: "eth0", mac: "0a:58:c6:13:01:02", mtu: 1450, sandbox: "/run/netns/x" });
  });

  it("1.0.0 drops the 1.1 fields and has no ip version", () => {
    expect(convertResult(result, "1.0.0")).toEqual({
      cniVersion: "1.0.0",
      interfaces: [
        { name: "cni0", mac: "0a:58:c6:13:01:01" },
        { name: "veth12345678", mac: "aa:bb:cc:dd:ee:ff" },
        { name: "eth0", mac: "0a:58:c6:13:01:02", sandbox: "/run/netns/x" },
      ],
      ips: [
        { interface: 2, address: "198.19.1.2/24", gateway: "198.19.1.1" },
        { interface: 2, address: "2001:2:0:1::2/64", gateway: "2001:2:0:1::1" },
      ],
      routes: [{ dst: "198.19.0.0/16" }, { dst: "0.0.0.0/0", gw: "198.19.1.1" }, { dst: "::/0", gw: "2001:2:0:1::1" }],
      dns: { nameservers: ["198.19.0.10"] },
    });
  });

  it.each(["0.3.0", "0.3.1", "0.4.0"])("%s carries ips[].version", (v) => {
    const r = convertResult(result, v) as { cniVersion: string; ips: Array<{ version: string }> };
    expect(r.cniVersion).toBe(v);
    expect(r.ips.map((i) => i.version)).toEqual(["4", "6"]);
  });

  it("0.2.0 is the legacy ip4/ip6 shape with routes split by family", () => {
    expect(convertResult(result, "0.2.0")).toEqual({
      cniVersion: "0.2.0",
      ip4: { ip: "198.19.1.2/24", gateway: "198.19.1.1", routes: [{ dst: "198.19.0.0/16" }, { dst: "0.0.0.0/0", gw: "198.19.1.1" }] },
      ip6: { ip: "2001:2:0:1::2/64", gateway: "2001:2:0:1::1", routes: [{ dst: "::/0", gw: "2001:2:0:1::1" }] },
      dns: { nameservers: ["198.19.0.10"] },
    });
  });

  it("reads back a prevResult of any version", () => {
    for (const v of ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
      const back = parsePrevResult(convertResult(result, v));
      expect(back.ips?.map((i) => i.address)).toEqual(["198.19.1.2/24", "2001:2:0:1::2/64"]);
      expect(back.interfaces?.[2]?.sandbox).toBe("/run/netns/x");
      expect(back.routes).toHaveLength(3);
    }
    expect(parsePrevResult(convertResult(result, "0.2.0")).ips?.map((i) => i.address)).toEqual(["198.19.1.2/24", "2001:2:0:1::2/64"]);
    expect(() => parsePrevResult({ cniVersion: "1.0.0", ips: [{ address: 5 }] })).toThrow(/"prevResult.ips\[0\].address" must be a string/);
  });

  it("version checks: unsupported is code 1 with the list; missing is 0.1.0; CHECK needs 0.4.0, GC 1.1.0", () => {
    const err = (() => {
      try {
        checkVersion("2.0.0");
      } catch (e) {
        return e as CniError;
      }
      throw new Error("no error");
    })();
    expect(err.code).toBe(1);
    expect(err.message).toContain("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0");
    expect(checkVersion(undefined)).toBe("0.1.0");
    expect(() => requireVersion("CHECK", "0.3.1", "0.4.0")).toThrow(/config version does not allow CHECK/);
    expect(() => requireVersion("GC", "1.1.0", "1.1.0")).not.toThrow();
  });
});
