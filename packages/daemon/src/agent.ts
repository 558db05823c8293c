/**
 * The agent's run loop (reference/flannel.md §1.2 is the floor):
 *
 *   configure   config → backend module + its config → interface and public IP (nothing on the node changed)
 *   join        the agent core (@weft/reconcile AgentCore, shared with the backend test kit): acquire lease →
 *               register subnet (devices) → publish backend data
 *   node setup  subnet.env → traffic rules
 *   peers       watch peers: every event goes through the core's PeerSet (screened once: the peer preamble)
 *               to the backend; the datapath engine applies them in coalesced batches
 *   → after the first snapshot, a full reconcile with prune removes peers that vanished while we were down
 *   → every --resync-interval: full reconcile (repairs drift), traffic rules re-checked, failed peers retried.
 *
 * Stopping (SIGTERM/SIGINT) leaves devices, routes and rules in place for the next agent to adopt.
 */
import "reflect-metadata";
import {
  Backoff,
  type BackendModule,
  type BackendRegistry,
  type ExternalInterface,
  type IPNet,
  type Lease,
  type Logger,
  type NetworkConfig,
  type SubnetManager,
  configWarnings,
  errorMessage,
  isWeftError,
  sleep,
} from "@weft/core";
import { type KernelPort, type ProcessRunner } from "@weft/kernel";
import { AgentCore, type DatapathEngine, type DriftPlan, type PeerSet, type ReconcileReport, podMtu } from "@weft/reconcile";
import { container as rootContainer } from "tsyringe";
import { type CheckedBackendStatus, checkBackendStatus } from "./backend-status.js";
import type { Flags } from "./flags.js";
import type { AgentMetrics } from "./metrics.js";
import { readSubnetFile, writeSubnetFile } from "./subnet-file.js";

export interface TrafficFamilyPlan {
  readonly network: IPNet;
  readonly subnet: IPNet;
  readonly previous?: { readonly network: IPNet; readonly subnet: IPNet };
}
export interface TrafficPlan {
  readonly v4?: TrafficFamilyPlan;
  readonly v6?: TrafficFamilyPlan;
  readonly masquerade: boolean;
  readonly forward: boolean;
  readonly fullyRandom: boolean;
}
export interface TrafficRulesPort {
  ensure(plan: TrafficPlan): Promise<{ changed: boolean }>;
  cleanup(): Promise<void>;
}

export interface InterfaceChoice {
  iface: string[];
  ifaceRegex: string[];
  ifaceCanReach?: string;
  publicIP?: string;
  publicIPv6?: string;
  families: { v4: boolean; v6: boolean };
}

export interface AgentDeps {
  readonly flags: Flags;
  readonly logger: Logger;
  readonly kernel: KernelPort;
  readonly runner: ProcessRunner;
  readonly registry: BackendRegistry;
  readonly metrics: AgentMetrics;
  readonly subnetManager: SubnetManager;
  chooseInterface(kernel: KernelPort, choice: InterfaceChoice): Promise<ExternalInterface>;
  /** Traffic rules for the mode in use; the other mode is cleaned up. */
  trafficRules(mode: "iptables" | "nftables"): { rules: TrafficRulesPort; cleanupOther(): Promise<void> };
  /** Public IPs stored on the node (kube `node-public-ip` annotations); they override the flags. */
  storedPublicIPs?(signal: AbortSignal): Promise<{ v4?: string; v6?: string }>;
  /** How long to wait for a fully programmed datapath before announcing the node ready anyway (READY_GRACE_MS). */
  readonly readyGraceMs?: number;
}

 /** Metric of the --ip-blackhole-route routes (below every real route to the same subnet). */
export const BLACKHOLE_METRIC = 65535;
/** How long the agent waits for the first fully programmed datapath before it announces the node ready anyway. */
export const READY_GRACE_MS = 60_000;

type Phase = "starting" | "lease" | "subnet-file" | "peers" | "running" | "stopped";

/** What phase `configure` settles: the network config, the backend module and its config, the interface. */
interface Setup {
  readonly config: NetworkConfig;
  readonly module: BackendModule;
  readonly backendConfig: unknown;
  readonly iface: ExternalInterface;
  /** The pod MTU the agent advertises. */
  readonly mtu: number;
}

export class Agent {
  private phase: Phase = "starting";
  /** The agent core (backend, engine, peers) once wired. */
  private core?: AgentCore;
  private engine?: DatapathEngine;
  private lastFailures = 0;
  private firstReconcileDone = false;
  /** The store's running counts as of the last metrics update. */
  private readonly storeCounts = { malformed: 0, reconnects: 0 };
  /** The PeerSet's skip counts as of the last metrics update. */
  private readonly peerSkipCounts = new Map<string, number>();
  /** Backend.Type of the running backend (once wired). */
  private backendType?: string;
  /** The backend's last good status (Backend.status), and the status problems already logged. */
  private lastBackendStatus?: CheckedBackendStatus;
  private readonly backendStatusLogged = new Set<string>();
  lease?: Lease;
  mtu?: number;
  /** Why the agent is not following its store right now (its peer watch failed and is being retried). */
  private watchProblem?: string;
  /** Called after every pass; starts the lease keeper the first time the agent is ready. */
  private onReady: () => void = () => undefined;

  constructor(private readonly deps: AgentDeps) {}

  ready(): { ready: boolean; reason: string } {
    if (this.phase !== "running") return { ready: false, reason: `phase ${this.phase}` };
    // Not following the store: peers added or removed meanwhile are not programmed (weft_ready must say so).
    if (this.watchProblem) return { ready: false, reason: this.watchProblem };
    const stalled = this.storeWatchStalled();
    if (stalled) return { ready: false, reason: stalled };
    // A peer the kernel refuses outright (KERNEL_INVALID, e.g. host-gw's "Nexthop has invalid gateway") is shown
    // failed in /status but does not hold readiness (AgentCore.blockingKernelFailures, PeerSet.retryableFailures).
    const blocking = this.lastFailures > 0 ? (this.core?.blockingKernelFailures() ?? this.lastFailures) : 0;
    if (blocking > 0) return { ready: false, reason: `${blocking} kernel objects not programmed` };
    // Unreachable and skipped peers are known and reported (/status, weft_peers); a peer whose programming
    // failed is not, and the agent retries it every resync.
    const failed = this.core?.peers?.retryableFailures() ?? 0;
    if (failed > 0) return { ready: false, reason: `${failed} peers failed to program` };
    return { ready: true, reason: "" };
  }

  peerStatuses() {
    return this.core?.peers?.statuses() ?? [];
  }

  /** What /drift shows: the changes a full reconcile would make now (nothing while the agent is starting). */
  async drift(): Promise<DriftPlan[]> {
    return this.engine && this.phase === "running" ? this.engine.plan() : [];
  }

  /**
   * What /status shows: this node's lease, MTU, readiness, the backend's own status (`backend`: datapath, reason,
   * gauges; only for a backend with Backend.status) and every peer with its state and reason.
   */
  async status() {
    const backend = await this.refreshBackendStatus();
    return {
      phase: this.phase,
      ...this.ready(),
      subnet: this.lease?.subnet?.toString(),
      ipv6Subnet: this.lease?.ipv6Subnet?.toString(),
      publicIP: this.lease?.attrs.publicIP?.toString(),
      publicIPv6: this.lease?.attrs.publicIPv6?.toString(),
      backendType: this.lease?.attrs.backendType,
      ...(backend ? { backend } : {}),
      mtu: this.mtu,
      peers: this.peerStatuses(),
    };
  }

  /** Before /metrics is rendered: the backend's gauges read now, and weft_ready as of now (never throws). */
  async refreshMetrics(): Promise<void> {
    this.deps.metrics.ready.set(this.ready().ready ? 1 : 0);
    await this.refreshBackendStatus();
  }

  /**
   * A store that knows its peer watch is down says so in its stats (`watchConnected: false`, optional): the
   * agent is then not ready, with the reason.
   */
  private storeWatchStalled(): string | undefined {
    const stats = (this.deps.subnetManager as unknown as { stats?: { watchConnected?: unknown } }).stats;
    return stats?.watchConnected === false ? `the store's peer watch is disconnected (${this.deps.subnetManager.name}); reconnecting` : undefined;
  }

  /**
   * The backend's own status (Backend.status), checked (checkBackendStatus), shown as weft_backend_info and the
   * weft_backend_<gauge> gauges. Undefined before registerSubnet ran and for a backend without Backend.status. If
   * it fails, the last good status stays shown and the failure is logged once per distinct message.
   */
  private async refreshBackendStatus(): Promise<CheckedBackendStatus | undefined> {
    const backend = this.core?.backend;
    const type = this.backendType;
    if (!backend || !type || !this.lease) return undefined;
    const once = (line: string) => {
      if (this.backendStatusLogged.has(line)) return;
      // Bounded: a backend whose errors differ every time is logged again after 100 distinct lines.
      if (this.backendStatusLogged.size >= 100) this.backendStatusLogged.clear();
      this.backendStatusLogged.add(line);
      this.deps.logger.warn(line);
    };
    if (backend.status) {
      try {
        this.lastBackendStatus = checkBackendStatus(type, await backend.status(), once);
      } catch (err) {
        once(`backend ${type}: reading its status failed (showing the last one): ${errorMessage(err)}`);
      }
    }
    this.deps.metrics.backend.set(type, this.lastBackendStatus);
    return this.lastBackendStatus;
  }

  /**
   * Runs until `signal` aborts (resolves) or the agent cannot go on (rejects). The phases, in order: configure
   * (nothing on the node changes), join (the agent core: lease, registerSubnet, publish), node setup (subnet.env,
   * traffic rules), peers (the store's lease stream through the core's PeerSet, the lease keeper, readiness and
   * the resync timer), stop.
   */
  async run(signal: AbortSignal): Promise<void> {
    // Every startup phase checks the abort (a SIGTERM during startup): the agent then stops like a normal stop
    // (the backend closed for a restart, the store closed; whatever is on the node stays for the next agent).
    let core: AgentCore | undefined;
    let started: { core: AgentCore; lease: Lease; traffic: { rules: TrafficRulesPort; steadyPlan: TrafficPlan } };
    try {
      const setup = await this.configure(signal);
      if (signal.aborted) return await this.stopInterrupted(core);
      core = this.wire(setup);
      const lease = await this.join(core, setup, signal);
      if (signal.aborted) return await this.stopInterrupted(core);
      const traffic = await this.setUpNode(setup, lease);
      if (signal.aborted) return await this.stopInterrupted(core);
      started = { core, lease, traffic };
    } catch (err) {
      // What an aborted step throws (AbortError, or a store's error for the cancelled call) is the stop itself.
      if (!signal.aborted) throw err;
      this.deps.logger.debug(`startup interrupted: ${errorMessage(err)}`);
      return await this.stopInterrupted(core);
    }
    await this.runPeers(started.core, started.lease, started.traffic, signal);
  }

  /** Phase `stop` for a startup that was interrupted: what runPeers does when it ends. */
  private async stopInterrupted(core: AgentCore | undefined): Promise<void> {
    const { logger, subnetManager: sm } = this.deps;
    this.phase = "stopped";
    this.deps.metrics.ready.set(0);
    await core?.settled().catch(() => undefined);
    await core?.backend.close("restart").catch((err) => logger.warn(`backend close: ${errorMessage(err)}`));
    await sm.close?.().catch((err) => logger.warn(`store close: ${errorMessage(err)}`));
  }

  /**
   * Phase `configure`: the network config, the backend module and its config, the interface and public IP,
   * the pod MTU and the module's preflight. Everything is validated before anything on the node is touched.
   */
  private async configure(signal: AbortSignal): Promise<Setup> {
    const { flags, logger, subnetManager: sm, registry, kernel } = this.deps;
    // The store learns which backend types may run IPv6 from the modules themselves (BackendModule.dualStack).
    sm.setIPv6BackendTypes?.(registry.types().filter((t) => registry.get(t).dualStack === true));
    const config = await sm.getNetworkConfig(signal);
    // config.warnings were logged by the subnet manager that parsed the config (once, not twice: issue 15 #12).
    const module = registry.get(config.backendType);
    const backendConfig = module.configSchema.parse(config.backend, `${config.source}: Backend`);
    for (const w of configWarnings(backendConfig)) logger.warn(w);
    const stored = (await this.deps.storedPublicIPs?.(signal)) ?? {};
    const iface = await this.deps.chooseInterface(kernel, {
      iface: flags.iface,
      ifaceRegex: flags["iface-regex"],
      ...(flags["iface-can-reach"] ? { ifaceCanReach: flags["iface-can-reach"] } : {}),
      ...((stored.v4 ?? flags["public-ip"]) ? { publicIP: stored.v4 ?? flags["public-ip"] } : {}),
      ...((stored.v6 ?? flags["public-ipv6"]) ? { publicIPv6: stored.v6 ?? flags["public-ipv6"] } : {}),
      families: { v4: config.enableIPv4, v6: config.enableIPv6 },
    });
    const mtu = podMtu(module, backendConfig, config, iface).mtu;
    this.mtu = mtu;
    // Backend checks that need no lease (NAT'd public IP for host-gw, a family without an address, ...): they
    // must fail before the store or the node is touched.
    module.preflight?.(backendConfig, config, iface);
    logger.info("configuration valid", {
      backend: module.type,
      iface: iface.name,
      publicIP: iface.extAddr?.toString(),
      publicIPv6: iface.extV6Addr?.toString(),
      mtu,
      store: sm.name,
    });
    return { config, module, backendConfig, iface, mtu };
  }

  /** Phase `wire`: the agent core (the backend's container, the datapath engine, the backend). */
  private wire(setup: Setup): AgentCore {
    const { flags, logger, kernel, runner, subnetManager } = this.deps;
    const core = AgentCore.wire({
      parent: rootContainer,
      module: setup.module,
      logger,
      network: setup.config,
      backendConfig: setup.backendConfig,
      iface: setup.iface,
      kernel,
      runner,
      stateDir: flags["state-dir"],
      store: subnetManager,
      onFlushed: (r) => {
        this.lastFailures = r.failures;
        for (const k of r.kinds) for (const f of k.failures) this.deps.metrics.kernelErrors.inc({ kind: k.kind, code: f.error?.code ?? "unknown" });
      },
      afterFlush: () => {
        this.deps.metrics.ready.set(this.ready().ready ? 1 : 0);
        this.onReady();
      },
    });
    this.core = core;
    this.engine = core.engine;
    this.backendType = setup.module.type;
    return core;
  }

  /**
   * Phase `join` (the agent core's): lease, devices, published data; in between, forwarding on and the
   * --ip-blackhole-route routes declared. Ends with one flush.
   */
  private async join(core: AgentCore, setup: Setup, signal: AbortSignal): Promise<Lease> {
    const { flags, logger } = this.deps;
    this.phase = "lease";
    const lease = await core.join(signal, {
      leased: (l) => logger.info("lease acquired", { subnet: l.subnet?.toString(), ipv6Subnet: l.ipv6Subnet?.toString() }),
      registered: async (l) => {
        await this.ensureForwarding(setup.config);
        if (flags["ip-blackhole-route"]) {
          // Traffic to addresses of this node's subnet that no pod holds is dropped here instead of following a
          // default route out (Flannel's --ip-blackhole-route, for setups without a bridge owning the subnet).
          const routes = [l.subnet, l.ipv6Subnet]
            .filter((n): n is IPNet => n !== undefined)
            // A high metric: the bridge's connected route for the same subnet (metric 0) wins wherever it exists.
            .map((n) => ({ family: n.family, dst: n.toString(), type: "blackhole" as const, metric: BLACKHOLE_METRIC }));
          core.engine.declare("weft:blackhole", { routes });
        }
      },
    });
    this.lease = lease;
    this.setLeaseMetric(lease);
    await this.flush();
    await this.refreshBackendStatus();
    return lease;
  }

  /** Phase `node setup`: subnet.env, the bridge-netfilter check and the traffic rules (first pass). */
  private async setUpNode({ config, mtu }: Setup, lease: Lease): Promise<{ rules: TrafficRulesPort; steadyPlan: TrafficPlan }> {
    const { flags, logger } = this.deps;
    this.phase = "subnet-file";
    const previous = readSubnetFile(flags["subnet-file"]);
    if (previous.error) logger.warn(`ignoring the previous subnet file: ${previous.error}`);
    writeSubnetFile(flags["subnet-file"], {
      ...(config.v4 ? { network: config.v4.network } : {}),
      ...(lease.subnet ? { subnet: lease.subnet } : {}),
      ...(config.v6 ? { ipv6Network: config.v6.network } : {}),
      ...(lease.ipv6Subnet ? { ipv6Subnet: lease.ipv6Subnet } : {}),
      mtu,
      ipMasq: flags["ip-masq"],
    });
    if (!config.enableNFTables) await this.checkBridgeNetfilter(config);
    const traffic = this.deps.trafficRules(config.enableNFTables ? "nftables" : "iptables");
    await traffic.cleanupOther();
    await traffic.rules.ensure(this.trafficPlan(config, lease, previous.env));
    // The previous network/subnet only matters for the first pass (removing stale rules).
    return { rules: traffic.rules, steadyPlan: this.trafficPlan(config, lease, undefined) };
  }

  /**
   * Phase `peers`, until stopped: the lease keeper, the announcement of readiness, the watch of the store's
   * lease stream (through the core's PeerSet) and the resync timer; then phase `stop`.
   */
  private async runPeers(core: AgentCore, lease: Lease, traffic: { rules: TrafficRulesPort; steadyPlan: TrafficPlan }, signal: AbortSignal): Promise<void> {
    const { logger, subnetManager: sm } = this.deps;
    this.phase = "peers";
    const peers = core.startPeers();
    const inner = new AbortController();
    const stop = () => inner.abort();
    // A signal that aborted before this listener exists never fires it: check first.
    if (signal.aborted) inner.abort();
    else signal.addEventListener("abort", stop, { once: true });
    let fatal: unknown;
    const fail = (err: unknown) => {
      if (!inner.signal.aborted) {
        fatal = err;
        inner.abort();
      }
    };

    // The lease keeper (etcd renewal, the watch of this node's own lease) runs from now on.
    const keeper = sm.completeLease(lease, inner.signal).catch(fail);
    const announcing = this.announceWhenReady(lease, inner.signal, fail);
    const watcher = this.watchPeers(core, peers, lease, inner.signal, fail);
    const resync = this.resyncLoop(peers, traffic, inner.signal);

    await Promise.all([keeper, watcher, resync]);
    await announcing.settled();
    await core.settled();
    signal.removeEventListener("abort", stop);
    // Phase `stop`: the datapath stays up for the next agent.
    this.phase = "stopped";
    await core.backend.close("restart").catch((err) => logger.warn(`backend close: ${errorMessage(err)}`));
    await sm.close?.().catch((err) => logger.warn(`store close: ${errorMessage(err)}`));
    if (fatal !== undefined) throw fatal;
  }

  /**
   * The store is told the node is ready (kube: NetworkUnavailable=False, so pods get scheduled here) only once
   * the datapath is programmed for every known peer; if programming keeps failing, after READY_GRACE_MS, saying
   * why: a node that never becomes schedulable because one peer's route fails would be worse.
   */
  private announceWhenReady(lease: Lease, signal: AbortSignal, fail: (err: unknown) => void): { settled(): Promise<void> } {
    const { logger, subnetManager: sm } = this.deps;
    let announcing: Promise<void> | undefined;
    const graceMs = this.deps.readyGraceMs ?? READY_GRACE_MS;
    const announce = () => {
      clearTimeout(grace);
      announcing = sm.markReady && !signal.aborted ? sm.markReady(lease, signal).catch(fail) : Promise.resolve();
    };
    this.onReady = () => {
      if (!announcing && this.ready().ready) announce();
    };
    const grace = setTimeout(() => {
      if (announcing) return;
      logger.warn(`not every peer is programmed after ${graceMs / 1000} s (${this.ready().reason}); announcing the node ready anyway`);
      announce();
    }, graceMs);
    signal.addEventListener("abort", () => clearTimeout(grace), { once: true });
    return { settled: async () => void (await announcing) };
  }

  /**
   * The store's lease stream into the PeerSet: after the first snapshot, a full reconcile with prune (removes
   * peers that vanished while the agent was down) and the node is running; later events are flushed coalesced.
   * A transient failure of the watch is retried with backoff; anything else is fatal.
   */
  private async watchPeers(core: AgentCore, peers: PeerSet, lease: Lease, signal: AbortSignal, fail: (err: unknown) => void): Promise<void> {
    const { logger, subnetManager: sm } = this.deps;
    const backoff = new Backoff({ minMs: 100, maxMs: 5_000, jitter: 0 });
    while (!signal.aborted) {
      try {
        for await (const ev of sm.watchLeases(lease, signal)) {
          backoff.reset();
          if (this.watchProblem) {
            this.watchProblem = undefined;
            logger.info("lease watch restored");
          }
          const changed = await peers.apply(ev);
          if (ev.type === "snapshot" && !this.firstReconcileDone) {
            await this.reconcile(true);
            this.firstReconcileDone = true;
            this.phase = "running";
            this.onReady();
            await this.refreshBackendStatus();
            const counts = peers.counts();
            const waiting = (counts.pending ?? 0) + (counts.skipped ?? 0) + (counts.unreachable ?? 0) + (counts.failed ?? 0);
            logger.info(
              waiting === 0 ? "datapath programmed for every known peer" : `datapath programmed; ${waiting} of ${waiting + (counts.programmed ?? 0)} peers not (yet) programmed, see /status`,
              { peers: counts },
            );
          } else if (changed) {
            // Not awaited: events that arrive while a flush runs are applied together by the next one.
            core.requestFlush();
          }
          this.updatePeerMetrics();
        }
        if (!signal.aborted) throw new Error("lease watch ended unexpectedly");
      } catch (err) {
        if (signal.aborted) return;
        if (isWeftError(err) && !err.transient) return fail(err);
        const delay = backoff.next();
        logger.warn(`lease watch failed, retrying in ${delay} ms: ${errorMessage(err)}`);
        this.watchProblem = `the store's peer watch failed (${errorMessage(err).slice(0, 200)}); retrying`;
        this.deps.metrics.ready.set(0);
        await sleep(delay, signal);
      }
    }
  }

  /** Every --resync-interval: failed peers retried, a full reconcile (repairs drift), traffic rules re-checked. */
  private async resyncLoop(peers: PeerSet, traffic: { rules: TrafficRulesPort; steadyPlan: TrafficPlan }, signal: AbortSignal): Promise<void> {
    const { flags, logger } = this.deps;
    while (!signal.aborted) {
      await sleep(flags["resync-interval"] * 1000, signal);
      if (signal.aborted) return;
      try {
        if (await peers.retryFailed()) await this.flush();
        await this.reconcile(peers.snapshotSeen);
        this.onReady();
        const r = await traffic.rules.ensure(traffic.steadyPlan);
        if (r.changed) {
          this.deps.metrics.trafficRuleRepairs.inc();
          logger.warn("traffic rules had drifted and were rewritten");
        }
        this.updatePeerMetrics();
        await this.refreshBackendStatus();
      } catch (err) {
        logger.error(`resync failed: ${errorMessage(err)}`);
      }
    }
  }

  /** Applies pending peer changes now; its failures count for readiness like a full pass's. */
  private async flush(): Promise<void> {
    await this.core!.flush();
    this.deps.metrics.ready.set(this.ready().ready ? 1 : 0);
  }

  private async reconcile(prune: boolean): Promise<ReconcileReport> {
    const engine = this.engine!;
    const report = await engine.reconcile({ prune });
    const m = this.deps.metrics;
    m.reconcileDuration.observe({ prune: String(prune) }, report.durationMs / 1000);
    for (const k of report.kinds) {
      // Changes made by a periodic pass are repairs of drift (someone or something changed the kernel).
      if (this.firstReconcileDone) {
        const n = k.added + k.updated + k.removed;
        if (n > 0) {
          m.driftRepairs.inc({ kind: k.kind }, n);
          this.deps.logger.warn("repaired kernel drift", { kind: k.kind, added: k.added, updated: k.updated, removed: k.removed, examples: k.drifts.slice(0, 3) });
        }
      }
      for (const f of k.failures) m.kernelErrors.inc({ kind: k.kind, code: f.error?.code ?? "unknown" });
    }
    this.lastFailures = report.failures;
    m.ready.set(this.ready().ready ? 1 : 0);
    return report;
  }

  private updatePeerMetrics() {
    const m = this.deps.metrics;
    const counts = this.core?.peers?.counts() ?? {};
    for (const [state, n] of Object.entries(counts)) m.peers.set({ state }, n);
    m.ready.set(this.ready().ready ? 1 : 0);
    // The stores keep their own running counts (etcd: watchReconnects, kube: watchFailures); the counters
    // advance by what is new since the last look.
    const stats = (this.deps.subnetManager as unknown as { stats?: { malformedPeers?: number; watchReconnects?: number; watchFailures?: number } }).stats;
    const advance = (c: { inc(n: number): void }, key: "malformed" | "reconnects", now: number) => {
      const before = this.storeCounts[key];
      if (now > before) c.inc(now - before);
      this.storeCounts[key] = now;
    };
    advance(m.malformedPeers, "malformed", stats?.malformedPeers ?? 0);
    advance(m.watchReconnects, "reconnects", stats?.watchReconnects ?? stats?.watchFailures ?? 0);
    // Peers skipped, by reason (counted once per change of a peer's state, like its log line).
    for (const [reason, n] of Object.entries(this.core?.peers?.skips ?? {})) {
      const before = this.peerSkipCounts.get(reason) ?? 0;
      if (n > before) m.peerSkips.inc({ reason }, n - before);
      this.peerSkipCounts.set(reason, n);
    }
    const expiry = this.deps.subnetManager.leaseExpiration?.();
    if (expiry !== undefined) m.leaseExpiry.set(expiry ? expiry.getTime() / 1000 : 0);
  }

  private setLeaseMetric(lease: Lease) {
    this.deps.metrics.leaseExpiry.set(lease.expiration ? lease.expiration.getTime() / 1000 : 0);
  }

  private trafficPlan(config: NetworkConfig, lease: Lease, prev: ReturnType<typeof readSubnetFile>["env"]): TrafficPlan {
    const flags = this.deps.flags;
    const fam = (network?: IPNet, subnet?: IPNet, pNet?: IPNet, pSub?: IPNet): TrafficFamilyPlan | undefined => {
      if (!network || !subnet) return undefined;
      const changed = pNet && pSub && (!pNet.equals(network) || !pSub.equals(subnet));
      return { network, subnet, ...(changed ? { previous: { network: pNet!, subnet: pSub! } } : {}) };
    };
    const v4 = fam(config.v4?.network, lease.subnet, prev?.network, prev?.subnet?.network);
    const v6 = fam(config.v6?.network, lease.ipv6Subnet, prev?.ipv6Network, prev?.ipv6Subnet?.network);
    return {
      ...(v4 ? { v4 } : {}),
      ...(v6 ? { v6 } : {}),
      masquerade: flags["ip-masq"],
      forward: flags["iptables-forward-rules"],
      fullyRandom: !flags["ip-masq-fully-random-disable"],
    };
  }

  /**
   * Kubernetes Services on bridged pods need br_netfilter (the bridge must hand frames to iptables). Flannel
   * exits without it since kubeadm stopped checking; that also breaks rootless setups that do not need it
   * (flannel#2254). Weft says it once, with the fix, and carries on.
   */
  private async checkBridgeNetfilter(config: NetworkConfig) {
    const keys = [...(config.enableIPv4 ? ["net.bridge.bridge-nf-call-iptables"] : []), ...(config.enableIPv6 ? ["net.bridge.bridge-nf-call-ip6tables"] : [])];
    for (const key of keys) {
      const v = await this.deps.kernel.getSysctl(key).catch(() => undefined);
      if (v === undefined) {
        this.deps.logger.warn(`${key} does not exist: the br_netfilter module is not loaded, so Services will not work for pods on a bridge; run modprobe br_netfilter (and load it at boot), or set EnableNFTables`);
      } else if (v.trim() !== "1") {
        this.deps.logger.warn(`${key} is ${v.trim()}: bridged pod traffic bypasses iptables, so Services will not work for pods on a bridge; set it to 1`);
      }
    }
  }

  /** Pods on other nodes are only reachable when this node forwards; say so when it had to be switched on. */
  private async ensureForwarding(config: NetworkConfig) {
    const keys = [...(config.enableIPv4 ? ["net.ipv4.ip_forward"] : []), ...(config.enableIPv6 ? ["net.ipv6.conf.all.forwarding"] : [])];
    for (const key of keys) {
      const v = await this.deps.kernel.getSysctl(key);
      if (v.trim() !== "1") {
        await this.deps.kernel.setSysctl(key, "1");
        this.deps.logger.info(`enabled ${key} (it was ${v.trim()}): nodes must forward pod traffic`);
      }
    }
  }
}
