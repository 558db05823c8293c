import { describeBackendConformance } from "@weft/backend-testkit";
import hostGw from "./index.js";

describeBackendConformance(hostGw, {
  encapsulates: false,
  families: ["v4", "v6", "dual"],
  config: { Type: "host-gw" },
  // host-gw publishes no BackendData (JSON null, as Flannel): a peer without it is routed all the same.
  requiresPeerData: false,
  preflightRejects: [
    { name: "behind NAT (PublicIP is not the interface address)", iface: { address: "198.18.0.1/24", publicIP: "198.18.1.1" }, error: "behind NAT" },
    { name: "behind NAT over IPv6", family: "v6", iface: { address6: "2001:2::1/64", publicIPv6: "2001:2:0:9::1" }, error: "drop --public-ipv6" },
    { name: "IPv6 enabled, no IPv6 address on the interface", family: "dual", iface: { address: "198.18.0.1/24" }, error: "has no IPv6 address" },
  ],
});
