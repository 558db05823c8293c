/**
 * @weft/ctl: weftctl, the operator CLI. The commands' pure renderers and the doctor's checks are exported for
 * tests and tools; the binary is dist/main.js (`weftctl`).
 */
export { UsageError, parseOptions, type OptionDef, type OptionDefs } from "./args.js";
export { DEFAULT_ENDPOINT, EndpointError, httpGet, parseEndpoint } from "./http-client.js";
export { fetchStatus, parseStatus, peerCounts, renderStatus, type PeerStatus, type StatusReport, type WeftStatus } from "./status.js";
export { renderPeers, sortPeers } from "./peers.js";
export { checkCniConfig, checkCniPlugin, checkCniSocket, checkDevices, checkMtu, checkSubnetFile, doctorFailed, renderDoctor, runDoctor, type Check, type CheckLevel, type DoctorOptions } from "./doctor.js";
export { mainHelp, runCli, type CliIO } from "./cli.js";
export * from "./drift.js";
export { escapeOutput, escapeShort, escapeText, safeJson } from "./escape.js";
