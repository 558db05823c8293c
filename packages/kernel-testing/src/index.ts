/**
 * @weft/kernel-testing: a stateful fake of the Kernel port with fault injection, a fake clock and a fake
 * process runner, for unit tests. The contract suite that runs against both the fake and the real adapter
 * (it imports vitest) is in `@weft/kernel-testing/contract`.
 */
export { FakeKernel, type ExternalLinkSpec, type FakeKernelOptions, type FakeKernelSnapshot, type OpMatcher } from "./fake-kernel.js";
export { type Clock, FakeClock } from "./fake-clock.js";
export { FakeProcessRunner, type ScriptedRun, type ScriptedSpawn } from "./fake-process-runner.js";
export { DEFAULT_NIC_FEATURES, FakeEthtool, type FakeEthtoolOptions } from "./fake-ethtool.js";
export { FakeDaemonTable, type FakeDaemonProcess, type FakeExit, FakeManagedDaemons, type FakeManagedDaemonsOptions, type FakeProgram } from "./fake-managed-daemons.js";
export { FakeWireGuard, FakeWireGuardHost, type FakeWgDevice, type FakeWgPeer } from "./fake-wireguard.js";
export { FakeIpsec, type FakeCharon, type FakeIpsecOptions } from "./fake-ipsec.js";
export { FakeNetfilter } from "./fake-netfilter.js";
export { FakeXtables } from "./fake-xtables.js";
export { NetnsRunner, RecordingRunner } from "./netns-runner.js";
export { FakeXfrm } from "./fake-xfrm.js";
