import { IPAddress } from "@weft/core";
import { describe, expect, it } from "vitest";
import { parseNetConf } from "../config.js";
import { makeRange } from "../ipam/range.js";
import { parseSubnetFile } from "../subnet-file.js";
import { containerOps, hostVethName, macForAddress, planNode, planRoutes } from "./plan.js";

const dual = parseSubnetFile(
  "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.1.1/24\nFLANNEL_IPV6_NETWORK=2001:2::/48\nFLANNEL_IPV6_SUBNET=2001:2:0:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
  "subnet.env",
);
const conf = (extra: Record<string, unknown> = {}) => parseNetConf({ cniVersion: "1.0.0", name: "cbr0", ...extra });
const alloc = (ip: string, subnet: string, gw: string) => ({ ip: IPAddress.parse(ip), range: makeRange({ subnet, gateway: gw }), rangeSetIndex: 0, fresh: true });

describe("direct-mode plan", () => {
  it("names the host veth from (network, container, ifname): stable, 12 characters", () => {
    const a = hostVethName("cbr0", "c1", "eth0");
    expect(a).toMatch(/^veth[0-9a-f]{8}$/);
    expect(hostVethName("cbr0", "c1", "eth0")).toBe(a);
    expect(hostVethName("cbr0", "c1", "eth1")).not.toBe(a);
  });

  it("derives a locally administered MAC from the address", () => {
    expect(macForAddress(IPAddress.parse("198.19.1.2"))).toBe("0a:58:c6:13:01:02");
    expect(macForAddress(IPAddress.parse("2001:2:0:1::a:b"))).toBe("0a:58:00:0a:00:0b");
  });

  it("takes one range set per family from the subnet file, the bridge gets the first host, MTU from the file", () => {
    const n = planNode(conf(), dual);
    expect(n.mtu).toBe(1450);
    expect(n.families.map((f) => f.bridgeAddress)).toEqual(["198.19.1.1/24", "2001:2:0:1::1/64"]);
    expect(n.rangeSets.map((s) => `${s[0]!.rangeStart}-${s[0]!.rangeEnd} gw ${s[0]!.gateway}`)).toEqual([
      "198.19.1.1-198.19.1.254 gw 198.19.1.1",
      "2001:2:0:1::1-2001:2:0:1:ffff:ffff:ffff:ffff gw 2001:2:0:1::1",
    ]);
    expect(planNode(conf({ mtu: 1400 }), dual).mtu).toBe(1400);
  });

  it("ipam.ranges overrides the pool; bad ranges name the field", () => {
    const n = planNode(conf({ ipam: { ranges: [[{ subnet: "198.19.1.0/24", rangeStart: "198.19.1.100", rangeEnd: "198.19.1.150" }]] } }), dual);
    expect(`${n.rangeSets[0]![0]!.rangeStart}`).toBe("198.19.1.100");
    expect(() => planNode(conf({ ipam: { ranges: [[{ subnet: "198.19.1.0/24", rangeStart: "198.19.2.1" }]] } }), dual)).toThrow(
      /"ipam.ranges\[0\]\[0\].rangeStart" 198.19.2.1 is outside subnet 198.19.1.0\/24/,
    );
    expect(() => planNode(conf({ ipam: { ranges: [[{ subnet: "198.19.1.0/24" }, { subnet: "198.19.1.128/25" }]] } }), dual)).toThrow(/overlaps/);
  });

  it("routes: cluster networks, ipam.routes, then default routes via the gateway with isDefaultGateway", () => {
    const allocs = [alloc("198.19.1.5", "198.19.1.0/24", "198.19.1.1"), alloc("2001:2:0:1::5", "2001:2:0:1::/64", "2001:2:0:1::1")];
    const c = conf({ isDefaultGateway: true, ipam: { routes: [{ dst: "198.18.0.0/24" }] } });
    const routes = planRoutes(c, planNode(c, dual), allocs);
    expect(routes).toEqual([
      { dst: "198.19.0.0/16" },
      { dst: "2001:2::/48" },
      { dst: "198.18.0.0/24" },
      { dst: "0.0.0.0/0", gw: "198.19.1.1" },
      { dst: "::/0", gw: "2001:2:0:1::1" },
    ]);
    const ops = containerOps({ bridge: "cni0", hostVeth: "vethx", ifname: "eth0", netns: "/n" }, allocs, routes, "0a:58:c6:13:01:05");
    expect(ops[0]).toEqual({ op: "link.set", name: "eth0", address: "0a:58:c6:13:01:05", up: true });
    expect(ops).toContainEqual({ op: "addr.add", addr: { dev: "eth0", address: "2001:2:0:1::5/64", nodad: true } });
    expect(ops).toContainEqual({ op: "route.add", route: { family: "v4", dst: "198.19.0.0/16", dev: "eth0", gateway: "198.19.1.1" } });
    expect(ops).toContainEqual({ op: "route.add", route: { family: "v6", dst: "::/0", dev: "eth0", gateway: "2001:2:0:1::1" } });
    expect(() => planRoutes(conf({ ipam: { routes: [{ dst: "2001:3::/64" }] } }), planNode(conf(), dual), [allocs[0]!])).toThrow(/"ipam.routes\[0\].dst" 2001:3::\/64 is IPv6 but the pod gets no IPv6 address/);
  });
});
