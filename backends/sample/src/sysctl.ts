/**
 * EXTENSION POINT: a kernel object kind of your own.
 *
 * The five core kinds (links, addresses, neighbours, fdb, routes) have reconcilers in @weft/reconcile. When a
 * backend needs something else kept in place — a sysctl, an ethtool feature, a WireGuard peer — it declares
 * objects under `extra: { <kind>: [...] }` and contributes a reconciler for that kind. The engine then does
 * for it what it does for routes: read the actual state on every pass, diff against what is declared, apply
 * the difference, record and retry failures. Extra kinds run after the core kinds, so devices exist by then.
 *
 * This one keeps sysctls at a value. Reads and writes go through the KernelPort (never through `sysctl` or
 * /proc directly): the FakeKernel models sysctls, so unit tests see the effect. Nothing is pruned: a sysctl
 * cannot be "deleted", and restoring an old value is not safe to guess.
 */
import { type KernelPort, KernelError, type OpResult } from "@weft/kernel";
import type { Drift, ObjectReconciler } from "@weft/reconcile";
import { errorMessage } from "@weft/core";

export const SYSCTL_KIND = "sysctl";

export interface SysctlSpec {
  /** Dotted key, e.g. `net.ipv4.conf.eth0.rp_filter`. */
  readonly key: string;
  readonly value: string;
}

export class SysctlReconciler implements ObjectReconciler<SysctlSpec, SysctlSpec> {
  readonly kind = SYSCTL_KIND;

  /** The kernel is injected once (see register() in index.ts): `apply` receives only the ops. */
  constructor(private readonly kernel: KernelPort) {}

  key(s: SysctlSpec): string {
    return s.key;
  }

  async listOwned(kernel: KernelPort, desired: readonly SysctlSpec[]): Promise<SysctlSpec[]> {
    const out: SysctlSpec[] = [];
    for (const d of desired) {
      try {
        out.push({ key: d.key, value: (await kernel.getSysctl(d.key)).trim() });
      } catch (err) {
        // A key that does not exist (yet) is "missing"; applying it reports the real error.
        if (!(err instanceof KernelError && err.code === "KERNEL_NOT_FOUND")) throw err;
      }
    }
    return out;
  }

  drift(d: SysctlSpec, a: SysctlSpec): Drift {
    return d.value !== a.value ? `value ${a.value} != ${d.value}` : undefined;
  }

  addOps(s: SysctlSpec): SysctlSpec[] {
    return [s];
  }

  updateOps(d: SysctlSpec): SysctlSpec[] {
    return [d];
  }

  removeOps(): SysctlSpec[] {
    return [];
  }

  /** One result per op, never a throw for a failed op (the engine attributes failures by position). */
  async apply(ops: readonly SysctlSpec[]): Promise<OpResult[]> {
    const results: OpResult[] = [];
    for (const s of ops) {
      try {
        await this.kernel.setSysctl(s.key, s.value);
        results.push({ ok: true });
      } catch (err) {
        const e = err instanceof KernelError ? err : new KernelError("KERNEL_FAILED", `sysctl ${s.key}=${s.value}: ${errorMessage(err)}`);
        results.push({ ok: false, error: e });
      }
    }
    return results;
  }
}
