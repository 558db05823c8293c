/** The conformance suite on the real kernel: one fresh namespace per node (see @weft/backend-testkit/netns). */
import { describeBackendConformanceInNetns } from "@weft/backend-testkit/netns";
import vxlan from "./index.js";

describeBackendConformanceInNetns(vxlan, {
  encapsulates: true,
  families: ["v4", "v6", "dual"],
  config: { Type: "vxlan", VNI: 1 },
  malformedPeerData: [42, { VNI: 1, VtepMAC: "zz" }],
  preflightRejects: [
    { name: "a VNI that makes weft-v6.<VNI> longer than 15 characters", family: "dual", config: { Type: "vxlan", VNI: 10_000_000 }, iface: { address: "198.18.0.1/24", address6: "2001:2::1/64" }, error: "Backend.VNI 10000000" },
  ],
});
