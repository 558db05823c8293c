import "reflect-metadata";
import { type BackendModule, type ExternalInterface, IPAddress, parseNetworkConfig } from "@weft/core";
import { describe, expect, it } from "vitest";
import { podMtu } from "./wire.js";

/** A module with vxlan's overheads (50 over IPv4, 70 over IPv6) and an optional configured underlay MTU. */
const encap = (underlay?: number): BackendModule => ({
  type: "enc",
  configSchema: { parse: (x) => x },
  mtuOverhead: (_c, f) => (f === "v4" ? 50 : 70),
  ...(underlay ? { underlayMtu: () => underlay } : {}),
  register() {},
});
const iface = (mtu: number, v6 = false): ExternalInterface => ({
  name: "eth0",
  index: 2,
  mtu,
  ifaceAddr: IPAddress.parse("198.18.0.1"),
  extAddr: IPAddress.parse("198.18.0.1"),
  ...(v6 ? { ifaceV6Addr: IPAddress.parse("2001:2::1"), extV6Addr: IPAddress.parse("2001:2::1") } : {}),
});
const v4 = parseNetworkConfig(JSON.stringify({ Network: "198.19.0.0/16", Backend: { Type: "enc" } }));
const dual = parseNetworkConfig(JSON.stringify({ Network: "198.19.0.0/16", EnableIPv6: true, IPv6Network: "2001:2:0:f000::/52", Backend: { Type: "enc" } }));

describe("podMtu", () => {
  it("takes the costlier underlay family in use, and a configured underlay MTU over the interface's", () => {
    expect(podMtu(encap(), {}, v4, iface(1500))).toEqual({ mtu: 1450, overhead: 50 });
    expect(podMtu(encap(), {}, dual, iface(1500, true))).toEqual({ mtu: 1430, overhead: 70 });
    expect(podMtu(encap(9000), {}, v4, iface(1500))).toEqual({ mtu: 8950, overhead: 50 });
  });

  it("refuses a pod MTU below IPv4's 576, naming the numbers and the fix", () => {
    expect(() => podMtu(encap(), {}, v4, iface(600))).toThrow("pod MTU 550 (underlay 600 − enc overhead 50) is too small: raise the underlay MTU");
  });

  it("issue 15 #12: a too-small Backend.MTU is blamed, not the interface's MTU", () => {
    expect(() => podMtu(encap(600), {}, v4, iface(1500))).toThrow("pod MTU 550 (Backend.MTU 600 − enc overhead 50) is too small: raise Backend.MTU, or remove it to use the interface's MTU 1500");
  });
});
