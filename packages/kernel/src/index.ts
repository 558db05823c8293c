export * from "./port.js";
export * from "./process.js";
export * from "./execa-runner.js";
export * from "./spawn-runner.js";
export { LinuxKernel, type LinuxKernelOptions } from "./linux/linux-kernel.js";
export { classifyKernelMessage } from "./linux/classify.js";
export { validateKernelOp } from "./linux/commands.js";
export { NetnsPathKernel, netnsPathRunner, netnsNameOf } from "./linux/netns-path.js";
export * from "./connected-subnets.js";
export * from "./daemon/port.js";
export {
  asKernelError,
  classifyToolMessage,
  debianPackageOf,
  describeCommand,
  firstLine,
  isToolMissing,
  toolError,
  type ToolErrorOptions,
  type ToolErrorRules,
} from "./tool-errors.js";
export * from "./ethtool/port.js";
export { LinuxEthtool, parseEthtoolFeatures } from "./ethtool/linux-ethtool.js";
export { BUILTIN_LINK_KINDS, BUILTIN_LINK_KIND_SET, LINK_ARG_CHECKS, LINK_KINDS, LinkKinds, linkKindsOf } from "./linux/link-kinds.js";
export { LinuxManagedDaemons, type LinuxManagedDaemonsOptions } from "./daemon/linux-managed-daemons.js";
export {
  DEFAULT_DAEMON_BACKOFF,
  DEFAULT_READY_TIMEOUT_MS,
  DEFAULT_STOP_GRACE_MS,
  type StartFailures,
  argvMatches,
  backoffError,
  cutLogTail,
  daemonLogFile,
  daemonPidFile,
  describeDaemon,
  exitedError,
  notReadyError,
} from "./daemon/files.js";
export * from "./wireguard/port.js";
export { type WgDump, type WgDumpPeer, parseWgDump } from "./wireguard/wg-dump.js";
export { LinuxWireGuard, type LinuxWireGuardOptions, WG_ERROR_RULES, WIREGUARD_GO_READY_TIMEOUT_MS, wgPeerArgs } from "./wireguard/linux-wireguard.js";
export * from "./ipsec/port.js";
export { ViciIpsec, connectionMessage, viciError } from "./ipsec/vici-ipsec.js";
export { type ViciMessage, type ViciValue, ViciTransportError, decodeViciMessage, encodeViciMessage, viciCall, viciStream } from "./ipsec/vici.js";
export {
  CHARON_LOCATIONS,
  CHARON_PACKAGES,
  CHARON_PID_FILE,
  PRIVATE_CHARON_PIDFILE_ENV,
  usePrivateCharonPidFile,
  type CharonDatapath,
  type CharonFiles,
  LIBIPSEC_DEVICE,
  LIBIPSEC_MTU,
  charonConf,
  charonDaemonSpec,
  charonFiles,
  locateCharon,
  prepareCharon,
} from "./ipsec/charon.js";
export * from "./kernel-view.js";
export * from "./netfilter/index.js";
export * from "./sysctl/owned.js";
export { IpCoprocessRunner } from "./ip-coprocess.js";
export { registerLinuxPorts } from "./linux-ports.js";
export { wireguardGoDaemonSpec } from "./wireguard/linux-wireguard.js";
export { StartFailureLog, type StartedDaemon, awaitDaemonReady, readPidFile } from "./daemon/files.js";
export * from "./xfrm/port.js";
export { LinuxXfrm, parseXfrmPolicies, parseXfrmStates } from "./xfrm/linux-xfrm.js";
export { checkWritableFilePath, ensureDirectory, pseudoFilesystemPrefix } from "./paths.js";
export { type ProcessStats, readProcessStats } from "./proc-stats.js";
export { ViciFormatError } from "./ipsec/vici.js";
export * from "./netns-check.js";
