export { DEFAULT_ANNOTATION_PREFIX, type KubeAnnotations, kubeAnnotations, normalizeAnnotationPrefix } from "./annotations.js";
export { DEFAULT_SERVICE_ACCOUNT_DIR, KubeApiError, type KubeConnectionOptions, KubeNodeClient, isKubeApiError, loadKubeConfig } from "./kube-client.js";
export {
  DEFAULT_NET_CONF_PATH,
  KubeSubnetManager,
  type KubeSubnetManagerOptions,
  type KubeSubnetManagerStats,
} from "./kube-subnet-manager.js";
export { type Families, type NodeLike, type PeerParse, annotationPatch, desiredAnnotations, localSubnets, nodePublicIPs, nodeToLease, parsePodCIDRs } from "./node-lease.js";
export { type ReflectorStats } from "./node-reflector.js";
