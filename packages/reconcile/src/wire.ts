/**
 * The one composition of a backend with the agent's services, used by weftd and by the backend test kit
 * alike (through the agent core), so a backend is wired the same way in its unit tests as on a node. Two
 * containers:
 *   the backend's container  the author API, all a backend can resolve: LOGGER, NETWORK_CONFIG, BACKEND_CONFIG,
 *                            EXTERNAL_INTERFACE, STATE_DIR, CLOCK, KERNEL_VIEW (read-only), DATAPATH, the kernel
 *                            ports (MANAGED_DAEMONS, WIREGUARD, ...) and what its module registers (BACKEND,
 *                            its reconcilers and ports);
 *   the engine's container   a child of it that adds the writable KERNEL: the datapath engine and the
 *                            reconcilers (the module's contributions included) are built there.
 * The cluster store is in neither: a backend learns about peers only through addPeer/removePeer.
 * Also the pod MTU rule both agents apply.
 */
import {
  BACKEND,
  BACKEND_CONFIG,
  type Backend,
  CLOCK,
  type Clock,
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
  WeftError,
  systemClock,
} from "@weft/core";
import { KERNEL, KERNEL_VIEW, type KernelPort, LINK_KINDS, type ProcessRunner, kernelView, registerLinuxPorts } from "@weft/kernel";
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
  /** The writable kernel: only the engine's container holds it; the backend gets a read-only view. */
  readonly kernel: KernelPort;
  readonly runner: ProcessRunner;
  readonly stateDir: string;
  /** The Clock backends wait on (CLOCK); default systemClock. */
  readonly clock?: Clock;
  /**
   * Binds ports before the module registers, replacing the Linux adapters bound by default (registerLinuxPorts:
   * MANAGED_DAEMONS, WIREGUARD, IPSEC, XFRM, ETHTOOL over `runner`, registerLinuxPorts): the test kit binds fakes here. Called once per
   * wiring, so an agent restart gets new port instances (which must adopt what the previous agent left running).
   */
  readonly ports?: (container: DependencyContainer) => void;
  /** The Datapath the backend sees; default the engine itself (the test kit wraps it to record passes). */
  readonly datapath?: (engine: DatapathEngine) => Datapath;
}

/** The wired pieces of one agent. */
export interface BackendWiring {
  /** The backend's container: what a backend can resolve (no store, no writable kernel). */
  readonly container: DependencyContainer;
  readonly engine: DatapathEngine;
  readonly datapath: Datapath;
  readonly backend: Backend;
}

/**
 * Builds the backend's container (a child of `parent`) and the engine's container (a child of that, with the
 * writable KERNEL), the engine, and resolves the module's Backend in the backend's container.
 */
export function wireBackend(parent: DependencyContainer, o: BackendWiringInput): BackendWiring {
  const c = parent.createChildContainer();
  c.register(LOGGER, { useValue: o.logger });
  c.register(NETWORK_CONFIG, { useValue: o.network });
  c.register(BACKEND_CONFIG, { useValue: o.backendConfig });
  c.register(EXTERNAL_INTERFACE, { useValue: o.iface });
  c.register(KERNEL_VIEW, { useValue: kernelView(o.kernel) });
  c.register(STATE_DIR, { useValue: o.stateDir });
  c.register(CLOCK, { useValue: o.clock ?? systemClock });
  // The kernel ports backends declare, as Linux adapters over the runner (a test binds fakes through `ports`).
  registerLinuxPorts(c, o.runner, o.logger);
  o.ports?.(c);
  // The link kinds the module contributes: the engine compares links with them (LINK_KINDS).
  if (o.module.linkKinds?.length) c.register(LINK_KINDS, { useValue: o.module.linkKinds });
  // The module registers first: what it binds (its reconcilers for extra kinds, an ownership policy) must be
  // there when the engine is first resolved; registerDatapath only fills in what is still missing.
  o.module.register(c);
  // Factories registered in the backend's container run in the container that resolves them: the engine's,
  // so the module's reconcilers get the writable KERNEL there and the backend never can.
  const e = c.createChildContainer();
  e.register(KERNEL, { useValue: o.kernel });
  registerDatapath(e);
  const engine = e.resolve(DatapathEngine);
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
  const configured = module.underlayMtu?.(backendConfig);
  const mtu = (configured ?? iface.mtu) - overhead;
  if (mtu < 576 && network.enableIPv4) {
    // Blame the MTU actually used: Backend.MTU when the config sets one, else the interface's.
    const base = configured !== undefined ? `Backend.MTU ${configured}` : `underlay ${iface.mtu}`;
    const fix = configured !== undefined ? `raise Backend.MTU, or remove it to use the interface's MTU ${iface.mtu}` : "raise the underlay MTU";
    throw new WeftError("CONFIG_INVALID", `pod MTU ${mtu} (${base} − ${module.type} overhead ${overhead}) is too small: ${fix}`);
  }
  return { mtu, overhead };
}
