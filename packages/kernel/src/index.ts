export * from "./port.js";
export * from "./process.js";
export * from "./execa-runner.js";
export * from "./spawn-runner.js";
export { LinuxKernel, type LinuxKernelOptions, registerLinuxKernel } from "./linux/linux-kernel.js";
export { classifyKernelMessage } from "./linux/classify.js";
export { validateKernelOp } from "./linux/commands.js";
export { NetnsPathKernel, netnsPathRunner, netnsNameOf } from "./linux/netns-path.js";
export * from "./connected-subnets.js";
