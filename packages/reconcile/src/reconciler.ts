/**
 * One reconciler per kernel object kind (STYLE 3, after Calico Felix's route table and vxlan manager). Each
 * knows how to list the objects Weft owns of its kind, how to key them, when an actual object satisfies a
 * desired one, and which kernel ops turn one into the other. `reconcileKind` does the diff and applies it as
 * ONE batch: a pass with no drift issues no writes.
 */
import type { KernelError, KernelOp, KernelPort, OpResult } from "@weft/kernel";

/**
 * What one pass changes for one kind: objects to add, objects to update (desired and the actual one it
 * replaces), and owned objects to remove.
 */
export interface Change<T> {
  readonly add: readonly T[];
  readonly update: readonly { readonly desired: T; readonly actual: T }[];
  readonly remove: readonly T[];
}

/** Why an update is needed, for the log; undefined when `actual` already satisfies `desired`. */
export type Drift = string | undefined;

/**
 * Reconciles one kind of kernel object: lists what Weft owns of the kind, keys objects, finds drift, and turns a
 * change into ops; the engine diffs and applies one batch per kind. A backend that brings a kind core does not
 * describe contributes a reconciler for it (RECONCILER_CONTRIBUTION) and declares its objects under
 * `KernelObjects.extra[kind]`.
 *
 * `Op` is KernelOp for every kind the kernel port can write. A kind whose writes go through another port (an
 * ethtool feature through the EthtoolPort, a WireGuard peer through the WireGuardPort, say) names its own op
 * type and supplies `apply`.
 */
export interface ObjectReconciler<T, Op = KernelOp> {
  readonly kind: string;
  /**
   * Identity of an object within the kind (e.g. a link's name): a desired and an actual object with the same
   * key are the same object.
   */
  key(obj: T): string;
  /** Objects of this kind that Weft owns, as the kernel has them now. `desired` lets a reconciler scope its reads. */
  listOwned(kernel: KernelPort, desired: readonly T[]): Promise<T[]>;
  /** How `actual` differs from `desired`, or undefined when it satisfies it. */
  drift(desired: T, actual: T): Drift;
  /** Kernel ops for one object; `remove` ops for the prune/retract step. */
  addOps(obj: T): Op[];
  /**
   * Ops that turn `actual` into `desired` (may delete and re-add when the kernel cannot change it in place).
   */
  updateOps(desired: T, actual: T): Op[];
  /** Ops that delete `obj`. An op that fails with KERNEL_NOT_FOUND counts as success: the object is gone. */
  removeOps(obj: T): Op[];
  /**
   * Applies this kind's ops itself instead of through `KernelPort.apply`; same contract: every op attempted in
   * order, one result per op, a throw only for a broken transport. Leave it out when `Op` is KernelOp.
   */
  apply?(ops: readonly Op[]): Promise<OpResult[]>;
  /**
   * Why `actual` must be left alone even though it does not match `desired` (e.g. an incompatible device Weft
   * does not own: recreating it would destroy someone else's object). The engine reports it as a failure of
   * that object instead of changing it. Undefined (or no method) when the update may go ahead.
   */
  refuse?(desired: T, actual: T): string | undefined;
  /**
   * Kinds whose writes must come before this kind's in a pass (e.g. `links` for addresses). The engine orders
   * kinds from these declarations and `before` (a topological order; a cycle or an unknown kind name is a
   * registration error). An extra kind that declares nothing comes after every core kind. When a kind writes in
   * a pass, every kind ordered after it through these declarations reads the kernel again, so a device a
   * process just created is seen by the kinds that hang off it (and the engine's picture stays the kernel's).
   */
  readonly after?: readonly string[];
  /**
   * Kinds whose writes must come after this kind's (e.g. a daemon that creates a device: `["links", "addresses",
   * "routes"]`). Same ordering as `after`, declared from the other side.
   */
  readonly before?: readonly string[];
  /**
   * The state of this kind that a backend's lifetime may change, as plain comparable data: what the conformance
   * kit records before a backend runs and compares after teardown. Default: listOwned(kernel, []).
   */
  snapshot?(kernel: KernelPort): Promise<unknown[]>;
}

/**
 * What one pass did for one kind: counts of objects added, updated and removed, kernel ops sent, per-object
 * failures, and the drift found.
 */
export interface KindReport {
  readonly kind: string;
  added: number;
  updated: number;
  removed: number;
  /** Ops sent to the kernel in this pass (0 when there was no drift). */
  writes: number;
  readonly failures: { readonly key: string; readonly error: KernelError }[];
  readonly drifts: { readonly key: string; readonly reason: string }[];
}

/** A KindReport for `kind` with nothing done yet. */
export function emptyKindReport(kind: string): KindReport {
  return { kind, added: 0, updated: 0, removed: 0, writes: 0, failures: [], drifts: [] };
}

/** The diff of desired against actual (owned) objects. `removable` says which owned-but-undesired keys may go. */
export function diff<T, Op>(
  r: ObjectReconciler<T, Op>,
  desired: readonly T[],
  actual: readonly T[],
  removable: (key: string) => boolean,
): Change<T> & { drifts: { key: string; reason: string }[]; refused: { key: string; reason: string }[] } {
  const actualByKey = new Map<string, T>();
  for (const a of actual) actualByKey.set(r.key(a), a);
  const desiredKeys = new Set<string>();
  const add: T[] = [];
  const update: { desired: T; actual: T }[] = [];
  const drifts: { key: string; reason: string }[] = [];
  const refused: { key: string; reason: string }[] = [];
  for (const d of desired) {
    const k = r.key(d);
    if (desiredKeys.has(k)) continue;
    desiredKeys.add(k);
    const a = actualByKey.get(k);
    if (a === undefined) {
      add.push(d);
      drifts.push({ key: k, reason: "missing" });
      continue;
    }
    const why = r.drift(d, a);
    if (why !== undefined) {
      const refusal = r.refuse?.(d, a);
      if (refusal !== undefined) {
        refused.push({ key: k, reason: refusal });
        continue;
      }
      update.push({ desired: d, actual: a });
      drifts.push({ key: k, reason: why });
    }
  }
  const remove: T[] = [];
  for (const [k, a] of actualByKey) if (!desiredKeys.has(k) && removable(k)) remove.push(a);
  return { add, update, remove, drifts, refused };
}

/**
 * Applies a change as one kernel batch and records per-object failures. Ops of one object stay together so a
 * failure is attributed to the object's key.
 */
export async function applyChange<T, Op>(kernel: KernelPort, r: ObjectReconciler<T, Op>, change: Change<T>, report: KindReport): Promise<void> {
  const ops: Op[] = [];
  const owners: { key: string; kind: "add" | "update" | "remove" }[] = [];
  const push = (key: string, kind: "add" | "update" | "remove", list: Op[]) => {
    for (const op of list) {
      ops.push(op);
      owners.push({ key, kind });
    }
  };
  for (const o of change.add) push(r.key(o), "add", r.addOps(o));
  for (const u of change.update) push(r.key(u.desired), "update", r.updateOps(u.desired, u.actual));
  for (const o of change.remove) push(r.key(o), "remove", r.removeOps(o));
  if (ops.length === 0) return;
  const results = r.apply ? await r.apply(ops) : await kernel.apply(ops as unknown as KernelOp[]);
  report.writes += ops.length;
  const failed = new Map<string, KernelError>();
  results.forEach((res, i) => {
    const owner = owners[i]!;
    if (res.ok) return;
    // Removing what is already gone is success: the goal state holds.
    if (owner.kind === "remove" && res.error.code === "KERNEL_NOT_FOUND") return;
    if (!failed.has(owner.key)) failed.set(owner.key, res.error);
  });
  const count = (list: readonly T[] | readonly { desired: T }[], get: (x: never) => T) =>
    list.filter((x) => !failed.has(r.key(get(x as never)))).length;
  report.added += count(change.add, (x: T) => x);
  report.updated += count(change.update, (x: { desired: T }) => x.desired);
  report.removed += count(change.remove, (x: T) => x);
  for (const [key, error] of failed) report.failures.push({ key, error });
}
