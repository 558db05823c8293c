/** The conformance suite on the real kernel: one fresh namespace per node (see @weft/backend-testkit/netns). */
import { describeBackendConformanceInNetns } from "@weft/backend-testkit/netns";
import vxlan from "./index.js";

describeBackendConformanceInNetns(vxlan, {
  encapsulates: true,
  families: ["v4", "v6", "dual"],
  config: { Type: "vxlan", VNI: 1 },
  malformedPeerData: [42, { VNI: 1, VtepMAC: "zz" }],
});
