/** Fixed weftd /status JSON for the unit tests (the shape of packages/daemon Agent.status()). Test-only. */
import type { WeftStatus } from "./status.js";

export const READY_STATUS: WeftStatus = {
  phase: "running",
  ready: true,
  reason: "",
  subnet: "198.19.1.0/24",
  publicIP: "198.18.0.1",
  backendType: "vxlan",
  mtu: 1450,
  peers: [
    { peer: "198.19.3.0-24", publicIP: "198.18.0.3", state: "programmed" },
    { peer: "198.19.2.0-24", publicIP: "198.18.0.2", state: "programmed" },
    { peer: "198.19.4.0-24", publicIP: "198.18.0.4", state: "unreachable", reason: "no route to 198.18.0.4 on the underlay" },
  ],
};

export const NOT_READY_STATUS: WeftStatus = {
  phase: "running",
  ready: false,
  reason: "1 peers failed to program",
  subnet: "198.19.1.0/24",
  ipv6Subnet: "2001:2:0:1::/64",
  publicIP: "198.18.0.1",
  publicIPv6: "2001:2::1",
  backendType: "vxlan",
  mtu: 1430,
  peers: [{ peer: "198.19.2.0-24", publicIP: "198.18.0.2", state: "failed", reason: "route add 198.19.2.0/24: RTNETLINK answers: Invalid argument" }],
};

/** An ipsec agent: the backend's own status (datapath, reason, gauges) next to the rest. */
export const IPSEC_STATUS: WeftStatus = {
  phase: "running",
  ready: true,
  reason: "",
  subnet: "198.19.1.0/24",
  publicIP: "198.18.0.1",
  backendType: "ipsec",
  backend: { datapath: "libipsec", reason: "auto: kernel lacks ESP", gauges: { connections_desired: 2, connections_loaded: 2, sas_up: 1 } },
  mtu: 1400,
  peers: [
    { peer: "198.19.2.0-24", publicIP: "198.18.0.2", state: "programmed" },
    { peer: "198.19.3.0-24", publicIP: "198.18.0.3", state: "programmed" },
  ],
};
