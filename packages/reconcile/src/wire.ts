/**
 * The one composition of a backend with the agent's services, used by weftd and by the backend test kit
 * alike, so a backend is wired the same way in its unit tests as on a node: the services in a child container,
 * the datapath engine (with the reconcilers the module contributes for its own kinds), the Datapath the
 * backend declares into, and the module's Backend. Also the pod MTU rule both apply.
 */
import {
  BACKEND,
  BACKEND_CONFIG,
  type Backend,
  type BackendModule,
  DATAPATH,
  type Datapath,
  EXTERNAL_INTERFACE,
  type ExternalInterface,
  type Family,
  LOGGER,
  type Logger,
  NETWORK_CONFIG,
  type NetworkConfig,
  STATE_DIR,
  SUBNET_MANAGER,
  type SubnetManager,
  WeftError,
} from "@weft/core";
import { KERNEL, type KernelPort, PROCESS_RUNNER, type ProcessRunner } from "@weft/kernel";
import type { DependencyContainer } from "tsyringe";
import { DatapathEngine, registerDatapath } from "./datapath.js";

/** What wireBackend needs: the agent's services for one node. */
export interface BackendWiringInput {
  readonly module: BackendModule;
  readonly logger: Logger;
  readonly network: NetworkConfig;
  /** The module's validated Backend section. */
  readonly backendConfig: unknown;
  readonly iface: ExternalInterface;
  readonly subnetManager: SubnetManager;
  readonly kernel: KernelPort;
  readonly runner: ProcessRunner;
  readonly stateDir: string;
  /** The Datapath the backend sees; default the engine itself (the test kit wraps it to record passes). */
  readonly datapath?: (engine: DatapathEngine) => Datapath;
}

/** The wired pieces of one agent. */
export interface BackendWiring {
  readonly container: DependencyContainer;
  readonly engine: DatapathEngine;
  readonly datapath: Datapath;
  readonly backend: Backend;
}

/** Builds the agent's child container of `parent` and resolves the module's Backend in it. */
export function wireBackend(parent: DependencyContainer, o: BackendWiringInput): BackendWiring {
  const c = parent.createChildContainer();
  c.register(LOGGER, { useValue: o.logger });
  c.register(NETWORK_CONFIG, { useValue: o.network });
  c.register(BACKEND_CONFIG, { useValue: o.backendConfig });
  c.register(EXTERNAL_INTERFACE, { useValue: o.iface });
  c.register(SUBNET_MANAGER, { useValue: o.subnetManager });
  c.register(KERNEL, { useValue: o.kernel });
  c.register(PROCESS_RUNNER, { useValue: o.runner });
  c.register(STATE_DIR, { useValue: o.stateDir });
  // The module registers first: what it binds (its reconcilers for extra kinds, an ownership policy) must be
  // there when the engine is first resolved; registerDatapath only fills in what is still missing.
  o.module.register(c);
  registerDatapath(c);
  const engine = c.resolve(DatapathEngine);
  const datapath = o.datapath ? o.datapath(engine) : engine;
  c.register(DATAPATH, { useValue: datapath });
  return { container: c, engine, datapath, backend: c.resolve(BACKEND) };
}

/**
 * The pod MTU: (the backend's underlay MTU, else the interface's) minus the backend's overhead for the costlier
 * underlay family in use (one MTU serves both families: dual-stack vxlan pays IPv6's 70, not IPv4's 50).
 * Below IPv4's minimum of 576 it is a configuration error.
 */
export function podMtu(module: BackendModule, backendConfig: unknown, network: NetworkConfig, iface: ExternalInterface): { mtu: number; overhead: number } {
  const underlays: Family[] = [
    ...(network.enableIPv4 && iface.ifaceAddr ? (["v4"] as const) : []),
    ...(network.enableIPv6 && iface.ifaceV6Addr ? (["v6"] as const) : []),
  ];
  const overhead = Math.max(0, ...underlays.map((f) => module.mtuOverhead(backendConfig, f)));
  const mtu = (module.underlayMtu?.(backendConfig) ?? iface.mtu) - overhead;
  if (mtu < 576 && network.enableIPv4) {
    throw new WeftError("CONFIG_INVALID", `pod MTU ${mtu} (underlay ${iface.mtu} − ${module.type} overhead ${overhead}) is too small: raise the underlay MTU`);
  }
  return { mtu, overhead };
}
