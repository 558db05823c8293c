/**
 * The agent core: the one sequence by which an agent runs a backend, shared by weftd and the backend test kit's
 * test agent, in named phases:
 *
 *   wire      the backend module in a child container with the datapath engine (wireBackend)
 *   join      acquire this node's lease → registerSubnet (the backend's devices) → publish the backend data
 *   peers     a PeerSet screening every peer lease against this node's lease (the peer preamble, done once)
 *   flush     coalesced: any number of flush requests made while one runs become one more pass
 *
 * What an agent does around it (weftd: interface choice, forwarding, subnet.env, traffic rules, readiness and
 * metrics; the test agent: recording passes) it does through the hooks, not by repeating the sequence.
 */
import {
  type Backend,
  type BackendData,
  type Family,
  type IPAddress,
  type IPNet,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type Logger,
  type PeerScreenContext,
  type SubnetManager,
  errorMessage,
  leaseSubnet,
  screenPeer,
} from "@weft/core";
import type { DependencyContainer } from "tsyringe";
import { PERMANENT_KERNEL_CODES, PeerSet } from "./agent-core-peers.js";
import type { DatapathEngine, ReconcileReport } from "./datapath.js";
import { type BackendWiringInput, wireBackend } from "./wire.js";

/** The part of the cluster store the core uses: this node's lease. The store never reaches the backend. */
export type LeaseStore = Pick<SubnetManager, "acquireLease" | "updateLease">;

/** What the agent core needs: the wiring of one node plus its lease store. */
export interface AgentCoreInput extends BackendWiringInput {
  /** The container the agent's child container is made from (tsyringe's root container in weftd). */
  readonly parent: DependencyContainer;
  readonly store: LeaseStore;
  /** Where peers' states are logged (once per change); default `logger`. */
  readonly peerLogger?: Logger;
  /** Called with the report of every flush the core runs (not the backend's own flushes). */
  readonly onFlushed?: (report: ReconcileReport) => void;
  /** Called after each coalesced flush run, whether it succeeded or not (weftd: readiness). */
  readonly afterFlush?: () => void;
}

/** Steps of `join` an agent can add to (weftd logs and enables forwarding; the kit checks the data is JSON). */
export interface JoinHooks {
  /** After the lease is acquired, before registerSubnet. */
  leased?(lease: Lease): void | Promise<void>;
  /** After registerSubnet, before its data is published. */
  registered?(lease: Lease, data: BackendData): void | Promise<void>;
}

/** The families this node routes: its lease's subnets in the enabled families. */
function routedSubnets(lease: Lease, network: BackendWiringInput["network"]): Map<Family, IPNet> {
  const out = new Map<Family, IPNet>();
  for (const family of ["v4", "v6"] as const) {
    const subnet = leaseSubnet(lease, family);
    if (subnet && (family === "v4" ? network.enableIPv4 : network.enableIPv6)) out.set(family, subnet);
  }
  return out;
}

/** One node's agent around one backend: wiring, join, screened peers and a coalesced flush. */
export class AgentCore {
  readonly container: DependencyContainer;
  readonly engine: DatapathEngine;
  readonly backend: Backend;
  private readonly flushDatapath: () => Promise<void>;
  private _lease?: Lease;
  private _data: BackendData = {};
  private _peers?: PeerSet;
  private screen?: PeerScreenContext;
  private flushing?: Promise<void>;
  private flushAgain = false;

  private constructor(private readonly input: AgentCoreInput) {
    const wiring = wireBackend(input.parent, input);
    this.container = wiring.container;
    this.engine = wiring.engine;
    this.backend = wiring.backend;
    this.flushDatapath = () => wiring.datapath.flush();
  }

  /** Phase `wire`: the module registered in a child container, the datapath engine, the Backend resolved. */
  static wire(input: AgentCoreInput): AgentCore {
    return new AgentCore(input);
  }

  /** This node's lease once joined (undefined before). */
  get lease(): Lease | undefined {
    return this._lease;
  }

  /** What registerSubnet returned ({} before). */
  get backendData(): BackendData {
    return this._data;
  }

  /** The PeerSet once `startPeers` ran. */
  get peers(): PeerSet | undefined {
    return this._peers;
  }

  /** The attributes this node advertises before its backend data is known: PublicIP(s) and Backend.Type. */
  leaseAttrs(): LeaseAttrs {
    const { iface, network, module } = this.input;
    return {
      ...(iface.extAddr && network.enableIPv4 ? { publicIP: iface.extAddr } : {}),
      ...(iface.extV6Addr && network.enableIPv6 ? { publicIPv6: iface.extV6Addr } : {}),
      backendType: module.type,
    };
  }

  /**
   * Phase `join`: acquire the lease, registerSubnet (the backend's devices), publish the backend data with the
   * lease. Resolves with the published lease.
   */
  async join(signal: AbortSignal, hooks: JoinHooks = {}): Promise<Lease> {
    const attrs = this.leaseAttrs();
    const { store, network, iface } = this.input;
    const lease = await store.acquireLease(attrs, signal);
    await hooks.leased?.(lease);
    const data = await this.backend.registerSubnet({ lease, config: network, iface });
    this._data = data;
    this.screen = undefined;
    await hooks.registered?.(lease, data);
    this._lease = await store.updateLease(
      lease,
      { ...attrs, ...(data.v4 !== undefined ? { backendData: data.v4 } : {}), ...(data.v6 !== undefined ? { backendV6Data: data.v6 } : {}) },
      signal,
    );
    return this._lease;
  }

  /** What peers are screened against: this node's Backend.Type and routed subnets (after `join`). */
  screenContext(): PeerScreenContext | undefined {
    if (!this._lease) return undefined;
    if (!this.screen) {
      const { iface } = this.input;
      // A peer advertising any of these would be routed to this node itself.
      const own = [this._lease.attrs.publicIP, this._lease.attrs.publicIPv6, iface.extAddr, iface.extV6Addr, iface.ifaceAddr, iface.ifaceV6Addr].filter((a): a is IPAddress => a !== undefined);
      this.screen = { backendType: this.input.module.type, subnets: routedSubnets(this._lease, this.input.network), ownAddresses: own };
    }
    return this.screen;
  }

  /**
   * Phase `peers`: the PeerSet that screens every lease against this node's (screenPeer) before the backend
   * sees it; a peer seen before `join` is refused as having arrived before registerSubnet.
   */
  startPeers(): PeerSet {
    this._peers = new PeerSet(
      this.backend,
      this.input.peerLogger ?? this.input.logger,
      (lease) => screenPeer(lease, this.screenContext()),
      () => {
        const report = this.engine.lastReport;
        return { source: report, failures: () => this.engine.failuresByOwner(report) };
      },
    );
    return this._peers;
  }

  /**
   * Kernel failures of the last pass that hold readiness: all of them, except those of peers the kernel refuses
   * outright (PERMANENT_KERNEL_CODES: the peer is reported failed in /status and weft_peers, but one
   * unprogrammable peer does not keep the node out of service). Failures of this node's own objects, of
   * transient kinds, or of reads always count.
   */
  blockingKernelFailures(): number {
    const report = this.engine.lastReport;
    if (!report || report.failures === 0) return 0;
    const byOwner = this.engine.failuresByOwner(report);
    const refused = new Set<string>();
    for (const [owner, f] of byOwner) {
      if (owner !== "local" && this._peers?.status(owner) !== undefined && PERMANENT_KERNEL_CODES.has(f.error.code)) refused.add(`${f.kind} ${f.key}`);
    }
    let n = 0;
    for (const k of report.kinds) for (const f of k.failures) if (!refused.has(`${k.kind} ${f.key}`)) n++;
    return n;
  }

  /** Applies one store event to the peers (see PeerSet.apply); true when a flush is due. */
  applyPeers(ev: LeaseEvent, options: { readonly again?: boolean } = {}): Promise<boolean> {
    return (this._peers ?? this.startPeers()).apply(ev, options);
  }

  /** Applies pending declarations now (one pass of the engine); `onFlushed` gets its report. */
  async flush(): Promise<ReconcileReport | undefined> {
    await this.flushDatapath();
    const report = this.engine.lastReport;
    if (report) this.input.onFlushed?.(report);
    return report;
  }

  /**
   * Phase `flush`, coalesced: at most one runs at a time, and any number of requests made meanwhile become one
   * more run. N peers joining at once cost a couple of kernel passes, not N. Failures are logged; the next
   * resync retries.
   */
  requestFlush(): void {
    if (this.flushing) {
      this.flushAgain = true;
      return;
    }
    this.flushing = (async () => {
      do {
        this.flushAgain = false;
        try {
          await this.flush();
        } catch (err) {
          this.input.logger.error(`applying peer changes failed; the next resync retries: ${errorMessage(err)}`);
        }
        this.input.afterFlush?.();
      } while (this.flushAgain);
    })().finally(() => {
      this.flushing = undefined;
    });
  }

  /** Resolves when no coalesced flush is running or requested. */
  async settled(): Promise<void> {
    while (this.flushing) await this.flushing;
  }
}
