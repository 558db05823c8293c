/**
 * @weft/subnet-etcd: the SubnetManager on etcd v3, in Flannel's key layout (DESIGN §5).
 */
export {
  EtcdSubnetManager,
  DEFAULT_ETCD_PREFIX,
  DEFAULT_ETCD_ENDPOINTS,
  FLANNEL_ETCD_PREFIX,
  type EtcdSubnetManagerOptions,
  type EtcdSubnetManagerStats,
} from "./manager.js";
export { type EtcdTlsOptions, redactEndpoint } from "./etcd-store.js";
export {
  allocateSubnet,
  isCompatible,
  fitsFamily,
  freeCandidates,
  MAX_CANDIDATES,
  type Allocation,
  type AllocationHints,
  type ExistingLease,
} from "./allocate.js";
export { decodePeer, type DecodedPeer } from "./peers.js";
export { MemoryStore } from "./memory-store.js";
export type { SubnetStore, StoredKV, StoreEvent, StoreWatch, WatchHandlers, KeyCondition, LeaseChoice } from "./store.js";
export { parseEndpoint, parseEndpoints, checkLeaseTtl, MAX_ETCD_LEASE_TTL_SECONDS, type ParsedEndpoint, type EndpointSet } from "./endpoints.js";
