/**
 * @weft/backend-ipsec — the `ipsec` backend: IKEv2 + ESP with a pre-shared key, negotiated by strongSwan's charon
 * (see ./ipsec-backend.ts for the design note and docs/backends/ipsec.md for the reference). The default export
 * is the BackendModule; importing this package registers nothing anywhere.
 */
import { BACKEND, type BackendModule, type Family, STATE_DIR } from "@weft/core";
import { IPSEC, LIBIPSEC_MTU, MANAGED_DAEMONS, PRIVATE_CHARON_PIDFILE_ENV, XFRM } from "@weft/kernel";
import { RECONCILER_CONTRIBUTION } from "@weft/reconcile";
import { join } from "node:path";
import { type DependencyContainer, Lifecycle, instanceCachingFactory } from "tsyringe";
import { IPSEC_TYPE, type IpsecConfig, ipsecConfigSchema, ipsecOverhead } from "./config.js";
import { CHARON_HANDLE, IPSEC_RUN_DIR, IpsecBackend, preflightIpsec } from "./ipsec-backend.js";
import { CharonHandle, CharonReconciler, ConnReconciler, SecretReconciler } from "./reconcilers.js";
import { XfrmReconciler } from "./xfrm-sweep.js";

export {
  DEFAULT_ESP_PROPOSAL,
  IKE_PROPOSAL,
  IPSEC_OVERHEAD,
  IPSEC_TYPE,
  type IpsecConfig,
  type IpsecMode,
  MIN_PSK_LENGTH,
  UDP_ENCAP_OVERHEAD,
  ipsecConfigSchema,
  ipsecOverhead,
  pskProblem,
  readPsk,
} from "./config.js";
export { CHARON_HANDLE, IPSEC_RUN_DIR, IpsecBackend, type IpsecStatus, connectionName, initiates, preflightIpsec, secretId } from "./ipsec-backend.js";
export {
  CHARON_KIND,
  CONN_KIND,
  CharonHandle,
  CharonReconciler,
  type CharonSpec,
  ConnReconciler,
  type ConnSpec,
  OWNED_PREFIX,
  SECRET_KIND,
  SecretReconciler,
  type SecretSpec,
} from "./reconcilers.js";
export { NO_LEFTOVERS, REQID_TAG, XFRM_KIND, type XfrmLeftovers, XfrmReconciler, isWeftReqid, reqidFor } from "./xfrm-sweep.js";

/**
 * The ipsec BackendModule. `underlayMtu`: outside Mode kernel the pod MTU is capped by libipsec's fixed
 * 1400-byte ipsec0 (the advertised MTU is min(interface, 1400 + overhead) − overhead; preflight refuses an
 * interface MTU below 1400 + overhead).
 */
const ipsecModule: BackendModule<IpsecConfig> & { underlayMtu(config: IpsecConfig): number | undefined } = {
  type: IPSEC_TYPE,
  configSchema: ipsecConfigSchema,
  mtuOverhead(config: IpsecConfig, family: Family): number {
    return ipsecOverhead(config, family);
  },
  underlayMtu(config: IpsecConfig): number | undefined {
    return config.mode === "kernel" ? undefined : LIBIPSEC_MTU + ipsecOverhead(config, "v4");
  },
  preflight(config, network, iface): void {
    preflightIpsec(config, network, iface);
  },
  register(container: DependencyContainer): void {
    container.register(BACKEND, { useClass: IpsecBackend }, { lifecycle: Lifecycle.ContainerScoped });
    // The ports this backend uses, bound by the agent (Linux adapters) or by a test (fakes).
    const charon = instanceCachingFactory((c) => {
      const ipsec = c.resolve(IPSEC);
      const runDir = join(c.resolve(STATE_DIR), IPSEC_RUN_DIR);
      const privatePidFile = process.env[PRIVATE_CHARON_PIDFILE_ENV] === "1";
      return new CharonHandle(c.resolve(MANAGED_DAEMONS), ipsec, runDir, privatePidFile ? () => ipsec.usePrivatePidFile(runDir) : undefined);
    });
    container.register(CHARON_HANDLE, { useFactory: charon });
    container.register(RECONCILER_CONTRIBUTION, { useFactory: instanceCachingFactory((c) => new CharonReconciler(charon(c))) });
    container.register(RECONCILER_CONTRIBUTION, { useFactory: instanceCachingFactory((c) => new SecretReconciler(charon(c))) });
    container.register(RECONCILER_CONTRIBUTION, { useFactory: instanceCachingFactory((c) => new ConnReconciler(charon(c))) });
    // Kernel mode only (it lists nothing otherwise): XFRM states/policies with Weft's reqids that charon no longer holds.
    container.register(RECONCILER_CONTRIBUTION, { useFactory: instanceCachingFactory((c) => new XfrmReconciler(charon(c), c.resolve(XFRM))) });
  },
};

export default ipsecModule;
