/**
 * `@weft/backend-testkit/netns`: the conformance suite against the REAL kernel. Every node of every check
 * gets a fresh network namespace and the real LinuxKernel adapter (iproute2) working inside it; the
 * namespaces are deleted when the check ends. It proves what the FakeKernel cannot: that the kernel accepts
 * the objects the backend declares and reads them back so that a restart adopts instead of recreating.
 *
 * Needs root and iproute2 (netns tier, `*.netns.spec.ts`). Without them it skips loudly, and FAILS when CI=true.
 */
import type { BackendModule, LinkKindDefinition } from "@weft/core";
import { ExecaRunner, type KernelPort, LinuxKernel } from "@weft/kernel";
import { createNetns, type TestNetns } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import type { ConformanceOptions } from "./conformance.js";
import { describeBackendConformance } from "./vitest.js";

/** Re-exported so backend packages (which may not depend on tools/) can write real-kernel tests too. */
export { describeReal, type TestNetns };

/** A LinuxKernel in a new namespace, and how to get rid of it. */
export async function linuxKernelInNetns(prefix = "wbk", linkKinds: readonly LinkKindDefinition[] = []): Promise<{ kernel: KernelPort; netns: TestNetns }> {
  const netns = await createNetns(prefix);
  return { kernel: new LinuxKernel({ runner: new ExecaRunner(), netns: netns.name, linkKinds }), netns };
}

/**
 * Options of `describeBackendConformanceInNetns`: the conformance options, less the kernel, which is always the
 * real one.
 */
export interface NetnsConformanceOptions extends Omit<ConformanceOptions, "kernel" | "disposeKernel"> {
  /** Programs the backend needs besides ip/bridge (checked up front), e.g. ["ethtool"]. */
  readonly tools?: readonly string[];
}

/**
 * Registers the conformance suite for `module` against the real kernel, each node in a namespace of its own
 * that is deleted when its check ends. Without root or a tool it skips with the reason, and fails when CI=true.
 */
export function describeBackendConformanceInNetns(module: BackendModule, options: NetnsConformanceOptions): void {
  const spaces = new Map<KernelPort, TestNetns>();
  describeReal(
    `${module.type} on the real kernel`,
    () => {
      describeBackendConformance(module, {
        ...options,
        kernel: async () => {
          const { kernel, netns } = await linuxKernelInNetns("wbk", module.linkKinds ?? []);
          spaces.set(kernel, netns);
          return kernel;
        },
        disposeKernel: async (kernel) => {
          await spaces.get(kernel)?.destroy();
          spaces.delete(kernel);
        },
      });
    },
    { tools: ["bridge", ...(options.tools ?? [])] },
  );
}
