/**
 * @weft/backend-sample — a small, working backend to copy (`npm run create-backend -- <name>` does the
 * copying and renaming). Read the files in this order: index.ts (the module), config.ts (config and peer
 * data), sample-backend.ts (the backend), sysctl.ts (an extra kernel object kind), then the two spec files
 * (the conformance suite and backend-specific tests).
 *
 * EXTENSION POINT: the module. A backend package default-exports exactly one BackendModule value. Importing
 * the package must have no side effects: no registration, no global container, no I/O. The agent loads
 * the module (built in, or named with `weftd --backend-module <package or path>`), matches `type` against
 * Backend.Type, validates the section with `configSchema`, runs `preflight` against the chosen interface,
 * computes the pod MTU with `mtuOverhead`, and — only then, with a lease — calls `register` on the agent's
 * own child container.
 *
 * EXTENSION POINT: packaging. @weft/core, @weft/kernel, @weft/reconcile, tsyringe and reflect-metadata are
 * peerDependencies in package.json: the backend must use the agent's copies (a second tsyringe does not know
 * the agent's tokens and fails with "TypeInfo not known"). See "Publishing" in docs/writing-a-backend.md.
 */
import { BACKEND, type BackendModule, type ExternalInterface, type Family, type NetworkConfig, STATE_DIR } from "@weft/core";
import { KERNEL, ownedSysctls } from "@weft/kernel";
import { RECONCILER_CONTRIBUTION } from "@weft/reconcile";
import { type DependencyContainer, Lifecycle, instanceCachingFactory } from "tsyringe";
import { SAMPLE_TYPE, type SampleConfig, sampleConfigSchema } from "./config.js";
import { SampleBackend, samplePreflight } from "./sample-backend.js";
import { SysctlReconciler } from "./sysctl.js";

export { SAMPLE_TYPE, type SampleConfig, type SampleLeaseData, encodeSampleLeaseData, parseSampleLeaseData, sampleConfigSchema } from "./config.js";
export { SampleBackend, samplePreflight } from "./sample-backend.js";
export { SYSCTL_KIND, type SysctlOp, SysctlReconciler, type SysctlSpec } from "./sysctl.js";

const sampleModule: BackendModule<SampleConfig> = {
  type: SAMPLE_TYPE,
  configSchema: sampleConfigSchema,
  /** Carries IPv6 pod traffic too: the agent lets the store (kube mode) run IPv6 with it. */
  dualStack: true,

  /**
   * Bytes your encapsulation adds per packet over an underlay of `family` (outer headers). The agent
   * subtracts it from the underlay MTU for the pods' MTU. 0 here: plain routing adds nothing. Keep the
   * numbers in one constant that device code reads too (STYLE 2).
   */
  mtuOverhead(_config: SampleConfig, _family: Family): number {
    return 0;
  },

  /**
   * Configuration checks that need no lease (see samplePreflight in sample-backend.ts). The agent calls this
   * before it takes a lease or touches the node: throwing here stops it with nothing to undo.
   */
  preflight(config: SampleConfig, network: NetworkConfig, iface: ExternalInterface): void {
    samplePreflight(config, network, iface);
  },

  register(container: DependencyContainer): void {
    // One backend instance per agent container.
    container.register(BACKEND, { useClass: SampleBackend }, { lifecycle: Lifecycle.ContainerScoped });
    // An extra kernel object kind brings its reconciler along. A factory, so it is built from the agent's
    // container (here: its KernelPort, and its state dir where the sysctls' original values are kept) when the
    // datapath engine is created.
    container.register(RECONCILER_CONTRIBUTION, {
      useFactory: instanceCachingFactory((c) => new SysctlReconciler(ownedSysctls(c.resolve(KERNEL), c.resolve(STATE_DIR)))),
    });
  },
};

export default sampleModule;
