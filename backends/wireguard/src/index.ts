/**
 * @weft/backend-wireguard — the `wireguard` backend on wireguard-go (see ./wireguard-backend.ts for the design
 * note, docs/backends/wireguard.md for the reference and docs/adr/0008-wireguard-go.md for the decisions). The
 * default export is the BackendModule; importing this package registers nothing anywhere.
 */
import { BACKEND, type BackendModule, type Family, LOGGER, STATE_DIR } from "@weft/core";
import { KERNEL, MANAGED_DAEMONS, WIREGUARD } from "@weft/kernel";
import { RECONCILER_CONTRIBUTION } from "@weft/reconcile";
import { type DependencyContainer, Lifecycle, instanceCachingFactory } from "tsyringe";
import { WIREGUARD_OVERHEAD, WIREGUARD_TYPE, type WireguardConfig, wireguardConfigSchema } from "./config.js";
import { PRIVATE_SOCKET_DIR_ENV, WgDeviceReconciler } from "./device.js";
import { WgPeerReconciler } from "./peers.js";
import { WireguardBackend, planWireguardDevices } from "./wireguard-backend.js";

export {
  DEFAULT_LISTEN_PORT,
  DEFAULT_LISTEN_PORT_V6,
  WIREGUARD_OVERHEAD,
  WIREGUARD_TYPE,
  type WireguardConfig,
  type WireguardLeaseData,
  type WireguardMode,
  encodeWireguardLeaseData,
  isWireguardKey,
  wireguardConfigSchema,
  wireguardLeaseDataSchema,
} from "./config.js";
export { PRIVATE_SOCKET_DIR_ENV, SOCKET_DIR, WG_DEVICE_KIND, WG_DEVICE_NAMES, type WgDeviceOp, WgDeviceReconciler, type WgDeviceSpec, logFile, pidFile } from "./device.js";
export { PRIVATE_KEY_FILE, PSK_FILE, generatePrivateKey, keyDigest, loadOrCreateKeyPair, publicKeyOf } from "./keys.js";
export { WG_PEER_KIND, type WgPeerOp, WgPeerReconciler, type WgPeerSpec } from "./peers.js";
export { WireguardBackend, type WireguardDevicePlan, planWireguardDevices, wireguardDeviceName } from "./wireguard-backend.js";

/** The wireguard BackendModule, plus `underlayMtu`: Backend.MTU, when set, replaces the interface MTU as the base. */
const wireguardModule: BackendModule<WireguardConfig> & { underlayMtu(config: WireguardConfig): number | undefined } = {
  type: WIREGUARD_TYPE,
  configSchema: wireguardConfigSchema,
  /** Carries IPv6 pod traffic too: the agent lets the store (kube mode) run IPv6 with it. */
  dualStack: true,
  mtuOverhead(_config: WireguardConfig, family: Family): number {
    return WIREGUARD_OVERHEAD[family];
  },
  underlayMtu(config: WireguardConfig): number | undefined {
    return config.mtu || undefined;
  },
  /** Devices and ports the mode allows, an address per endpoint family, device MTUs the families allow. */
  preflight(config, network, iface): void {
    planWireguardDevices(config, network, iface);
  },
  register(container: DependencyContainer): void {
    container.register(BACKEND, { useClass: WireguardBackend }, { lifecycle: Lifecycle.ContainerScoped });
    // The order of kinds comes from the reconcilers' own declarations (device before links/addresses/routes,
    // peers after the device). One device reconciler per agent, shared with the peer reconciler (it knows which
    // sockets are ours). The ports are the agent's (MANAGED_DAEMONS, WIREGUARD): Linux adapters on a node, fakes
    // in unit tests.
    const devices = instanceCachingFactory(
      (c) =>
        new WgDeviceReconciler(
          c.resolve(WIREGUARD),
          c.resolve(MANAGED_DAEMONS),
          c.resolve(KERNEL),
          c.resolve(LOGGER),
          c.resolve(STATE_DIR),
          process.env[PRIVATE_SOCKET_DIR_ENV] === "1",
        ),
    );
    container.register(RECONCILER_CONTRIBUTION, { useFactory: devices });
    container.register(RECONCILER_CONTRIBUTION, { useFactory: instanceCachingFactory((c) => new WgPeerReconciler(c.resolve(WIREGUARD), devices(c))) });
  },
};

export default wireguardModule;
