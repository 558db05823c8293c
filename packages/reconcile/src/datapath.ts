/**
 * DatapathEngine: the Datapath backends declare into, and the driver of the reconcilers.
 *
 * Backends declare kernel objects per owner (`local`, a peer's subnet key, ...). Two ways to apply them:
 *   - flush(): adds/updates everything declared and removes what was retracted since the last flush. Never
 *     removes objects nobody retracted, so an agent that restarts and has not yet re-declared every peer does
 *     not tear down the datapath the previous agent left (restart keeps traffic flowing).
 *   - reconcile({ prune: true }): the periodic full pass; also removes owned objects nobody declares (peers that
 *     vanished while the agent was down, devices of a backend no longer in use). The agent only prunes once the
 *     store's snapshot has been declared.
 * Kinds are applied in order links → addresses → neighbours → fdb → routes (vxlan needs neighbour and FDB
 * before the onlink route, so the kernel never has to resolve the gateway), then extra kinds, then link
 * removals last. A recreated link loses its neighbours/FDB/routes; they are read afresh after the link step
 * and so re-added in the same pass.
 */
import "reflect-metadata";
import {
  CORE_OBJECT_KINDS,
  type Datapath,
  type KernelObjects,
  LOGGER,
  type Logger,
  type RouteSpec,
  WEFT_ROUTE_PROTOCOL,
  createToken,
  routeTable,
} from "@weft/core";
import { KERNEL, KernelError, type KernelPort } from "@weft/kernel";
import { type DependencyContainer, inject, injectable, instanceCachingFactory } from "tsyringe";
import { AddressReconciler, FdbReconciler, LinkReconciler, NeighbourReconciler, type OwnershipPolicy, RouteReconciler, prefixOwnership } from "./kinds.js";
import { type KindReport, type ObjectReconciler, applyChange, diff, emptyKindReport } from "./reconciler.js";

/** Reconcilers for kinds beyond the core five (WireGuard peers, IPsec connections, ...), keyed by kind name. */
export const EXTRA_RECONCILERS = createToken<readonly ObjectReconciler<unknown, unknown>[]>("weft.extra-reconcilers");
/**
 * One reconciler for an extra kind, contributed by whoever brings the kind (a backend's `register`, the
 * agent's traffic rules). Register it any number of times, before or after registerDatapath; the engine
 * gets every contribution after the `extraReconcilers` passed to registerDatapath.
 */
export const RECONCILER_CONTRIBUTION = createToken<ObjectReconciler<unknown, unknown>>("weft.reconciler-contribution");
/**
 * The OwnershipPolicy the engine uses; registerDatapath binds prefixOwnership() unless one is bound already.
 */
export const OWNERSHIP = createToken<OwnershipPolicy>("weft.ownership");

/** One kind's part of {@link DatapathEngine.plan}: what a full reconcile would do, by object key. */
export interface DriftPlan {
  readonly kind: string;
  readonly add: readonly string[];
  readonly update: readonly { readonly key: string; readonly reason: string }[];
  readonly remove: readonly string[];
  /** Objects that differ but are not Weft's to change (reported, never touched). */
  readonly refused: readonly { readonly key: string; readonly reason: string }[];
}

/** What one reconcile pass did, per kind and in total; the agent turns it into metrics and readiness. */
export interface ReconcileReport {
  readonly prune: boolean;
  readonly kinds: KindReport[];
  readonly durationMs: number;
  /** Kernel ops sent; 0 for a pass that found no drift. */
  readonly writes: number;
  readonly failures: number;
}

type AnyReconciler = ObjectReconciler<unknown, unknown>;

/**
 * The Datapath backends declare into, and the driver of the reconcilers: it keeps what each owner declared and
 * applies it kind by kind (links, addresses, neighbours, FDB, routes, extra kinds, then link removals). Passes
 * run one at a time.
 */
@injectable()
export class DatapathEngine implements Datapath {
  private readonly owners = new Map<string, KernelObjects>();
  /** Keys retracted since the last pass, per kind: removable by flush() if nobody declares them again. */
  private readonly retracted = new Map<string, Set<string>>();
  private readonly reconcilers: AnyReconciler[];
  private readonly linkReconciler: LinkReconciler;
  private queue: Promise<unknown> = Promise.resolve();
  /** What the kernel holds of each kind as of the last pass (owned objects by key), and whether to trust it. */
  private readonly known = new Map<string, Map<string, unknown>>();
  private knownValid = false;
  /** Keys failing in the last pass, per kind, with their message (to log a failure once, not every pass). */
  private readonly failing = new Map<string, Map<string, string>>();
  lastReport?: ReconcileReport;

  constructor(
    @inject(KERNEL) private readonly kernel: KernelPort,
    @inject(LOGGER) private readonly logger: Logger,
    @inject(OWNERSHIP) ownership: OwnershipPolicy,
    @inject(EXTRA_RECONCILERS) extra: readonly AnyReconciler[],
  ) {
    this.linkReconciler = new LinkReconciler(ownership);
    this.reconcilers = [
      this.linkReconciler as AnyReconciler,
      new AddressReconciler(ownership) as AnyReconciler,
      new NeighbourReconciler(ownership) as AnyReconciler,
      new FdbReconciler(ownership) as AnyReconciler,
      new RouteReconciler(ownership) as AnyReconciler,
      ...extra,
    ];
    const names = new Set<string>();
    for (const r of this.reconcilers) {
      if (names.has(r.kind)) throw new Error(`two reconcilers for kind "${r.kind}"`);
      names.add(r.kind);
    }
  }

  declare(owner: string, objects: KernelObjects): void {
    const before = this.owners.get(owner);
    this.owners.set(owner, normalize(objects));
    if (before) this.noteRetracted(before);
  }

  retract(owner: string): void {
    const before = this.owners.get(owner);
    if (!before) return;
    this.owners.delete(owner);
    this.noteRetracted(before);
  }

  declared(owner: string): KernelObjects | undefined {
    return this.owners.get(owner);
  }

  /** All declared objects of one kind, deduplicated by key (a later owner's object wins). */
  desired(kind: string): unknown[] {
    const r = this.reconcilerFor(kind);
    const byKey = new Map<string, unknown>();
    for (const objs of this.owners.values()) for (const o of objectsOf(objs, kind)) byKey.set(r.key(o), o);
    return [...byKey.values()];
  }

  /**
   * Applies what changed since the last pass. When the previous pass left a trusted picture of the kernel
   * (no failures, no read errors), the diff is taken against that picture and nothing is read: adding one peer
   * to 5,000 costs one small batch, not a re-read of 15,000 objects. The periodic reconcile re-reads everything,
   * so anything that changed behind Weft's back is still found within --resync-interval.
   */
  flush(): Promise<void> {
    return this.serialize(async () => {
      await this.pass(false, true);
    }).then(() => undefined);
  }

  /**
   * A full pass. With `prune`, also removes owned objects nobody declares (the periodic resync); without it,
   * removes only what was retracted, like flush.
   */
  reconcile(options: { prune: boolean }): Promise<ReconcileReport> {
    return this.serialize(() => this.pass(options.prune, false));
  }

  /**
   * What a full reconcile with prune would change right now, without changing anything: per kind, the keys it
   * would add, update (with the reason) and remove. Reads the kernel; leaves the engine's state alone. This is
   * what `weftctl drift` shows.
   */
  plan(): Promise<DriftPlan[]> {
    return this.serialize(async () => {
      const out: DriftPlan[] = [];
      for (const r of this.reconcilers) {
        const desired = this.desired(r.kind);
        const actual = await r.listOwned(this.kernel, desired);
        const change = diff(r, desired, actual, () => true);
        const reasons = new Map(change.drifts.map((d) => [d.key, d.reason]));
        out.push({
          kind: r.kind,
          add: change.add.map((o) => r.key(o)),
          update: change.update.map((u) => ({ key: r.key(u.desired), reason: reasons.get(r.key(u.desired)) ?? "" })),
          remove: change.remove.map((o) => r.key(o)),
          refused: change.refused,
        });
      }
      return out;
    });
  }

  /** Removes every object Weft owns on this node (explicit teardown). */
  teardown(): Promise<ReconcileReport> {
    this.owners.clear();
    return this.reconcile({ prune: true });
  }

  private reconcilerFor(kind: string): AnyReconciler {
    const r = this.reconcilers.find((x) => x.kind === kind);
    if (!r) throw new Error(`no reconciler for kind "${kind}"`);
    return r;
  }

  private noteRetracted(objs: KernelObjects): void {
    for (const r of this.reconcilers) {
      for (const o of objectsOf(objs, r.kind)) {
        let set = this.retracted.get(r.kind);
        if (!set) this.retracted.set(r.kind, (set = new Set()));
        set.add(r.key(o));
      }
    }
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async pass(prune: boolean, useCache: boolean): Promise<ReconcileReport> {
    const started = performance.now();
    const cached = useCache && this.knownValid;
    // Trusted again only if this pass reads or applies everything without a failure.
    this.knownValid = false;
    const reports: KindReport[] = [];
    const retracted = new Map([...this.retracted].map(([k, v]) => [k, new Set(v)]));
    this.retracted.clear();
    const removable = (kind: string) => (key: string) => prune || (retracted.get(kind)?.has(key) ?? false);

    // Read every kind at once: in the common case (no drift) nothing is written and the reads are all we do.
    // If an earlier kind writes (a device recreated, say), later kinds are read again after it.
    const desiredByKind = this.reconcilers.map((r) => this.desired(r.kind));
    const prefetched = this.reconcilers.map((r, i) => {
      if (cached) return Promise.resolve([...(this.known.get(r.kind)?.values() ?? [])]);
      const p = r.listOwned(this.kernel, desiredByKind[i]!);
      p.catch(() => undefined);
      return p;
    });
    // A device added, changed or recreated invalidates what hangs off it: later kinds are read afresh.
    let wrote = false;
    let linkRemovals: unknown[] = [];
    for (const [i, r] of this.reconcilers.entries()) {
      const report = emptyKindReport(r.kind);
      reports.push(report);
      const desired = desiredByKind[i]!;
      let actual: unknown[];
      try {
        actual = wrote ? await r.listOwned(this.kernel, desired) : await prefetched[i]!;
      } catch (err) {
        // A failed read must not turn into "everything is missing": skip the kind this pass, retry next pass.
        report.failures.push({ key: "*", error: err as never });
        // Keep this kind's pending retractions for the next pass.
        for (const key of retracted.get(r.kind) ?? []) this.noteRetractedKey(r.kind, key);
        this.logger.error("reading kernel state failed", { kind: r.kind, error: String(err) });
        continue;
      }
      const change = diff(r, desired, actual, removable(r.kind));
      report.drifts.push(...change.drifts);
      for (const x of change.refused) report.failures.push({ key: x.key, error: new KernelError("KERNEL_EXISTS", x.reason) });
      if (r === this.linkReconciler) {
        // Links go last, after everything that hangs off them.
        linkRemovals = [...change.remove];
        await applyChange(this.kernel, r, { add: change.add, update: change.update, remove: [] }, report);
      } else {
        await applyChange(this.kernel, r, change, report);
      }
      if (r === this.linkReconciler && report.writes > 0) wrote = true;
      this.remember(r, actual, change, report);
      this.logChange(r.kind, change.drifts, change.remove.length, prune);
    }
    if (linkRemovals.length) {
      const report = reports[0]!;
      await applyChange(this.kernel, this.linkReconciler as AnyReconciler, { add: [], update: [], remove: linkRemovals }, report);
      // Objects on a removed device went with it; the cache does not model that, so read next time.
      this.known.clear();
    }
    // Retractions whose removal failed stay pending so the next flush retries them.
    for (const rep of reports) {
      for (const f of rep.failures) {
        if (retracted.get(rep.kind)?.has(f.key)) this.noteRetractedKey(rep.kind, f.key);
      }
    }
    const failures = reports.reduce((n, r) => n + r.failures.length, 0);
    // A kind whose writes change other kinds (wireguard-go making its TUN) leaves them unknown: read next time.
    const sideEffects = this.reconcilers.some((r, i) => (r.sideEffects?.length ?? 0) > 0 && reports[i]!.writes > 0);
    this.knownValid = failures === 0 && !sideEffects && this.known.size === this.reconcilers.length;
    const report: ReconcileReport = {
      prune,
      kinds: reports,
      durationMs: performance.now() - started,
      writes: reports.reduce((n, r) => n + r.writes, 0),
      failures,
    };
    // Say it once: a failure is logged at warn when it starts, at debug while it repeats (the metric keeps
    // counting), and at info when it clears. No log line per object per resync forever.
    for (const rep of reports) {
      const before = this.failing.get(rep.kind) ?? new Map<string, string>();
      const now = new Map(rep.failures.map((f) => [f.key, f.error?.message ?? String(f.error)]));
      const fresh = rep.failures.filter((f) => before.get(f.key) !== now.get(f.key));
      for (const f of fresh.slice(0, 10)) {
        this.logger.warn("kernel object not programmed; will retry", { kind: rep.kind, key: f.key, code: f.error?.code, error: f.error?.message });
      }
      if (fresh.length > 10) this.logger.warn("more kernel objects not programmed", { kind: rep.kind, count: fresh.length - 10 });
      if (rep.failures.length > fresh.length) this.logger.debug("kernel objects still not programmed", { kind: rep.kind, count: rep.failures.length - fresh.length });
      const cleared = [...before.keys()].filter((k) => !now.has(k));
      if (cleared.length) this.logger.info("kernel objects programmed after earlier failures", { kind: rep.kind, count: cleared.length, examples: cleared.slice(0, 3) });
      this.failing.set(rep.kind, now);
    }
    this.lastReport = report;
    return report;
  }

  /** Records what the kernel holds of this kind after the change: actual, plus what was added, minus what was removed. */
  private remember(
    r: AnyReconciler,
    actual: readonly unknown[],
    change: { add: readonly unknown[]; update: readonly { desired: unknown }[]; remove: readonly unknown[] },
    report: KindReport,
  ) {
    const m = new Map<string, unknown>(actual.map((o) => [r.key(o), o]));
    const failed = new Set(report.failures.map((f) => f.key));
    for (const o of change.add) if (!failed.has(r.key(o))) m.set(r.key(o), o);
    for (const u of change.update) if (!failed.has(r.key(u.desired))) m.set(r.key(u.desired), u.desired);
    for (const o of change.remove) if (!failed.has(r.key(o))) m.delete(r.key(o));
    this.known.set(r.kind, m);
  }

  private noteRetractedKey(kind: string, key: string) {
    let set = this.retracted.get(kind);
    if (!set) this.retracted.set(kind, (set = new Set()));
    set.add(key);
  }

  private logChange(kind: string, drifts: { key: string; reason: string }[], removed: number, prune: boolean) {
    const repairs = drifts.filter((d) => d.reason !== "missing");
    const missing = drifts.length - repairs.length;
    for (const d of repairs.slice(0, 20)) this.logger.info("updating kernel object", { kind, key: d.key, reason: d.reason });
    if (missing || removed || repairs.length > 20) {
      this.logger.debug("reconciled", { kind, added: missing, updated: repairs.length, removed, prune });
    }
  }
}

function objectsOf(objs: KernelObjects, kind: string): readonly unknown[] {
  if ((CORE_OBJECT_KINDS as readonly string[]).includes(kind)) return (objs as Record<string, readonly unknown[] | undefined>)[kind] ?? [];
  return objs.extra?.[kind] ?? [];
}

/** Desired routes always carry Weft's protocol mark and an explicit table: that is how Weft finds them again. */
function normalize(objs: KernelObjects): KernelObjects {
  if (!objs.routes) return objs;
  return {
    ...objs,
    routes: objs.routes.map((r: RouteSpec) => ({ ...r, protocol: WEFT_ROUTE_PROTOCOL, table: routeTable(r) })),
  };
}

/** Registers the datapath engine and its defaults in an agent's (or a test's) child container. */
export function registerDatapath(container: DependencyContainer, options: { ownership?: OwnershipPolicy; extraReconcilers?: readonly AnyReconciler[] } = {}): void {
  if (!container.isRegistered(OWNERSHIP)) container.register(OWNERSHIP, { useValue: options.ownership ?? prefixOwnership() });
  if (!container.isRegistered(EXTRA_RECONCILERS)) {
    // A factory, so contributions registered after this call are still seen when the engine is first resolved.
    container.register(EXTRA_RECONCILERS, {
      useFactory: instanceCachingFactory((c) => [
        ...(options.extraReconcilers ?? []),
        ...(c.isRegistered(RECONCILER_CONTRIBUTION, true) ? c.resolveAll(RECONCILER_CONTRIBUTION) : []),
      ]),
    });
  }
  container.registerSingleton(DatapathEngine);
}
