/**
 * @weft/kernel-testing: a stateful fake of the Kernel port with fault injection, a fake clock and a fake
 * process runner, for unit tests. The contract suite that runs against both the fake and the real adapter
 * (it imports vitest) is in `@weft/kernel-testing/contract`.
 */
export { FakeKernel, type ExternalLinkSpec, type FakeKernelOptions, type FakeKernelSnapshot, type OpMatcher } from "./fake-kernel.js";
export { type Clock, FakeClock } from "./fake-clock.js";
export { FakeProcessRunner, type ScriptedRun, type ScriptedSpawn } from "./fake-process-runner.js";
