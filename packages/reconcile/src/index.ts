export * from "./reconciler.js";
export * from "./kinds.js";
export * from "./datapath.js";
export * from "./wire.js";
export * from "./agent-core.js";
export * from "./agent-core-peers.js";
