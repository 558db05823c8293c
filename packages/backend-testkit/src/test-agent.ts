/**
 * startTestAgent: one node's agent, minus the daemon's I/O, around the backend under test. It does what weftd
 * does with a backend, through the same public pieces:
 *   BackendRegistry (the given modules) → net-conf.json parsed by core → Backend.Type picks the module → its
 *   schema validates the Backend section → module.preflight (configuration checks, before anything is leased
 *   or changed) → the agent core of @weft/reconcile, as weftd's: the backend's container (the author API) and
 *   the engine's, module.register, the real reconcilers, BACKEND resolved → acquire a lease from a
 *   FakeSubnetManager → registerSubnet → publish the backend data → the store's peers as a snapshot through
 *   the core's PeerSet (screened: the peer preamble; the restarting-peer policy) → coalesced flush → full
 *   reconcile.
 * The kernel is a FakeKernel (@weft/kernel-testing) unless the test passes another KernelPort, e.g. the real
 * LinuxKernel inside a test namespace. Nothing here reaches into the daemon.
 */
import "reflect-metadata";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Backend,
  type BackendData,
  type BackendModule,
  BackendRegistry,
  type Datapath,
  type ExternalInterface,
  IPAddress,
  IPPrefix,
  type KernelObjects,
  type Lease,
  type Logger,
  MemoryLogger,
  configWarnings,
  type NetworkConfig,
  type PeerStatus,
  WeftError,
  parseNetworkConfig,
  subnetKey,
} from "@weft/core";
import { type KernelOp, type KernelPort, type ProcessRunner, throwOnFailure } from "@weft/kernel";
import { FakeKernel, FakeProcessRunner } from "@weft/kernel-testing";
import { AgentCore, type DatapathEngine, type PeerSet, type ReconcileReport, podMtu } from "@weft/reconcile";
import { type DependencyContainer, container as rootContainer } from "tsyringe";
import { FakeSubnetManager, type LocalLeaseChoice } from "./fake-subnet-manager.js";
import { type KernelSnapshot, recreatedLinks, snapshotKernel } from "./kernel-snapshot.js";

/** The node's underlay interface as the test wants it; created in the kernel when missing. */
export interface TestInterface {
  /** Default "eth0". */
  readonly name?: string;
  /** Default 1500. */
  readonly mtu?: number;
  /** IPv4 address with prefix length, e.g. "198.18.0.1/24". Omit for none. */
  readonly address?: string;
  /** IPv6 address with prefix length, e.g. "2001:2::1/64". Omit for none. */
  readonly address6?: string;
  /** The PublicIP to advertise when it is not the interface address (a NATed node). */
  readonly publicIP?: string;
  readonly publicIPv6?: string;
}

/** Options of `startTestAgent`. */
export interface TestAgentOptions {
  /** Backend modules to load (default exports of backend packages); Backend.Type picks one of them. */
  readonly backends: readonly unknown[];
  /** net-conf.json, as text or as an object. */
  readonly config: string | Readonly<Record<string, unknown>>;
  /** The underlay interface; see TestInterface. */
  readonly iface: TestInterface;
  /** This node's subnet choice and the other nodes' leases; or a FakeSubnetManager to share between agents. */
  readonly leases?: (LocalLeaseChoice & { readonly peers?: readonly Lease[] }) | FakeSubnetManager;
  /** Default: a new FakeKernel. Pass the same one to simulate a restart on the same node. */
  readonly kernel?: KernelPort;
  /** Default: a fresh temporary directory, removed by close(). */
  readonly stateDir?: string;
  /** Default: a FakeProcessRunner with no scripts (every program is "missing"); pass one with scripts for tools. */
  readonly processRunner?: ProcessRunner;
  /**
   * Binds fakes of the kernel ports the backend uses (MANAGED_DAEMONS, WIREGUARD, ...) in the agent's container
   * before the module registers; `kernel` is this agent's. Called at every (re)start: give a restarted agent NEW
   * port instances over the same fake state (e.g. `FakeWireGuardHost.agent(kernel)`), as a restarted weftd
   * would have. Default: the Linux adapters over `processRunner`.
   */
  readonly ports?: (container: DependencyContainer, kernel: KernelPort) => void;
  /** The backend's logger (LOGGER). Default: a MemoryLogger (see `agent.logger.records`). */
  readonly logger?: Logger;
  /**
   * Where the agent's own lines go (each peer's state, once per change, as weftd logs them). Default: a new
   * MemoryLogger (`agent.agentLogger`), kept apart from `logger` so a test sees what the backend logged itself.
   */
  readonly agentLogger?: Logger;
}

/** What a restart did to the kernel. */
export interface RestartResult {
  /** Kernel ops issued while the new agent registered, re-added peers and ran its first full reconcile. */
  readonly writes: number;
  /** Links deleted and created again (ifindex changed); adopting agents recreate nothing. */
  readonly recreated: readonly string[];
  readonly reports: readonly ReconcileReport[];
}

/** Records the report of every pass the backend's own flushes trigger. */
class RecordingDatapath implements Datapath {
  constructor(
    private readonly engine: DatapathEngine,
    private readonly record: (r: ReconcileReport) => void,
  ) {}
  declare(owner: string, objects: KernelObjects): void {
    this.engine.declare(owner, objects);
  }
  retract(owner: string): void {
    this.engine.retract(owner);
  }
  declared(owner: string): KernelObjects | undefined {
    return this.engine.declared(owner);
  }
  async flush(): Promise<void> {
    await this.engine.flush();
    if (this.engine.lastReport) this.record(this.engine.lastReport);
  }
}


/**
 * One node's agent around the backend under test, started by `startTestAgent`: the real module loading, DI
 * container and reconcilers on a FakeKernel (or the kernel the test gives), with lease events driven by the
 * test.
 */
export class TestAgent {
  /** Every reconcile pass since start, in order (flushes and full reconciles). */
  readonly reports: ReconcileReport[] = [];
  /** Last status addPeer returned per peer subnet key. */
  readonly statuses = new Map<string, PeerStatus>();
  private core!: AgentCore;
  private closed = false;
  private ports: TestAgentOptions["ports"];

  private constructor(
    readonly kernel: KernelPort,
    readonly store: FakeSubnetManager,
    readonly logger: Logger,
    /** The agent's own log (peer states, once per change); see TestAgentOptions.agentLogger. */
    readonly agentLogger: Logger,
    readonly config: NetworkConfig,
    readonly module: BackendModule,
    readonly backendConfig: unknown,
    readonly iface: ExternalInterface,
    readonly stateDir: string,
    /** The kernel as it was before this agent first touched it (underlay interface in place). */
    readonly initialSnapshot: KernelSnapshot,
    private readonly runner: ProcessRunner,
    private readonly ownsStateDir: boolean,
  ) {}

  /** Same as `startTestAgent`. */
  static async start(options: TestAgentOptions): Promise<TestAgent> {
    const registry = new BackendRegistry();
    for (const [i, m] of options.backends.entries()) registry.add(m, `startTestAgent backends[${i}]`);
    const text = typeof options.config === "string" ? options.config : JSON.stringify(options.config);
    const config = parseNetworkConfig(text, { source: "net-conf.json" });
    const module = registry.get(config.backendType);
    const backendConfig = module.configSchema.parse(config.backend, `${config.source}: Backend`);
    const kernel = options.kernel ?? new FakeKernel({ linkKinds: module.linkKinds ?? [] });
    const iface = await ensureUnderlay(kernel, options.iface);
    const store =
      options.leases instanceof FakeSubnetManager ? options.leases : new FakeSubnetManager(config, options.leases ?? {}, options.leases?.peers ?? []);
    const ownsStateDir = options.stateDir === undefined;
    const stateDir = options.stateDir ?? mkdtempSync(join(tmpdir(), "weft-testkit-"));
    const logger = options.logger ?? new MemoryLogger();
    // As weftd: the config's warnings (unknown keys) are logged once, by the agent, not by the backend.
    for (const w of configWarnings(backendConfig)) logger.warn(w);
    const agent = new TestAgent(
      kernel,
      store,
      logger,
      options.agentLogger ?? new MemoryLogger(),
      config,
      module,
      backendConfig,
      iface,
      stateDir,
      await snapshotKernel(kernel),
      options.processRunner ?? new FakeProcessRunner(),
      ownsStateDir,
    );
    try {
      agent.ports = options.ports;
      await agent.boot();
    } catch (err) {
      if (ownsStateDir) rmSync(stateDir, { recursive: true, force: true });
      throw err;
    }
    return agent;
  }

  /** This node's lease as peers see it: subnets, PublicIP(s), backend type and the data registerSubnet returned. */
  get lease(): Lease {
    return this.core.lease!;
  }

  /** What registerSubnet returned. */
  get backendData(): BackendData {
    return this.core.backendData;
  }

  /** The Backend instance the module bound (a new one after each restart). */
  get backend(): Backend {
    return this.core.backend;
  }

  /** The datapath engine running the reconcilers (a new one after each restart). */
  get engine(): DatapathEngine {
    return this.core.engine;
  }

  /**
   * The backend's DI container: the author API (core tokens, KERNEL_VIEW, the ports) and whatever the module
   * registered; the store and the writable KERNEL are not in it.
   */
  get container(): DependencyContainer {
    return this.core.container;
  }

  /** The agent core's PeerSet: every peer's state as weftd would report it. */
  get peers(): PeerSet {
    return this.core.peers!;
  }

  /** The objects the backend currently declares for a peer (undefined when none). */
  declaredFor(peer: Lease): KernelObjects | undefined {
    return this.core.engine.declared(subnetKey(peer));
  }

  /**
   * A peer lease appears in the store: the agent core screens it and the backend describes it (even when the
   * lease is unchanged: a backend's addPeer must be idempotent), then the coalesced flush runs. A peer that
   * restarts (same lease without backend data yet) keeps its datapath, as in weftd. Throws what the backend
   * threw.
   */
  async addPeer(peer: Lease): Promise<PeerStatus> {
    this.store.putPeer(peer);
    await this.core.applyPeers({ type: "added", lease: peer }, { again: true });
    const status = this.recordStatus(peer);
    await this.flushCoalesced();
    return status;
  }

  /** A peer lease disappears from the store: the backend forgets it, the datapath is flushed. */
  async removePeer(peer: Lease): Promise<void> {
    this.store.removePeer(peer);
    this.statuses.delete(subnetKey(peer));
    await this.core.applyPeers({ type: "removed", lease: peer });
    await this.flushCoalesced();
  }

  /** Applies pending changes (no pruning), as the agent does after each batch of lease events. */
  async flush(): Promise<ReconcileReport> {
    await this.core.flush();
    return this.reports[this.reports.length - 1]!;
  }

  /** The periodic full pass: repairs drift and, with `prune` (default), removes owned objects nobody declares. */
  async reconcile(options: { prune?: boolean } = {}): Promise<ReconcileReport> {
    const r = await this.core.engine.reconcile({ prune: options.prune ?? true });
    this.reports.push(r);
    return r;
  }

  /**
   * Stops this agent the way `weftd` stops for an upgrade (backend.close("restart"): datapath left up) and
   * starts a new one on the same kernel, store and state dir: new container, new engine, new backend
   * instance, registerSubnet, every peer re-added, one full reconcile.
   */
  async restart(): Promise<RestartResult> {
    const before = await snapshotKernel(this.kernel);
    await this.core.backend.close("restart");
    const first = this.reports.length;
    await this.boot();
    const after = await snapshotKernel(this.kernel);
    const reports = this.reports.slice(first);
    return { writes: reports.reduce((n, r) => n + r.writes, 0), recreated: recreatedLinks(before, after), reports };
  }

  /** `restart` (default) leaves the datapath up; `teardown` makes the backend remove what it owns. */
  async close(mode: "restart" | "teardown" = "restart"): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.core.backend.close(mode);
    } finally {
      if (this.ownsStateDir) rmSync(this.stateDir, { recursive: true, force: true });
    }
  }

  private async boot(): Promise<void> {
    // As weftd does: the module's configuration checks run first, so a configuration the backend cannot run
    // with stops the agent before it holds a lease or has changed anything on the node.
    this.module.preflight?.(this.backendConfig, this.config, this.iface);
    // The pod MTU rule weftd applies (a backend whose overhead leaves no usable MTU fails here as there).
    podMtu(this.module, this.backendConfig, this.config, this.iface);
    const core = AgentCore.wire({
      parent: rootContainer,
      module: this.module,
      logger: this.logger,
      peerLogger: this.agentLogger,
      network: this.config,
      backendConfig: this.backendConfig,
      iface: this.iface,
      kernel: this.kernel,
      runner: this.runner,
      ...(this.ports ? { ports: (c: DependencyContainer) => this.ports!(c, this.kernel) } : {}),
      stateDir: this.stateDir,
      store: this.store,
      datapath: (engine) => new RecordingDatapath(engine, (r) => this.reports.push(r)),
    });
    this.core = core;
    await core.join(new AbortController().signal, {
      registered: (_lease, data) => assertJson(data, `${this.module.type}: registerSubnet's BackendData`),
    });
    core.startPeers();
    // The store's peers arrive as weftd gets them: one snapshot.
    const peers = this.store.peers();
    await core.applyPeers({ type: "snapshot", leases: peers });
    this.statuses.clear();
    for (const peer of peers) this.recordStatus(peer);
    await core.flush();
    await this.reconcile({ prune: true });
  }

  /** Records the PeerSet's state of `peer`; a backend that threw has it thrown here. */
  private recordStatus(peer: Lease): PeerStatus {
    const key = subnetKey(peer);
    const state = this.core.peers!.status(key);
    if (!state) throw new Error(`the agent core has no state for peer ${key}`);
    if (state.state === "failed") throw state.cause ?? new Error(state.reason);
    this.statuses.set(key, state);
    return state;
  }

  /** The agent core's coalesced flush, awaited. */
  private async flushCoalesced(): Promise<void> {
    this.core.requestFlush();
    await this.core.settled();
  }
}

/**
 * Starts one node's agent as `weftd` would (module from Backend.Type, config validated, preflight, register,
 * lease, registerSubnet, peers added, one full reconcile) and resolves once that first pass is done. Call
 * `close` when the test ends.
 */
export function startTestAgent(options: TestAgentOptions): Promise<TestAgent> {
  return TestAgent.start(options);
}

/** BackendData must survive the store: JSON in, the same JSON out. */
function assertJson(data: BackendData, what: string): void {
  for (const [k, v] of Object.entries(data)) {
    const text = JSON.stringify(v);
    if (v !== undefined && (text === undefined || JSON.stringify(JSON.parse(text)) !== text)) {
      throw new WeftError("PEER_DATA_INVALID", `${what} ${k} is not plain JSON: peers would receive something else`);
    }
  }
}

/**
 * Makes sure the underlay interface exists with its addresses (created as a bridge: a plain L3 device on the
 * fake and, unlike `dummy`, available inside test namespaces too), and describes it as the daemon would.
 */
export async function ensureUnderlay(kernel: KernelPort, want: TestInterface): Promise<ExternalInterface> {
  const name = want.name ?? "eth0";
  const mtu = want.mtu ?? 1500;
  const v4 = want.address ? IPPrefix.parse(want.address) : undefined;
  const v6 = want.address6 ? IPPrefix.parse(want.address6) : undefined;
  if (v4 && v4.family !== "v4") throw new TypeError(`TestInterface.address ${want.address} is not IPv4`);
  if (v6 && v6.family !== "v6") throw new TypeError(`TestInterface.address6 ${want.address6} is not IPv6`);
  const ops: KernelOp[] = [];
  if (!(await kernel.listLinks()).some((l) => l.name === name)) {
    ops.push({ op: "link.add", link: { name, kind: "bridge", mtu } }, { op: "link.set", name, up: true });
  }
  if (ops.length) throwOnFailure(await kernel.apply(ops));
  const have = new Set((await kernel.listAddresses(name)).map((a) => a.address));
  const addrOps: KernelOp[] = [];
  for (const p of [v4, v6]) if (p && !have.has(p.toString())) addrOps.push({ op: "addr.add", addr: { dev: name, address: p.toString() } });
  if (addrOps.length) throwOnFailure(await kernel.apply(addrOps));
  const link = (await kernel.listLinks()).find((l) => l.name === name)!;
  const publicIP = want.publicIP ? IPAddress.parse(want.publicIP) : v4?.ip;
  const publicIPv6 = want.publicIPv6 ? IPAddress.parse(want.publicIPv6) : v6?.ip;
  return {
    name,
    index: link.index,
    mtu: link.mtu,
    ...(v4 ? { ifaceAddr: v4.ip } : {}),
    ...(v6 ? { ifaceV6Addr: v6.ip } : {}),
    ...(publicIP ? { extAddr: publicIP } : {}),
    ...(publicIPv6 ? { extV6Addr: publicIPv6 } : {}),
  };
}
