/**
 * Kind "offload": an ethtool feature of a Weft device, as a reconciled kernel object.
 *
 * Why it exists: kernels before 5.7 miscompute the UDP checksum of VXLAN packets that iptables has SNATed or
 * marked, so service traffic to pods on other nodes stalls for ~63 s ("UDP: bad checksum" on the receiver;
 * flannel.md §7.5). The workaround is `ethtool -K weft.1 tx-checksum-ip-generic off`. A device setting is lost
 * when the device is recreated, so a one-shot call at start is not enough: as a kind of its own, the setting is
 * read back on every pass (after the link step, so a recreated device is seen fresh) and re-applied on drift.
 *
 * ethtool features are not netlink link attributes iproute2 can set, so this kind reads and writes through the
 * EthtoolPort (@weft/kernel), which runs the tool and classifies its errors; this file only describes the
 * wanted value and diffs it against what the port reads back. Nothing is pruned: a device Weft deletes takes
 * its settings with it, and turning the option off leaves the device as it is until it is next recreated.
 */
import type { Logger } from "@weft/core";
import { type EthtoolPort, type KernelPort, type OpResult, asKernelError } from "@weft/kernel";
import type { Drift, ObjectReconciler } from "@weft/reconcile";

export const OFFLOAD_KIND = "offload";
/** The feature whose offload breaks VXLAN checksums on affected kernels. */
export const TX_CHECKSUM_FEATURE = "tx-checksum-ip-generic";

export interface OffloadSpec {
  readonly dev: string;
  /** ethtool feature name, e.g. `tx-checksum-ip-generic`. */
  readonly feature: string;
  readonly enabled: boolean;
}

export interface OffloadOp {
  readonly op: "offload.set";
  readonly spec: OffloadSpec;
}

export class OffloadReconciler implements ObjectReconciler<OffloadSpec, OffloadOp> {
  readonly kind = OFFLOAD_KIND;
  /** A device's features are read after the links step: a device recreated in this pass is seen fresh. */
  readonly after = ["links"];
  private readonly warnedFixed = new Set<string>();

  constructor(
    private readonly ethtool: EthtoolPort,
    private readonly logger: Logger,
  ) {}

  key(o: OffloadSpec): string {
    return `${o.dev} ${o.feature}`;
  }

  async listOwned(kernel: KernelPort, desired: readonly OffloadSpec[]): Promise<OffloadSpec[]> {
    if (desired.length === 0) return []; // the option is off: no process is ever started
    const present = new Set((await kernel.listLinks()).map((l) => l.name));
    const out: OffloadSpec[] = [];
    for (const dev of new Set(desired.map((d) => d.dev))) {
      if (!present.has(dev)) continue; // reported "missing"; applying will fail and be retried
      const features = await this.ethtool.features(dev);
      for (const d of desired) {
        if (d.dev !== dev) continue;
        const f = features.get(d.feature);
        if (!f) continue;
        if (f.fixed && f.enabled !== d.enabled) {
          // The driver cannot change it; retrying every pass would only repeat the failure. Say so once.
          const key = this.key(d);
          if (!this.warnedFixed.has(key)) {
            this.warnedFixed.add(key);
            this.logger.warn(`${dev}: ethtool feature ${d.feature} is fixed ${f.enabled ? "on" : "off"} by the driver; cannot set it ${d.enabled ? "on" : "off"}`);
          }
          out.push(d);
          continue;
        }
        out.push({ dev, feature: d.feature, enabled: f.enabled });
      }
    }
    return out;
  }

  drift(d: OffloadSpec, a: OffloadSpec): Drift {
    return d.enabled !== a.enabled ? `${d.feature} ${a.enabled ? "on" : "off"} != ${d.enabled ? "on" : "off"}` : undefined;
  }

  addOps(o: OffloadSpec): OffloadOp[] {
    return [{ op: "offload.set", spec: o }];
  }

  updateOps(d: OffloadSpec): OffloadOp[] {
    return [{ op: "offload.set", spec: d }];
  }

  removeOps(): OffloadOp[] {
    return [];
  }

  async apply(ops: readonly OffloadOp[]): Promise<OpResult[]> {
    const results: OpResult[] = [];
    for (const { spec } of ops) {
      try {
        await this.ethtool.setFeature(spec.dev, spec.feature, spec.enabled);
        results.push({ ok: true });
      } catch (err) {
        // A refused change, a missing device, PROCESS_MISSING (ethtool not installed): one clear failure per
        // op, never a broken pass.
        results.push({ ok: false, error: asKernelError(err, `${spec.dev}: set ethtool feature ${spec.feature} ${spec.enabled ? "on" : "off"}`) });
      }
    }
    return results;
  }
}
