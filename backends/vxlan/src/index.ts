/**
 * @weft/backend-vxlan — the `vxlan` backend (see ./vxlan-backend.ts for the design note and
 * docs/backends/vxlan.md for the reference). The default export is the BackendModule; importing this
 * package registers nothing anywhere.
 */
import { BACKEND, type BackendModule, type Family, LOGGER } from "@weft/core";
import { ETHTOOL } from "@weft/kernel";
import { RECONCILER_CONTRIBUTION } from "@weft/reconcile";
import { type DependencyContainer, Lifecycle, instanceCachingFactory } from "tsyringe";
import { VXLAN_OVERHEAD, VXLAN_TYPE, type VxlanConfig, vxlanConfigSchema } from "./config.js";
import { OffloadReconciler } from "./offload.js";
import { VxlanBackend, planVxlanDevices } from "./vxlan-backend.js";

export {
  LINUX_DEFAULT_VXLAN_PORT,
  MAX_VNI,
  VXLAN_OVERHEAD,
  VXLAN_TYPE,
  type VxlanConfig,
  type VxlanLeaseData,
  encodeVxlanLeaseData,
  vxlanConfigSchema,
  vxlanLeaseDataSchema,
} from "./config.js";
export { OFFLOAD_KIND, type OffloadOp, OffloadReconciler, type OffloadSpec, TX_CHECKSUM_FEATURE } from "./offload.js";
export { VxlanBackend, type VxlanDevicePlan, planVxlanDevices, vxlanDeviceName } from "./vxlan-backend.js";
export { randomLocalMac, vtepMacFile } from "./vtep-mac.js";

/** The vxlan BackendModule, plus `underlayMtu`: Backend.MTU, when set, replaces the interface MTU as the base. */
const vxlanModule: BackendModule<VxlanConfig> & { underlayMtu(config: VxlanConfig): number | undefined } = {
  type: VXLAN_TYPE,
  configSchema: vxlanConfigSchema,
  /** Carries IPv6 pod traffic too: the agent lets the store (kube mode) run IPv6 with it. */
  dualStack: true,
  mtuOverhead(_config: VxlanConfig, family: Family): number {
    return VXLAN_OVERHEAD[family];
  },
  underlayMtu(config: VxlanConfig): number | undefined {
    return config.mtu || undefined;
  },
  /** A source address per enabled family, a device name within 15 characters, a device MTU the family allows. */
  preflight(config, network, iface): void {
    planVxlanDevices(config, network, iface);
  },
  register(container: DependencyContainer): void {
    container.register(BACKEND, { useClass: VxlanBackend }, { lifecycle: Lifecycle.ContainerScoped });
    // The "offload" kind (DisableTxChecksumOffload) has its own reconciler; it starts no process unless asked to.
    // ethtool goes through the agent's EthtoolPort (ETHTOOL), which the agent binds with the other kernel ports.
    container.register(RECONCILER_CONTRIBUTION, {
      useFactory: instanceCachingFactory((c) => new OffloadReconciler(c.resolve(ETHTOOL), c.resolve(LOGGER))),
    });
  },
};

export default vxlanModule;
