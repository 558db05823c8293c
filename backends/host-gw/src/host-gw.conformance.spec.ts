import { describeBackendConformance } from "@weft/backend-testkit";
import hostGw from "./index.js";

describeBackendConformance(hostGw, {
  encapsulates: false,
  families: ["v4", "v6", "dual"],
  config: { Type: "host-gw" },
});
