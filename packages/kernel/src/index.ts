export * from "./port.js";
export * from "./process.js";
