/**
 * The Backend contract (DESIGN §3): register subnet, add peer, remove peer, MTU overhead. A backend package
 * default-exports one BackendModule; importing it has no side effects. A backend *describes* kernel objects
 * through the Datapath it is given; the shared reconcilers apply them in batches and repair drift.
 */
import type { DependencyContainer } from "tsyringe";
import type { Family, IPAddress } from "./ip.js";
import type { KernelObjects, LinkKindDefinition } from "./kernel-objects.js";
import type { JsonValue, Lease } from "./lease.js";
import type { NetworkConfig } from "./network-config.js";
import type { Peer, PeerRefusal } from "./peer-view.js";

/**
 * Validates untrusted JSON into a typed value. `path` is the JSON path of `input` (e.g. `Backend` or
 * `peer 198.19.2.0-24 BackendData`); a rejection throws ConfigError/WeftError naming path, value and rule.
 * Any validator fits (zod, hand-written); core only needs this one method.
 */
export interface Schema<T> {
  /**
   * Returns `input` as a typed value, or throws ConfigError/WeftError naming `path`, the value and the rule it
   * broke.
   */
  parse(input: unknown, path: string): T;
}

/**
 * Splits a schema `path` into where the config came from and the JSON path inside it. The agent passes
 * `"<source>: Backend"` (e.g. `"etcd /weft.io/network/config: Backend"`); a bare `"Backend"` means net-conf.json.
 * Every backend schema names both in its errors, through ConfigError(source, jsonPath, ...).
 */
export function splitSchemaPath(path: string): { source: string; jsonPath: string } {
  const i = path.lastIndexOf(": ");
  return i >= 0 ? { source: path.slice(0, i), jsonPath: path.slice(i + 2) } : { source: "net-conf.json", jsonPath: path };
}

/** The node's chosen underlay interface and the addresses it advertises (flannel.md §7.4). */
export interface ExternalInterface {
  readonly name: string;
  readonly index: number;
  readonly mtu: number;
  /** Address on the interface used for the underlay (source of tunnels). */
  readonly ifaceAddr?: IPAddress;
  readonly ifaceV6Addr?: IPAddress;
  /** Address advertised to peers (PublicIP); defaults to the interface address. */
  readonly extAddr?: IPAddress;
  readonly extV6Addr?: IPAddress;
}

/** Everything a backend needs about its own node when it registers. */
export interface LocalLease {
  readonly lease: Lease;
  readonly config: NetworkConfig;
  readonly iface: ExternalInterface;
}

/** What a backend publishes for peers, per family (Flannel's BackendData / BackendV6Data). */
export interface BackendData {
  readonly v4?: JsonValue;
  readonly v6?: JsonValue;
}

/**
 * Outcome of programming one peer; surfaced in status and metrics. Besides `programmed`: `unreachable` (the
 * backend cannot reach it by design, says why), `pending` (it has not published its data yet; logged at info),
 * `skipped` (its lease is unusable); see PeerRefusal.
 */
export type PeerStatus = { readonly state: "programmed" } | PeerRefusal;

/**
 * What a backend reports about its own datapath, beyond the peers' states: the agent shows it in `/status`
 * (`backend`), in `weftctl status`, and as metrics (`weft_backend_info{type,datapath} 1` and one gauge
 * `weft_backend_<name>{type}` per entry of `gauges`). Never put a secret (key, PSK, password) in it: it is served
 * unauthenticated.
 */
export interface BackendStatus {
  /**
   * How the backend carries packets right now, when it has a choice (ipsec: `kernel` or `libipsec`). Letters,
   * digits, `.`, `_` and `-`, at most 64 characters; anything else is dropped with a warning.
   */
  readonly datapath?: string;
  /** Why that datapath, in one short line (e.g. `auto: kernel lacks ESP`). */
  readonly reason?: string;
  /**
   * Counts the operator can graph or alert on, by snake_case name (`[a-z][a-z0-9_]*`, at most 48 characters, not
   * `info`): e.g. ipsec's `connections_loaded`, `sas_up`. Each becomes the gauge `weft_backend_<name>{type}`.
   * Finite numbers only; a name that breaks the rules is dropped with a warning.
   */
  readonly gauges?: Readonly<Record<string, number>>;
}

/**
 * A backend's implementation for one agent, bound to BACKEND by BackendModule.register. The agent calls
 * registerSubnet once, then addPeer/removePeer as leases come and go, then close. A backend describes kernel
 * objects on the Datapath; it never changes the kernel itself.
 */
export interface Backend {
  /** Create or adopt the local devices for this node's lease; return the data peers need. Idempotent. */
  registerSubnet(local: LocalLease): Promise<BackendData>;
  /**
   * Describe the kernel objects for a peer. The agent has screened it already (registered, same Backend.Type,
   * no overlap with this node's subnet, at least one family in common: `peer.subnets`); `peer.endpoint(family,
   * schema)` gives its PublicIP and parsed data or the status to return. Idempotent: adding a known peer again
   * changes nothing. Never throws for a bad lease (return a status) and never logs the reason (the agent does).
   */
  addPeer(peer: Peer): Promise<PeerStatus>;
  /** Forget a peer. Idempotent: an unknown peer is not an error. */
  removePeer(peer: Lease): Promise<void>;
  /** `restart` leaves the datapath up for the next agent to adopt; `teardown` removes what this backend owns. */
  close(mode: "restart" | "teardown"): Promise<void>;
  /**
   * Optional: the backend's own status (datapath, reason, gauges; see BackendStatus). The agent asks for it when
   * `/status` or `/metrics` is read and on every resync, after registerSubnet; keep it cheap, and never throw for a
   * datapath that is down (report it in the gauges). No secrets.
   */
  status?(): Promise<BackendStatus>;
}

/**
 * The warnings a parsed backend config carries in a `warnings` array of strings, or none. The agent (and the
 * test agent of @weft/backend-testkit) log them once after parsing.
 */
export function configWarnings(config: unknown): readonly string[] {
  const w = typeof config === "object" && config !== null ? (config as { warnings?: unknown }).warnings : undefined;
  return Array.isArray(w) ? w.filter((x): x is string => typeof x === "string") : [];
}

/**
 * What a backend package default-exports: its type name, config schema, MTU overhead, optional preflight
 * checks, and `register`, which binds its Backend. Importing the module has no side effects.
 */
export interface BackendModule<C = unknown> {
  /** Matched case-insensitively against Backend.Type; kebab-case by convention (`host-gw`). */
  readonly type: string;
  /**
   * Validates the Backend section of net-conf.json (the whole object, `Type` included). A parsed config may
   * carry `warnings: readonly string[]` (unknown keys, accepted but ignored values): the agent logs each once,
   * right after parsing (configWarnings), so the backend does not log them itself.
   */
  readonly configSchema: Schema<C>;
  /**
   * True when the backend can carry IPv6 pod traffic (dual-stack or IPv6-only). The agent tells the store (kube
   * mode runs IPv6 only for such backend types; without it EnableIPv6 runs IPv4 only, with a warning). Default
   * false.
   */
  readonly dualStack?: boolean;
  /** Bytes of encapsulation the backend adds for an underlay of `family`; 0 when it does not encapsulate. */
  mtuOverhead(config: C, family: Family): number;
  /**
   * The underlay MTU the backend was configured with (Flannel's `MTU` key of vxlan and wireguard), when it
   * overrides the interface's. The agent advertises (this ?? interface MTU) − mtuOverhead as the pod MTU.
   */
  underlayMtu?(config: C): number | undefined;
  /**
   * Checks that need no lease and change nothing: the validated config against the network config and the chosen
   * interface (a NAT'd public IP for host-gw, a family without an interface address, a device name too long).
   * The agent calls it before it touches the store or the node; throw ConfigError/WeftError CONFIG_INVALID with
   * one line naming the problem and the fix. registerSubnet may repeat the checks; it must not be the first to
   * find a configuration error.
   */
  preflight?(config: C, network: NetworkConfig, iface: ExternalInterface): void;
  /**
   * Link kinds the backend's devices use that Weft does not define (a GRE-style tunnel, say): how each is
   * created, read back, compared and modelled by the FakeKernel. The agent hands them to its KernelPort and
   * the datapath engine (the LINK_KINDS token of @weft/kernel) before the backend runs, so the backend declares
   * `{ kind: "gre", attrs: {...} }` links like any other.
   */
  readonly linkKinds?: readonly LinkKindDefinition[];
  /** Binds the module's Backend implementation to BACKEND in the agent's child container. */
  register(container: DependencyContainer): void;
}

/**
 * Where a backend writes its intent. Objects are grouped by owner (e.g. `local`, or a peer's subnet key) so a
 * removed peer retracts exactly what it declared. `flush` applies pending changes now; the agent also runs a
 * full reconcile on a timer, which repairs drift and prunes owned objects nobody declares.
 */
export interface Datapath {
  /**
   * Sets everything `owner` wants, replacing what it declared before; objects it no longer lists are removed on
   * the next flush.
   */
  declare(owner: string, objects: KernelObjects): void;
  /**
   * Withdraws everything `owner` declared; the objects are removed on the next flush. An unknown owner is not
   * an error.
   */
  retract(owner: string): void;
  /** The objects currently declared by `owner` (undefined when none). */
  declared(owner: string): KernelObjects | undefined;
  /**
   * Applies pending declarations and retractions to the kernel now. Resolves when the pass ends; per-object
   * failures are retried by later passes, not thrown.
   */
  flush(): Promise<void>;
}

/**
 * True when `x` has the shape of a BackendModule (type, configSchema.parse, mtuOverhead, register); how the
 * agent checks a module it loads.
 */
export function isBackendModule(x: unknown): x is BackendModule {
  if (x === null || typeof x !== "object") return false;
  const m = x as Record<string, unknown>;
  return (
    typeof m.type === "string" &&
    m.type.length > 0 &&
    typeof m.mtuOverhead === "function" &&
    typeof m.register === "function" &&
    (m.dualStack === undefined || typeof m.dualStack === "boolean") &&
    typeof m.configSchema === "object" &&
    m.configSchema !== null &&
    typeof (m.configSchema as Record<string, unknown>).parse === "function"
  );
}
