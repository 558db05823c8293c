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
 * Kinds are applied in a topological order of what each reconciler declares (`after` / `before`, see
 * orderKinds): the core kinds declare links → addresses, neighbours, fdb → routes (vxlan needs neighbour and
 * FDB before the onlink route, so the kernel never has to resolve the gateway); an extra kind comes after every
 * core kind it does not itself have to precede. Link removals go last. When a kind writes in a pass, every kind
 * that depends on it (is ordered after it through the declarations) reads the kernel again: a recreated link
 * loses its neighbours/FDB/routes and a process that creates its own device adds a link, and the kinds after
 * them see that in the same pass. The core kinds after links change nothing but their own objects, which the
 * engine's picture models, so their writes cause no re-read (a flush that adds a peer reads nothing).
 */
import "reflect-metadata";
import {
  CORE_OBJECT_KINDS,
  type CoreObjectKind,
  type Datapath,
  type KernelObjects,
  type LinkKindDefinition,
  LOGGER,
  type Logger,
  type RouteSpec,
  SerialQueue,
  WEFT_ROUTE_PROTOCOL,
  createToken,
  routeTable,
} from "@weft/core";
import { KERNEL, KernelError, type KernelPort, LINK_KINDS, LinkKinds } from "@weft/kernel";
import { type DependencyContainer, inject, injectable, instanceCachingFactory } from "tsyringe";
import { AddressReconciler, FdbReconciler, LinkReconciler, NeighbourReconciler, type OwnershipPolicy, RouteReconciler, prefixOwnership } from "./kinds.js";
import { type KindReport, type ObjectReconciler, applyChange, diff, emptyKindReport } from "./reconciler.js";

/** Reconcilers for kinds beyond the core five (WireGuard peers, IPsec connections, ...), keyed by kind name. */
export const EXTRA_RECONCILERS = createToken<readonly ObjectReconciler<unknown, unknown>[]>("weft.extra-reconcilers");
/**
 * One reconciler for an extra kind, contributed by whoever brings the kind (a backend's `register`, the
 * agent's traffic rules). Register it any number of times, before or after registerDatapath; the engine
 * gets every contribution when it is first resolved.
 */
export const RECONCILER_CONTRIBUTION = createToken<ObjectReconciler<unknown, unknown>>("weft.reconciler-contribution");
/**
 * The OwnershipPolicy the engine uses; registerDatapath binds prefixOwnership() unless one is bound already.
 */
export const OWNERSHIP = createToken<OwnershipPolicy>("weft.ownership");

/** The contributed link kinds the engine compares links with: LINK_KINDS when registered, else none. */
const ENGINE_LINK_KINDS = createToken<readonly LinkKindDefinition[]>("weft.engine-link-kinds");

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
 * The order the engine applies kinds in: a topological order of the reconcilers' `after` / `before`
 * declarations, ties broken by registration order (so the core kinds keep links, addresses, neighbours, fdb,
 * routes). An extra kind (not one of CORE_OBJECT_KINDS) is also ordered after every core kind it does not
 * itself have to come before, directly or through other kinds. Returns, per kind, the kinds that depend on it
 * (ordered after it through some chain of edges). Throws one clear line for a duplicate kind, a declaration
 * naming an unknown kind, or a cycle.
 */
export function orderKinds(reconcilers: readonly Pick<AnyReconciler, "kind" | "after" | "before">[]): { order: string[]; dependents: Map<string, Set<string>> } {
  const names = reconcilers.map((r) => r.kind);
  const index = new Map<string, number>();
  for (const [i, n] of names.entries()) {
    if (index.has(n)) throw new Error(`two reconcilers for kind "${n}": contribute one reconciler per kind`);
    index.set(n, i);
  }
  const edges = new Map<string, Set<string>>(names.map((n) => [n, new Set<string>()]));
  const edge = (from: string, to: string) => edges.get(from)!.add(to);
  for (const r of reconcilers) {
    for (const [field, list] of [["after", r.after], ["before", r.before]] as const) {
      for (const other of list ?? []) {
        if (!index.has(other)) {
          throw new Error(`reconciler "${r.kind}": ${field} names kind "${other}", which no reconciler handles (known kinds: ${names.join(", ")}); fix the name or register its reconciler`);
        }
        if (other === r.kind) throw new Error(`reconciler "${r.kind}": ${field} names its own kind; remove it`);
        if (field === "after") edge(other, r.kind);
        else edge(r.kind, other);
      }
    }
  }
  const reach = (from: string): Set<string> => {
    const seen = new Set<string>();
    const stack = [from];
    while (stack.length) for (const n of edges.get(stack.pop()!)!) if (!seen.has(n)) (seen.add(n), stack.push(n));
    return seen;
  };
  const core = new Set<string>(CORE_OBJECT_KINDS);
  for (const r of reconcilers) {
    if (core.has(r.kind)) continue;
    const precedes = reach(r.kind);
    for (const c of CORE_OBJECT_KINDS) if (index.has(c) && !precedes.has(c)) edge(c, r.kind);
  }
  const indegree = new Map(names.map((n) => [n, 0]));
  for (const tos of edges.values()) for (const t of tos) indegree.set(t, indegree.get(t)! + 1);
  const order: string[] = [];
  const ready = names.filter((n) => indegree.get(n) === 0);
  while (ready.length) {
    ready.sort((a, b) => index.get(a)! - index.get(b)!);
    const n = ready.shift()!;
    order.push(n);
    for (const t of edges.get(n)!) {
      indegree.set(t, indegree.get(t)! - 1);
      if (indegree.get(t) === 0) ready.push(t);
    }
  }
  if (order.length < names.length) {
    const stuck = names.filter((n) => !order.includes(n));
    throw new Error(`reconciler ordering has a cycle among kinds ${stuck.join(", ")} (through their after/before declarations): drop one of the declarations`);
  }
  return { order, dependents: new Map(names.map((n) => [n, reach(n)])) };
}

/** Core kinds whose writes change only their own objects (the engine's picture models them): no re-read after them. */
const SELF_CONTAINED: ReadonlySet<string> = new Set<CoreObjectKind>(["addresses", "neighbours", "fdb", "routes"]);

/**
 * The Datapath backends declare into, and the driver of the reconcilers: it keeps what each owner declared and
 * applies it kind by kind in the declared order (links, addresses, neighbours, FDB, routes, extra kinds unless
 * they declare otherwise; see orderKinds), then link removals. Passes run one at a time.
 */
@injectable()
export class DatapathEngine implements Datapath {
  private readonly owners = new Map<string, KernelObjects>();
  /** Keys retracted since the last pass, per kind: removable by flush() if nobody declares them again. */
  private readonly retracted = new Map<string, Set<string>>();
  /** Reconcilers in apply order (see orderKinds). */
  private readonly reconcilers: AnyReconciler[];
  /** Per kind, the kinds ordered after it through the declarations: read again when it writes. */
  private readonly dependents: Map<string, Set<string>>;
  /** Reports list kinds in registration order (core kinds first), whatever the apply order. */
  private readonly reportOrder: Map<string, number>;
  private readonly linkReconciler: LinkReconciler;
  /** Passes, teardown and plans run one at a time. */
  private readonly queue = new SerialQueue();
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
    @inject(ENGINE_LINK_KINDS) linkKinds: readonly LinkKindDefinition[],
  ) {
    this.linkReconciler = new LinkReconciler(ownership, new LinkKinds(linkKinds));
    const registered = [
      this.linkReconciler as AnyReconciler,
      new AddressReconciler(ownership) as AnyReconciler,
      new NeighbourReconciler(ownership) as AnyReconciler,
      new FdbReconciler(ownership) as AnyReconciler,
      new RouteReconciler(ownership) as AnyReconciler,
      ...extra,
    ];
    const { order, dependents } = orderKinds(registered);
    this.reconcilers = order.map((k) => registered.find((r) => r.kind === k)!);
    this.dependents = dependents;
    this.reportOrder = new Map(registered.map((r, i) => [r.kind, i]));
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

  /**
   * Which owners the failures of `report` (default: the last pass's) belong to: per owner, its first failing
   * object (kind, key, error). The agent uses it to say which peer the kernel refused, and why, in /status.
   */
  failuresByOwner(report: ReconcileReport | undefined = this.lastReport): Map<string, { kind: string; key: string; error: KernelError }> {
    const out = new Map<string, { kind: string; key: string; error: KernelError }>();
    for (const rep of report?.kinds ?? []) {
      if (rep.failures.length === 0) continue;
      const r = this.reconcilers.find((x) => x.kind === rep.kind);
      if (!r) continue;
      const failed = new Map(rep.failures.map((f) => [f.key, f]));
      for (const [owner, objs] of this.owners) {
        if (out.has(owner)) continue;
        for (const o of objectsOf(objs, rep.kind)) {
          const f = failed.get(r.key(o));
          if (f) {
            out.set(owner, { kind: rep.kind, key: f.key, error: f.error });
            break;
          }
        }
      }
    }
    return out;
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
    return this.queue.run(async () => {
      await this.pass(false, true);
    }).then(() => undefined);
  }

  /**
   * A full pass. With `prune`, also removes owned objects nobody declares (the periodic resync); without it,
   * removes only what was retracted, like flush.
   */
  reconcile(options: { prune: boolean }): Promise<ReconcileReport> {
    return this.queue.run(() => this.pass(options.prune, false));
  }

  /**
   * What a full reconcile with prune would change right now, without changing anything: per kind, the keys it
   * would add, update (with the reason) and remove. Reads the kernel; leaves the engine's state alone. This is
   * what `weftctl drift` shows.
   */
  plan(): Promise<DriftPlan[]> {
    return this.queue.run(async () => {
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

  /**
   * The state of every kind beyond the core five, as its reconciler's `snapshot` reports it (default
   * `listOwned(kernel, [])`), in apply order: what the conformance kit records before a backend runs and
   * compares after teardown. Reads only. (The core kinds are read through the KernelPort directly.)
   */
  snapshotKinds(): Promise<{ readonly kind: string; readonly state: unknown[] }[]> {
    return this.queue.run(async () => {
      const out: { kind: string; state: unknown[] }[] = [];
      for (const r of this.reconcilers) {
        if ((CORE_OBJECT_KINDS as readonly string[]).includes(r.kind)) continue;
        out.push({ kind: r.kind, state: r.snapshot ? await r.snapshot(this.kernel) : await r.listOwned(this.kernel, []) });
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

  private async pass(prune: boolean, useCache: boolean): Promise<ReconcileReport> {
    const pending = [...this.retracted].map(([kind, keys]) => [kind, [...keys]] as const);
    try {
      return await this.passOnce(prune, useCache);
    } catch (err) {
      // A pass that died half-way (its `ip` batch killed, say) removed some, none or all of what was retracted:
      // every retraction stays pending for the next pass (removing what is already gone is success there).
      for (const [kind, keys] of pending) for (const key of keys) this.noteRetractedKey(kind, key);
      throw err;
    }
  }

  private async passOnce(prune: boolean, useCache: boolean): Promise<ReconcileReport> {
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
    // A kind that wrote (a device added, changed or recreated; a process that made its own device) invalidates
    // what depends on it: those kinds are read afresh, so the picture they leave behind is the kernel's.
    const stale = new Set<string>();
    let linkRemovals: unknown[] = [];
    let linkReport: KindReport | undefined;
    for (const [i, r] of this.reconcilers.entries()) {
      const report = emptyKindReport(r.kind);
      reports.push(report);
      if (r === this.linkReconciler) linkReport = report;
      const desired = desiredByKind[i]!;
      let actual: unknown[];
      try {
        actual = stale.has(r.kind) ? await r.listOwned(this.kernel, desired) : await prefetched[i]!;
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
      if (report.writes > 0 && !SELF_CONTAINED.has(r.kind)) for (const k of this.dependents.get(r.kind) ?? []) stale.add(k);
      this.remember(r, actual, change, report);
      this.logChange(r.kind, change.drifts, change.remove.length, prune);
    }
    if (linkRemovals.length) {
      const report = linkReport!;
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
    this.knownValid = failures === 0 && this.known.size === this.reconcilers.length;
    reports.sort((a, b) => this.reportOrder.get(a.kind)! - this.reportOrder.get(b.kind)!);
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
export function registerDatapath(container: DependencyContainer): void {
  if (!container.isRegistered(OWNERSHIP, true)) container.register(OWNERSHIP, { useValue: prefixOwnership() });
  if (!container.isRegistered(EXTRA_RECONCILERS, true)) {
    // A factory, so contributions registered after this call are still seen when the engine is first resolved.
    container.register(EXTRA_RECONCILERS, {
      useFactory: instanceCachingFactory((c) => (c.isRegistered(RECONCILER_CONTRIBUTION, true) ? c.resolveAll(RECONCILER_CONTRIBUTION) : [])),
    });
  }
  if (!container.isRegistered(ENGINE_LINK_KINDS, true)) {
    container.register(ENGINE_LINK_KINDS, { useFactory: (c) => (c.isRegistered(LINK_KINDS, true) ? c.resolve(LINK_KINDS) : []) });
  }
  container.registerSingleton(DatapathEngine);
}
