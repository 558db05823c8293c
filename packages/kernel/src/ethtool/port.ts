/**
 * The ethtool port: NIC offload features of a device (`ethtool --show-features` / `--features`), typed.
 * One implementation runs ethtool through the ProcessRunner (./linux-ethtool.ts); the stateful fake is
 * @weft/kernel-testing's FakeEthtool; one contract suite (`describeEthtoolPortContract`) runs on both.
 *
 * Features are device state: a device that is deleted and created again starts with its driver's defaults,
 * so a caller that wants a setting to hold reads it back on every pass (the vxlan "offload" kind does).
 */
import { createToken } from "@weft/core";

/** One offload feature as the driver reports it. */
export interface NicFeature {
  /** Whether the feature is on. */
  readonly enabled: boolean;
  /** The driver cannot change it (ethtool's `[fixed]`): setting it to the other value fails. */
  readonly fixed: boolean;
}

/**
 * Reads and sets NIC offload features. Errors are KernelErrors classified once in the adapter:
 * KERNEL_NOT_FOUND (no such device), KERNEL_INVALID (no such feature), KERNEL_UNSUPPORTED (the driver refused,
 * e.g. a fixed feature), and PROCESS_MISSING (WeftError) when ethtool is not installed.
 */
export interface EthtoolPort {
  /** Every feature of `dev`, by ethtool's name (e.g. `tx-checksum-ip-generic`). */
  features(dev: string): Promise<ReadonlyMap<string, NicFeature>>;
  /** Turns `feature` of `dev` on or off. Succeeds when it already has that value. */
  setFeature(dev: string, feature: string, enabled: boolean): Promise<void>;
}

/** The agent's EthtoolPort. */
export const ETHTOOL = createToken<EthtoolPort>("weft.ethtool");
