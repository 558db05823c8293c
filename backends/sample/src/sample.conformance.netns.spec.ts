/**
 * The same suite on the REAL kernel (netns tier: `WEFT_TIER=netns npx vitest run`, as root): one fresh
 * network namespace per node, the real iproute2 adapter. It proves the kernel accepts what you declare and
 * reads it back so that a restart adopts. Without root it skips with a reason (and fails under CI=true).
 */
import { describeBackendConformanceInNetns } from "@weft/backend-testkit/netns";
import backend from "./index.js";

describeBackendConformanceInNetns(backend, {
  encapsulates: false,
  families: ["v4", "dual"],
  config: { Type: "sample", Metric: 10, LooseReversePathFilter: true },
});
