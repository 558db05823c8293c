import { describe, expect, it } from "vitest";
import { IPNet } from "./ip.js";
import { formatSubnetEnv, parseSubnetEnv } from "./subnet-env.js";

describe("subnet.env (Flannel's format)", () => {
  it("writes the first host address and Flannel's variable order", () => {
    const text = formatSubnetEnv({
      network: IPNet.parse("198.19.0.0/16"),
      subnet: IPNet.parse("198.19.1.0/24"),
      ipv6Network: IPNet.parse("2001:2::/48"),
      ipv6Subnet: IPNet.parse("2001:2:0:1::/64"),
      mtu: 1450,
      ipMasq: true,
    });
    expect(text).toBe(
      "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.1.1/24\nFLANNEL_IPV6_NETWORK=2001:2::/48\nFLANNEL_IPV6_SUBNET=2001:2:0:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    );
  });
  it("reads a file Flannel wrote, and round-trips", () => {
    const env = parseSubnetEnv("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
    expect(env.network?.toString()).toBe("10.244.0.0/16");
    expect(env.subnet?.toString()).toBe("10.244.1.1/24");
    expect(env.subnet?.network.toString()).toBe("10.244.1.0/24");
    expect(env.mtu).toBe(1450);
    expect(env.ipMasq).toBe(true);
    expect(env.ipv6Network).toBeUndefined();
  });
  it("names the variable when a value is malformed", () => {
    expect(() => parseSubnetEnv("FLANNEL_SUBNET=10.244.1.1\n")).toThrow(/FLANNEL_SUBNET=10\.244\.1\.1/);
    expect(() => parseSubnetEnv("FLANNEL_MTU=big\n")).toThrow(/FLANNEL_MTU/);
    expect(() => parseSubnetEnv("FLANNEL_IPMASQ=yes\n")).toThrow(/FLANNEL_IPMASQ/);
  });
});
