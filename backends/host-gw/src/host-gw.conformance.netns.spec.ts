/** The conformance suite on the real kernel: one fresh namespace per node (see @weft/backend-testkit/netns). */
import { describeBackendConformanceInNetns } from "@weft/backend-testkit/netns";
import hostGw from "./index.js";

describeBackendConformanceInNetns(hostGw, { encapsulates: false, families: ["v4", "v6", "dual"], config: { Type: "host-gw" } });
