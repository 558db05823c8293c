/** The conformance suite on the real kernel: one fresh namespace per node (see @weft/backend-testkit/netns). */
import { describeBackendConformanceInNetns } from "@weft/backend-testkit/netns";
import hostGw from "./index.js";

describeBackendConformanceInNetns(hostGw, {
  encapsulates: false,
  families: ["v4", "v6", "dual"],
  config: { Type: "host-gw" },
  requiresPeerData: false,
  preflightRejects: [{ name: "behind NAT (PublicIP is not the interface address)", iface: { address: "198.18.0.1/24", publicIP: "198.18.1.1" }, error: "behind NAT" }],
});
