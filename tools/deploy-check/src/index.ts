/**
 * @weft/deploy-check: the pieces tools/deploy-check's spec uses to check docs/deploy/weft.yaml (manifest
 * loading with @kubernetes/client-node, unknown fields, volumes, RBAC pairs, weftd's help text).
 */
export { type KubeObject, findObject, loadManifest, loadManifestRaw, mountFor, unknownFields, volumeProblems } from "./manifest.js";
export { type ApiRequest, type Grant, grant, grantedPairs, requiredPair } from "./rbac.js";
export { type HelpFlag, effectiveFlags, parseHelp } from "./flags.js";
