/**
 * EXTENSION POINT: the conformance suite. One call runs every check a Weft backend must pass (kernel state
 * converges, idempotent add, exact remove, adopting restart, schema errors with JSON paths, malformed peers
 * skipped, teardown) against a FakeKernel through the agent's real DI loading and reconcilers.
 * Tell it what your backend is: whether it encapsulates, which families it supports, configs its schema
 * must reject (with the JSON path the error must name), peer data it must refuse, and configurations its
 * preflight must refuse on a given interface (before the agent takes a lease or touches the node).
 */
import { describeBackendConformance } from "@weft/backend-testkit";
import backend from "./index.js";

describeBackendConformance(backend, {
  encapsulates: false,
  families: ["v4", "v6", "dual"],
  config: { Type: "sample", Metric: 10, LooseReversePathFilter: true },
  invalidConfigs: [
    { config: { Type: "sample", Metric: -1 }, path: "Backend.Metric" },
    { config: { Type: "sample", LooseReversePathFilter: "yes" }, path: "Backend.LooseReversePathFilter" },
  ],
  malformedPeerData: [null, 42, {}, { Gateway: "not an address" }],
  preflightRejects: [
    { name: "IPv6 enabled, no IPv6 address on the interface", family: "dual", iface: { address: "198.18.0.1/24" }, error: "has no IPv6 address" },
    { name: "IPv4 enabled, no IPv4 address on the interface", family: "v4", iface: { address6: "2001:2::1/64" }, error: "has no IPv4 address" },
  ],
});
