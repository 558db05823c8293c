/**
 * @weft/backend-host-gw — the `host-gw` backend (design note in ./host-gw-backend.ts, reference in
 * docs/backends/host-gw.md). The default export is the BackendModule; importing it registers nothing.
 */
import { BACKEND, type BackendModule } from "@weft/core";
import { type DependencyContainer, Lifecycle } from "tsyringe";
import { HOST_GW_TYPE, type HostGwConfig, hostGwConfigSchema } from "./config.js";
import { HostGwBackend, hostGwPreflight } from "./host-gw-backend.js";

export { HOST_GW_TYPE, type HostGwConfig, hostGwConfigSchema } from "./config.js";
export { HostGwBackend, hostGwPreflight } from "./host-gw-backend.js";

const hostGwModule: BackendModule<HostGwConfig> = {
  type: HOST_GW_TYPE,
  configSchema: hostGwConfigSchema,
  /** Carries IPv6 pod traffic too: the agent lets the store (kube mode) run IPv6 with it. */
  dualStack: true,
  /** Plain routing: nothing is added to a packet. */
  mtuOverhead(): number {
    return 0;
  },
  /** An address per enabled family on the interface, and no NAT: refused before the agent takes a lease. */
  preflight(config, network, iface): void {
    hostGwPreflight(config, network, iface);
  },
  register(container: DependencyContainer): void {
    container.register(BACKEND, { useClass: HostGwBackend }, { lifecycle: Lifecycle.ContainerScoped });
  },
};

export default hostGwModule;
