/**
 * Leases for tests, from strings, and the addresses the conformance suite uses. Everything is inside the
 * RFC 2544 benchmarking ranges (198.18.0.0/15, 2001:2::/48) the project reserves for tests.
 */
import { IPAddress, IPNet, type JsonValue, type Lease } from "@weft/core";

/** A peer lease as strings, for `peerLease`: subnets as CIDRs, addresses as text. */
export interface PeerLeaseInput {
  readonly subnet?: string;
  readonly ipv6Subnet?: string;
  readonly publicIP?: string;
  readonly publicIPv6?: string;
  readonly backendType: string;
  readonly backendData?: JsonValue;
  readonly backendV6Data?: JsonValue;
  readonly nodeName?: string;
}

/** A lease as another node would publish it. */
export function peerLease(p: PeerLeaseInput): Lease {
  return {
    ...(p.subnet ? { subnet: IPNet.parse(p.subnet, true) } : {}),
    ...(p.ipv6Subnet ? { ipv6Subnet: IPNet.parse(p.ipv6Subnet, true) } : {}),
    ...(p.nodeName ? { nodeName: p.nodeName } : {}),
    attrs: {
      backendType: p.backendType,
      ...(p.publicIP ? { publicIP: IPAddress.parse(p.publicIP) } : {}),
      ...(p.publicIPv6 ? { publicIPv6: IPAddress.parse(p.publicIPv6) } : {}),
      ...(p.backendData !== undefined ? { backendData: p.backendData } : {}),
      ...(p.backendV6Data !== undefined ? { backendV6Data: p.backendV6Data } : {}),
    },
  };
}

/** Which address families a suite run covers. */
export type FamilyMode = "v4" | "v6" | "dual";

/**
 * The suite's small cluster: one L2 underlay segment (198.18.0.0/24, 2001:2::/64) and a pod network
 * (198.19.0.0/16, 2001:2:0:100::/56). Node n has underlay .n / ::n and pod subnet 198.19.n.0/24 /
 * 2001:2:0:10n::/64 (n = 1 is the node under test).
 */
export const TEST_TOPOLOGY = {
  network: "198.19.0.0/16",
  ipv6Network: "2001:2:0:100::/56",
  underlay: "198.18.0.0/24",
  underlay6: "2001:2::/64",
  /** An underlay address on another segment (no connected route): what host-gw cannot reach. */
  offSegment: "198.18.5.2",
  offSegment6: "2001:2:0:5::2",
  /** Node `n`'s name, underlay addresses and pod subnets. */
  node(n: number) {
    return {
      nodeName: `node-${n}`,
      address: `198.18.0.${n}/24`,
      address6: `2001:2::${n.toString(16)}/64`,
      subnet: `198.19.${n}.0/24`,
      ipv6Subnet: `2001:2:0:1${n.toString(16).padStart(2, "0")}::/64`,
    };
  },
} as const;

/** net-conf.json for the suite's cluster in the given family mode. */
export function testNetConf(backend: Readonly<Record<string, unknown>>, mode: FamilyMode): Record<string, unknown> {
  return {
    ...(mode !== "v6" ? { Network: TEST_TOPOLOGY.network } : {}),
    ...(mode !== "v4" ? { IPv6Network: TEST_TOPOLOGY.ipv6Network } : {}),
    EnableIPv4: mode !== "v6",
    EnableIPv6: mode !== "v4",
    Backend: backend,
  };
}
