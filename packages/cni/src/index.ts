/**
 * @weft/cni: the `weft` CNI plugin. The executable is the bundle dist/weft-cni.mjs (entry src/main.ts); this
 * index exposes the pieces for tests, the benchmark and tools.
 */
export * from "./errors.js";
export * from "./result.js";
export * from "./subnet-file.js";
export * from "./config.js";
export * from "./ipam/range.js";
export * from "./ipam/lock.js";
export * from "./ipam/store.js";
export * from "./ipam/allocator.js";
export * from "./direct/plan.js";
export { addDirect, delDirect, checkDirect, type DirectDeps } from "./direct/bridge.js";
export * from "./delegate.js";
export * from "./install.js";
export * from "./plugin.js";
export * from "./server.js";
