/**
 * EXTENSION POINT: a kernel object kind of your own.
 *
 * The five core kinds (links, addresses, neighbours, fdb, routes) have reconcilers in @weft/reconcile. When a
 * backend needs something else kept in place — a sysctl, an ethtool feature, a WireGuard peer — it declares
 * objects under `extra: { <kind>: [...] }` and contributes a reconciler for that kind. The engine then does
 * for it what it does for routes: read the actual state on every pass, diff against what is declared, apply
 * the difference, record and retry failures. An extra kind runs after the core kinds (devices exist by then)
 * unless it declares otherwise with `after` / `before` (e.g. a daemon that creates a device: `before:
 * ["links"]`).
 *
 * This one keeps sysctls at a value, through OwnedSysctls (@weft/kernel): it records the value a key had
 * before Weft first changed it (in the agent's state dir, so a restarted agent still knows it), and removing
 * the object — the backend retracting it, or teardown — restores that value. A backend must leave the node
 * as it found it; the conformance suite checks that at teardown, for every kind the backend declares
 * (`snapshot` below is what it compares).
 */
import { errorMessage } from "@weft/core";
import { KernelError, type KernelPort, type OpResult, type OwnedSysctls } from "@weft/kernel";
import type { Drift, ObjectReconciler } from "@weft/reconcile";

export const SYSCTL_KIND = "sysctl";

export interface SysctlSpec {
  /** Dotted key, e.g. `net.ipv4.conf.eth0.rp_filter`. */
  readonly key: string;
  readonly value: string;
}

/** An op of this kind: set a key (recording its original) or restore it. */
export type SysctlOp = { readonly op: "set"; readonly key: string; readonly value: string } | { readonly op: "restore"; readonly key: string };

export class SysctlReconciler implements ObjectReconciler<SysctlSpec, SysctlOp> {
  readonly kind = SYSCTL_KIND;

  /** OwnedSysctls is built once from the agent's kernel and state dir (see register() in index.ts). */
  constructor(private readonly sysctls: OwnedSysctls) {}

  key(s: SysctlSpec): string {
    return s.key;
  }

  /** The declared keys as the kernel has them, plus every key Weft changed and has not restored yet (so it can be). */
  async listOwned(_kernel: KernelPort, desired: readonly SysctlSpec[]): Promise<SysctlSpec[]> {
    const keys = new Set([...desired.map((d) => d.key), ...(await this.sysctls.owned()).map((o) => o.key)]);
    const out: SysctlSpec[] = [];
    for (const key of keys) {
      try {
        out.push({ key, value: await this.sysctls.get(key) });
      } catch (err) {
        // A key that does not exist (yet) is "missing"; applying it reports the real error.
        if (!(err instanceof KernelError && err.code === "KERNEL_NOT_FOUND")) throw err;
      }
    }
    return out;
  }

  /** What the conformance kit compares before the backend runs and after teardown: the keys still changed. */
  async snapshot(): Promise<unknown[]> {
    return this.sysctls.owned();
  }

  drift(d: SysctlSpec, a: SysctlSpec): Drift {
    return d.value !== a.value ? `value ${a.value} != ${d.value}` : undefined;
  }

  addOps(s: SysctlSpec): SysctlOp[] {
    return [{ op: "set", key: s.key, value: s.value }];
  }

  updateOps(d: SysctlSpec): SysctlOp[] {
    return [{ op: "set", key: d.key, value: d.value }];
  }

  /** A sysctl cannot be deleted: removing one puts back the value it had before Weft changed it. */
  removeOps(s: SysctlSpec): SysctlOp[] {
    return [{ op: "restore", key: s.key }];
  }

  /** One result per op, never a throw for a failed op (the engine attributes failures by position). */
  async apply(ops: readonly SysctlOp[]): Promise<OpResult[]> {
    const results: OpResult[] = [];
    for (const o of ops) {
      try {
        if (o.op === "set") await this.sysctls.set(o.key, o.value);
        else await this.sysctls.restore(o.key);
        results.push({ ok: true });
      } catch (err) {
        const e = err instanceof KernelError ? err : new KernelError("KERNEL_FAILED", `sysctl ${o.op} ${o.key}: ${errorMessage(err)}`);
        results.push({ ok: false, error: e });
      }
    }
    return results;
  }
}
