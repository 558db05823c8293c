/**
 * @weft/netns-lab: real multi-node networks in network namespaces, and a real etcd, for tests, the demo and
 * benchmarks. Test-only helpers that import vitest live in `@weft/netns-lab/vitest`.
 */
export * from "./guards.js";
export * from "./cleanup.js";
export * from "./netns.js";
export { labRunner } from "./runner.js";
export * from "./etcd.js";
export * from "./lab.js";
export * from "./weft-cluster.js";
export * from "./processes.js";
export * from "./peers.js";
