export * from "./port.js";
export * from "./process.js";
export * from "./execa-runner.js";
