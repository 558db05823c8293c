/**
 * @weft/backend-testkit: what a backend author imports to test a backend, and nothing of the daemon.
 *   describeBackendConformance(module, options)  the conformance suite as vitest tests
 *   runBackendConformance / conformanceChecks    the same checks as plain functions
 *   startTestAgent(options)                      one node's agent (real DI loading and reconcilers) on a FakeKernel
 *   FakeSubnetManager, peerLease, TEST_TOPOLOGY  leases and the suite's test cluster
 *   snapshotKernel / diffSnapshots               compare kernel states
 */
export {
  type ConformanceCheck,
  type ConformanceOptions,
  type ConformanceResult,
  type PreflightReject,
  conformanceChecks,
  runBackendConformance,
} from "./conformance.js";
export { describeBackendConformance } from "./vitest.js";
export { FakeSubnetManager, type LocalLeaseChoice } from "./fake-subnet-manager.js";
export { type FamilyMode, type PeerLeaseInput, TEST_TOPOLOGY, peerLease, testNetConf } from "./leases.js";
export { type KernelSnapshot, diffSnapshots, recreatedLinks, snapshotKernel } from "./kernel-snapshot.js";
export { type RestartResult, TestAgent, type TestAgentOptions, type TestInterface, startTestAgent } from "./test-agent.js";
