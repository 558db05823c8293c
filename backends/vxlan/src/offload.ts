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
 * ProcessRunner (`ethtool --show-features` / `ethtool --features`) and applies its own ops. Nothing is pruned:
 * a device Weft deletes takes its settings with it, and turning the option off leaves the device as it is
 * until it is next recreated.
 */
import { type Logger, WeftError, errorMessage } from "@weft/core";
import { KernelError, type KernelPort, type OpResult, type ProcessRunner } from "@weft/kernel";
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

/** One feature line of `ethtool --show-features`: `\ttx-checksum-ip-generic: on [fixed]`. */
export function parseEthtoolFeatures(text: string): Map<string, { enabled: boolean; fixed: boolean }> {
  const out = new Map<string, { enabled: boolean; fixed: boolean }>();
  for (const line of text.split("\n")) {
    const m = /^\s*([a-z0-9-]+):\s+(on|off)\b(.*)$/.exec(line);
    if (m) out.set(m[1]!, { enabled: m[2] === "on", fixed: /\[fixed\]/.test(m[3]!) });
  }
  return out;
}

const firstLine = (s: string) => s.split("\n").find((l) => l.trim() !== "")?.trim() ?? "";

export class OffloadReconciler implements ObjectReconciler<OffloadSpec, OffloadOp> {
  readonly kind = OFFLOAD_KIND;
  private readonly warnedFixed = new Set<string>();

  constructor(
    private readonly runner: ProcessRunner,
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
      const r = await this.runner.run("ethtool", ["--show-features", dev], { reject: false });
      if (r.exitCode !== 0) throw new WeftError("PROCESS_FAILED", `ethtool --show-features ${dev} exited ${r.exitCode}: ${firstLine(r.stderr)}`);
      const features = parseEthtoolFeatures(r.stdout);
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
      const args = ["--features", spec.dev, spec.feature, spec.enabled ? "on" : "off"];
      try {
        const r = await this.runner.run("ethtool", args, { reject: false });
        // ethtool exits non-zero with "Could not change any device features" when the driver refused.
        if (r.exitCode !== 0) {
          const code = /No such device|Cannot get device/i.test(r.stderr) ? "KERNEL_NOT_FOUND" : "KERNEL_FAILED";
          results.push({ ok: false, error: new KernelError(code, `ethtool ${args.join(" ")} exited ${r.exitCode}: ${firstLine(r.stderr)}`) });
        } else {
          results.push({ ok: true });
        }
      } catch (err) {
        // PROCESS_MISSING (ethtool not installed) and the like: one clear failure per op, never a broken pass.
        results.push({ ok: false, error: new KernelError("KERNEL_FAILED", `ethtool ${args.join(" ")}: ${errorMessage(err)}`, undefined, { cause: err }) });
      }
    }
    return results;
  }
}
