/**
 * FakeApiServer: a small, honest implementation of the Kubernetes API subset a network agent uses, over real
 * HTTP on 127.0.0.1, so tests drive the real @kubernetes/client-node against it. What it covers and what it
 * does not is written down in docs/adr/0003-fake-kube-api-server.md; the short version:
 *
 * - Nodes: list, watch, get, create, update (PUT), patch (strategic merge, JSON merge, JSON patch) and delete,
 *   on `nodes` and on the `nodes/status` subresource, with the subresource rules of the real registry
 *   (a status write cannot change spec, a main-resource write cannot change status; both may change metadata).
 * - One global resourceVersion counter, like etcd's revision. A write that changes nothing is a no-op: no new
 *   resourceVersion, no watch event (the real server skips the etcd write too).
 * - Optimistic concurrency: a write whose resulting object carries a metadata.resourceVersion different from
 *   the stored one fails with 409 Conflict.
 * - Watch: from a resourceVersion, with a bounded event history. A resourceVersion older than the history
 *   gets 410 Gone, as an ERROR event in a 200 stream (what the watch cache does) or, with
 *   `expiredWatch: "status"`, as an HTTP 410 Status. BOOKMARK events go to watchers that asked for them.
 * - Schema: field types checked (400), unknown fields handled per `fieldValidation` (this fake defaults to
 *   Strict, the real server to Warn), values validated (422): names, annotation keys and size, podCIDRs.
 * - Pods: GET of one pod (node-name discovery from POD_NAME/POD_NAMESPACE).
 *
 * Every HTTP request is recorded in `requests` (an audit log), and `failNext` injects faults.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PatchError, clone, deepEqual, isObject, jsonMergePatch, jsonPatch, strategicMergePatch } from "./patch.js";
import { type Json, type JsonObject, nodeSchema, podSchema, validate } from "./schema.js";
import { nodeProblems, podProblems, syncPodCIDRs } from "./validation.js";

export type FieldValidation = "Strict" | "Warn" | "Ignore";
export type PatchType = "strategic" | "merge" | "json";

export interface FakeApiServerOptions {
  /** Watch events kept for resuming watches; older resourceVersions get 410 Gone. Default 1000. */
  historyLimit?: number;
  /** Default for requests without `?fieldValidation=`. Default "Strict" (the real server defaults to "Warn"). */
  fieldValidation?: FieldValidation;
  /** How a watch from an expired resourceVersion fails: an ERROR event with code 410 (default) or HTTP 410. */
  expiredWatch?: "event" | "status";
  /** Send BOOKMARK events to watchers that allow them every this many ms. Default 0: only on sendBookmarks(). */
  bookmarkIntervalMs?: number;
  /**
   * Also serve the API on this unix socket path. A socket is reachable from every network namespace on the
   * machine (it lives in the filesystem), so agents in lab namespaces can reach the server through a local
   * forwarder without any address in the root namespace.
   */
  unixSocket?: string;
}

/** One HTTP request as the server saw it. */
export interface FakeRequestRecord {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly contentType?: string;
  readonly body?: Json;
  status: number;
}

/**
 * Which requests a fault applies to, and what happens to them. Without `code`, `drop` or `expire` the request
 * is answered normally (after `delayMs`, when given).
 */
export interface FaultSpec {
  readonly method?: string;
  /** Matches when the request path contains this string. */
  readonly path?: string;
  /** Matches only watch requests (true) or only other requests (false); both when unset. */
  readonly watch?: boolean;
  /**
   * Answer with this HTTP code and the Status kube-apiserver sends for it (500 InternalError, 503
   * ServiceUnavailable, 504 Timeout, 429 TooManyRequests with `Retry-After: 1`, ...). `failNext` defaults it to 500.
   */
  readonly code?: number;
  readonly message?: string;
  /** Answer this many ms late (a slow or overloaded server). The client may give up first; then nothing is sent. */
  readonly delayMs?: number;
  /** Close the connection without any answer (a dead server behind a load balancer): the client sees a reset. */
  readonly drop?: boolean;
  /**
   * A watch from a resourceVersion gets 410 Gone, whatever resourceVersion it asked for, in the form set by
   * `expiredWatch` (what the server does while its watch cache is re-initialising after an etcd compaction).
   * A watch without a resourceVersion, which cannot be too old, and non-watch requests are not affected.
   */
  readonly expire?: boolean;
}

/** A fault injected with {@link FakeApiServer.fault}: how often it applied, and how to stop it. */
export interface FaultHandle {
  /** Requests this fault has applied to so far. */
  readonly hits: number;
  /** Stops the fault; requests already waiting out a delay are still answered. */
  clear(): void;
}

/** The reason kube-apiserver puts in a Status of this HTTP code (k8s.io/apimachinery metav1.StatusReason). */
function reasonOf(code: number): string {
  const reasons: Record<number, string> = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
  };
  return reasons[code] ?? "Unknown";
}

/** A Kubernetes Status failure, thrown by the in-process helpers (addNode, patchNode...) and sent over HTTP. */
export class FakeApiError extends Error {
  override readonly name = "FakeApiError";
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: JsonObject,
    /** Extra response headers (429's `Retry-After`). */
    readonly headers?: Readonly<Record<string, string>>,
  ) {
    super(message);
  }

  toStatus(): JsonObject {
    return {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
      ...(this.details ? { details: this.details } : {}),
      code: this.code,
    };
  }
}

type EventType = "ADDED" | "MODIFIED" | "DELETED";

interface HistoryEvent {
  readonly rv: number;
  readonly type: EventType;
  readonly object: JsonObject;
  /** The object before the change (MODIFIED/DELETED), for selector transitions. */
  readonly prev?: JsonObject;
}

interface Watcher {
  readonly res: ServerResponse;
  readonly matches: (o: JsonObject) => boolean;
  readonly bookmarks: boolean;
  /** Events at or below this resourceVersion are not for this watcher (it started after them). */
  readonly after: number;
  timer?: NodeJS.Timeout;
}

const KUBECONFIG_NAME = "weft-fake";

function now(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

function notFound(resource: string, name: string): FakeApiError {
  return new FakeApiError(404, "NotFound", `${resource} "${name}" not found`, { name, kind: resource });
}

function badRequest(message: string): FakeApiError {
  return new FakeApiError(400, "BadRequest", message);
}

function invalid(kind: string, name: string, problems: string[]): FakeApiError {
  return new FakeApiError(422, "Invalid", `${kind} "${name}" is invalid: ${problems.join(", ")}`, {
    name,
    kind,
    causes: problems.map((p) => ({ reason: "FieldValueInvalid", message: p, field: p.split(":")[0]! })),
  });
}

function conflict(name: string): FakeApiError {
  return new FakeApiError(
    409,
    "Conflict",
    `Operation cannot be fulfilled on nodes "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    { name, kind: "nodes" },
  );
}

// --- selectors -------------------------------------------------------------------------------------------

function getPath(o: JsonObject, path: string): Json | undefined {
  let cur: Json | undefined = o;
  for (const p of path.split(".")) cur = isObject(cur) ? cur[p] : undefined;
  return cur;
}

function fieldSelector(sel: string | undefined): (o: JsonObject) => boolean {
  if (!sel) return () => true;
  const tests = sel.split(",").map((term) => {
    const m = /^([a-zA-Z.]+)\s*(==|=|!=)\s*(.*)$/.exec(term.trim());
    if (!m) throw badRequest(`invalid field selector: ${JSON.stringify(term)}`);
    const [, field, op, value] = m;
    // Nodes support metadata.name and spec.unschedulable as field labels; this fake does metadata.name.
    if (field !== "metadata.name") throw badRequest(`field label not supported: ${field}`);
    return (o: JsonObject) => (getPath(o, field) === value) === (op !== "!=");
  });
  return (o) => tests.every((t) => t(o));
}

function labelSelector(sel: string | undefined): (o: JsonObject) => boolean {
  if (!sel) return () => true;
  const tests = sel.split(",").map((term) => {
    const t = term.trim();
    if (/\s(in|notin)\s/.test(t)) throw badRequest(`set-based label selectors are not supported by the fake API server: ${JSON.stringify(t)}`);
    let m = /^([A-Za-z0-9._/-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)$/.exec(t);
    const labels = (o: JsonObject) => (isObject(getPath(o, "metadata.labels")) ? (getPath(o, "metadata.labels") as JsonObject) : {});
    if (m) {
      const [, k, op, v] = m;
      return (o: JsonObject) => (labels(o)[k!] === v) === (op !== "!=");
    }
    m = /^(!?)([A-Za-z0-9._/-]+)$/.exec(t);
    if (!m) throw badRequest(`unable to parse requirement: ${JSON.stringify(t)}`);
    const [, not, k] = m;
    return (o: JsonObject) => (k! in labels(o)) === (not !== "!");
  });
  return (o) => tests.every((t) => t(o));
}

// --- the server ------------------------------------------------------------------------------------------

/**
 * A kubeconfig for plain HTTP to `server`, no credentials. (@kubernetes/client-node 1.x refuses an http: URL
 * unless insecure-skip-tls-verify is set.)
 */
export function kubeconfigFor(server: string): string {
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    `- name: ${KUBECONFIG_NAME}`,
    "  cluster:",
    `    server: ${server}`,
    "    insecure-skip-tls-verify: true",
    "contexts:",
    `- name: ${KUBECONFIG_NAME}`,
    "  context:",
    `    cluster: ${KUBECONFIG_NAME}`,
    `    user: ${KUBECONFIG_NAME}`,
    `current-context: ${KUBECONFIG_NAME}`,
    "users:",
    `- name: ${KUBECONFIG_NAME}`,
    "  user: {}",
    "",
  ].join("\n");
}

export class FakeApiServer {
  readonly requests: FakeRequestRecord[] = [];
  private readonly nodes = new Map<string, JsonObject>();
  private readonly pods = new Map<string, JsonObject>();
  private rv = 1000;
  private history: HistoryEvent[] = [];
  /** A watch may start from any resourceVersion >= this one: all events after it are in `history`. */
  private historyStart = 1000;
  private readonly watchers = new Set<Watcher>();
  private readonly faults: { spec: FaultSpec; remaining: number; hits: number }[] = [];
  private bookmarkTimer?: NodeJS.Timeout;
  private readonly options: Required<FakeApiServerOptions>;
  private closed = false;
  private unixServer?: Server;

  private constructor(
    private readonly server: Server,
    readonly url: string,
    readonly kubeconfigPath: string,
    private readonly tmp: string,
    options: FakeApiServerOptions,
  ) {
    this.options = {
      historyLimit: options.historyLimit ?? 1000,
      fieldValidation: options.fieldValidation ?? "Strict",
      expiredWatch: options.expiredWatch ?? "event",
      bookmarkIntervalMs: options.bookmarkIntervalMs ?? 0,
      unixSocket: options.unixSocket ?? "",
    };
    if (this.options.bookmarkIntervalMs > 0) {
      this.bookmarkTimer = setInterval(() => this.sendBookmarks(), this.options.bookmarkIntervalMs);
      this.bookmarkTimer.unref();
    }
  }

  static async start(options: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    let self: FakeApiServer | undefined;
    const server = createServer((req, res) => {
      void self!.handle(req, res);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    let unixServer: Server | undefined;
    if (options.unixSocket) {
      rmSync(options.unixSocket, { force: true });
      const onUnix = createServer((req, res) => {
        void self!.handle(req, res);
      });
      await new Promise<void>((resolve, reject) => {
        onUnix.once("error", reject);
        onUnix.listen(options.unixSocket, () => resolve());
      });
      unixServer = onUnix;
    }
    const port = (server.address() as AddressInfo).port;
    const url = `http://127.0.0.1:${port}`;
    const tmp = mkdtempSync(join(tmpdir(), "weft-kube-"));
    const kubeconfigPath = join(tmp, "kubeconfig");
    writeFileSync(kubeconfigPath, kubeconfigFor(url));
    self = new FakeApiServer(server, url, kubeconfigPath, tmp, options);
    self.unixServer = unixServer;
    return self;
  }

  /** The current (global) resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Number of open watch streams. */
  get watchCount(): number {
    return this.watchers.size;
  }

  // --- in-process helpers (same rules as HTTP) -----------------------------------------------------------

  /** Creates a Node (POST semantics). Server fields (uid, creationTimestamp, resourceVersion) are filled in. */
  addNode(node: JsonObject): JsonObject {
    return this.present(this.createNode(clone(node), this.options.fieldValidation, []));
  }

  /**
   * Patches a Node like `kubectl patch`: `type` defaults to "merge"; `subresource: "status"` writes
   * nodes/status (status and metadata), otherwise the main resource (spec and metadata).
   */
  patchNode(name: string, patch: Json, opts: { type?: PatchType; subresource?: "status" } = {}): JsonObject {
    return this.present(this.patchNodeInternal(name, patch, opts.type ?? "merge", opts.subresource === "status", this.options.fieldValidation, []));
  }

  deleteNode(name: string): void {
    const cur = this.nodes.get(name);
    if (!cur) throw notFound("nodes", name);
    this.nodes.delete(name);
    const obj = clone(cur);
    (obj.metadata as JsonObject).resourceVersion = String(++this.rv);
    this.record({ rv: this.rv, type: "DELETED", object: obj, prev: cur });
  }

  getNode(name: string): JsonObject | undefined {
    const n = this.nodes.get(name);
    return n ? this.present(n) : undefined;
  }

  listNodes(): JsonObject[] {
    return [...this.nodes.values()].map((n) => this.present(n));
  }

  /** Stores a Pod (only GET is served for pods). `metadata.namespace` defaults to "default". */
  addPod(pod: JsonObject): JsonObject {
    const p = clone(pod);
    const meta = (isObject(p.metadata) ? p.metadata : (p.metadata = {})) as JsonObject;
    meta.namespace ??= "default";
    this.checkSchema(p, podSchema, "Strict", []);
    const problems = podProblems(p);
    if (problems.length) throw invalid("Pod", String(meta.name), problems);
    const key = `${meta.namespace}/${meta.name}`;
    meta.uid = (this.pods.get(key)?.metadata as JsonObject | undefined)?.uid ?? randomUUID();
    meta.creationTimestamp ??= now();
    meta.resourceVersion = String(++this.rv);
    this.pods.set(key, p);
    return clone(p);
  }

  /** Drops the whole event history: every watch from a resourceVersion older than now gets 410 Gone. */
  compact(): void {
    this.history = [];
    this.historyStart = this.rv;
  }

  /** Sends a BOOKMARK carrying the current resourceVersion to every watcher that allows bookmarks. */
  sendBookmarks(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      this.writeEvent(w, "BOOKMARK", { kind: "Node", apiVersion: "v1", metadata: { resourceVersion: String(this.rv) } });
    }
  }

  /** Ends every open watch stream cleanly, as the real server does when a watch times out. */
  closeWatches(): void {
    for (const w of [...this.watchers]) this.endWatch(w);
  }

  /** The next `count` requests matching `spec` fail with `spec.code` (default 500 InternalError). */
  failNext(count: number, spec: FaultSpec = {}): FaultHandle {
    return this.fault({ ...spec, code: spec.code ?? 500 }, count);
  }

  /**
   * Injects a fault for the next `count` matching requests (default: until cleared): an error answer, a slow
   * answer, a dropped connection, or 410 Gone on watches (see {@link FaultSpec}). Faults are tried in the order
   * they were added; the first matching one applies.
   */
  fault(spec: FaultSpec, count = Number.POSITIVE_INFINITY): FaultHandle {
    const f = { spec, remaining: count, hits: 0 };
    this.faults.push(f);
    const faults = this.faults;
    return {
      get hits() {
        return f.hits;
      },
      clear() {
        f.remaining = 0;
        const i = faults.indexOf(f);
        if (i >= 0) faults.splice(i, 1);
      },
    };
  }

  /**
   * Every open watch gets an ERROR event carrying a 410 Expired Status, and its stream ends: what the watch
   * cache sends a watcher it had to drop ("too old resource version"). Watches reconnecting from their last
   * resourceVersion are served normally unless the history was compacted or an `expire` fault is set.
   */
  expireWatches(): void {
    for (const w of [...this.watchers]) {
      const gone = new FakeApiError(410, "Expired", `too old resource version: ${w.after} (${this.rv})`);
      this.writeEvent(w, "ERROR", gone.toStatus());
      this.endWatch(w);
    }
  }

  /**
   * Writes `object` as a `type` event to every open watch, ignoring its selectors. A correct server never does
   * this: it is for testing a client's defences against a wrong event (from a broken proxy or cache).
   */
  sendRawWatchEvent(type: "ADDED" | "MODIFIED" | "DELETED", object: JsonObject): void {
    for (const w of this.watchers) this.writeEvent(w, type, { kind: "Node", apiVersion: "v1", ...clone(object) });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.bookmarkTimer) clearInterval(this.bookmarkTimer);
    this.closeWatches();
    for (const s of [this.server, this.unixServer]) {
      if (!s) continue;
      await new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeAllConnections();
      });
    }
    if (this.options.unixSocket) rmSync(this.options.unixSocket, { force: true });
    rmSync(this.tmp, { recursive: true, force: true });
  }

  // --- storage -------------------------------------------------------------------------------------------

  private present(n: JsonObject): JsonObject {
    return { kind: "Node", apiVersion: "v1", ...clone(n) };
  }

  private record(ev: HistoryEvent): void {
    this.history.push(ev);
    while (this.history.length > this.options.historyLimit) {
      const dropped = this.history.shift()!;
      this.historyStart = dropped.rv;
    }
    for (const w of this.watchers) this.deliver(w, ev);
  }

  private deliver(w: Watcher, ev: HistoryEvent): void {
    if (ev.rv <= w.after) return;
    const nowMatch = w.matches(ev.object);
    const wasMatch = ev.prev ? w.matches(ev.prev) : false;
    let type: EventType | undefined;
    if (ev.type === "ADDED") type = nowMatch ? "ADDED" : undefined;
    else if (ev.type === "DELETED") type = wasMatch ? "DELETED" : undefined;
    else if (nowMatch && wasMatch) type = "MODIFIED";
    else if (nowMatch) type = "ADDED"; // moved into the selector
    else if (wasMatch) type = "DELETED"; // moved out of it
    if (type) this.writeEvent(w, type, this.present(ev.object));
  }

  /** Type check, unknown-field policy. Mutates `obj` (drops unknown fields unless Strict). */
  private checkSchema(obj: JsonObject, schema: typeof nodeSchema, fv: FieldValidation, warnings: string[]): void {
    const r = validate(obj, schema, fv !== "Strict");
    if (r.typeErrors.length) throw badRequest(`json: cannot unmarshal: ${r.typeErrors.join("; ")}`);
    if (r.unknownFields.length) {
      if (fv === "Strict") throw badRequest(`strict decoding error: ${r.unknownFields.map((f) => `unknown field "${f.slice(1)}"`).join(", ")}`);
      if (fv === "Warn") for (const f of r.unknownFields) warnings.push(`unknown field "${f.slice(1)}"`);
    }
  }

  private createNode(node: JsonObject, fv: FieldValidation, warnings: string[]): JsonObject {
    if (node.kind !== undefined && node.kind !== "Node") throw badRequest(`kind ${JSON.stringify(node.kind)} does not match Node`);
    delete node.kind;
    delete node.apiVersion;
    const meta = (isObject(node.metadata) ? node.metadata : (node.metadata = {})) as JsonObject;
    this.checkSchema(node, nodeSchema, fv, warnings);
    syncPodCIDRs(node);
    const problems = nodeProblems(node, undefined);
    if (problems.length) throw invalid("Node", String(meta.name ?? ""), problems);
    const name = meta.name as string;
    if (this.nodes.has(name)) throw new FakeApiError(409, "AlreadyExists", `nodes "${name}" already exists`, { name, kind: "nodes" });
    // Server-owned fields: whatever the client sent is replaced.
    meta.uid = randomUUID();
    meta.creationTimestamp = now();
    meta.resourceVersion = String(++this.rv);
    delete meta.generation;
    this.nodes.set(name, node);
    this.record({ rv: this.rv, type: "ADDED", object: clone(node) });
    return node;
  }

  /** The common tail of PUT and PATCH: preconditions, subresource rules, schema, validation, commit. */
  private updateNode(name: string, candidate: Json, status: boolean, fv: FieldValidation, warnings: string[]): JsonObject {
    const cur = this.nodes.get(name);
    if (!cur) throw notFound("nodes", name);
    if (!isObject(candidate)) throw badRequest("the patched object must be a JSON object");
    const next = candidate;
    if (next.kind !== undefined && next.kind !== "Node") throw badRequest(`kind ${JSON.stringify(next.kind)} does not match Node`);
    delete next.kind;
    delete next.apiVersion;
    const meta = (isObject(next.metadata) ? next.metadata : (next.metadata = {})) as JsonObject;
    const curMeta = cur.metadata as JsonObject;
    if (meta.name !== undefined && meta.name !== name) {
      throw badRequest(`the name of the object (${String(meta.name)}) does not match the name on the URL (${name})`);
    }
    meta.name = name;
    // Optimistic concurrency: a resourceVersion in the written object is a precondition.
    if (meta.resourceVersion !== undefined && meta.resourceVersion !== null && meta.resourceVersion !== "" && meta.resourceVersion !== curMeta.resourceVersion) {
      throw conflict(name);
    }
    this.checkSchema(next, nodeSchema, fv, warnings);
    // Subresource rules (nodeStrategy / nodeStatusStrategy PrepareForUpdate).
    if (status) {
      if (cur.spec !== undefined) next.spec = clone(cur.spec);
      else delete next.spec;
    } else {
      if (cur.status !== undefined) next.status = clone(cur.status);
      else delete next.status;
    }
    // System fields are kept from the stored object (uid changes are rejected by validation below).
    meta.creationTimestamp = curMeta.creationTimestamp!;
    meta.resourceVersion = curMeta.resourceVersion!;
    if (meta.uid === undefined) meta.uid = curMeta.uid!;
    syncPodCIDRs(next);
    const problems = nodeProblems(next, cur);
    if (problems.length) throw invalid("Node", name, problems);
    if (deepEqual(next, cur)) return cur; // no-op write: no new resourceVersion, no event
    meta.resourceVersion = String(++this.rv);
    this.nodes.set(name, next);
    this.record({ rv: this.rv, type: "MODIFIED", object: clone(next), prev: cur });
    return next;
  }

  private patchNodeInternal(name: string, patch: Json, type: PatchType, status: boolean, fv: FieldValidation, warnings: string[]): JsonObject {
    const cur = this.nodes.get(name);
    if (!cur) throw notFound("nodes", name);
    const base = this.present(cur);
    let next: Json;
    try {
      if (type === "json") next = jsonPatch(base, patch);
      else {
        if (!isObject(patch)) throw new PatchError(`json: cannot unmarshal ${Array.isArray(patch) ? "array" : typeof patch} into Go value of type map[string]interface {}`);
        next = type === "merge" ? jsonMergePatch(base, patch) : strategicMergePatch(base, patch, nodeSchema);
      }
    } catch (e) {
      if (e instanceof PatchError) {
        if (e.httpCode === 422) throw new FakeApiError(422, "Invalid", e.message);
        throw badRequest(e.message);
      }
      throw e;
    }
    return this.updateNode(name, next, status, fv, warnings);
  }

  // --- HTTP ----------------------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? "/", "http://x");
    const query = Object.fromEntries(u.searchParams);
    const rec: FakeRequestRecord = {
      method: req.method ?? "GET",
      path: u.pathname,
      query,
      ...(req.headers["content-type"] ? { contentType: req.headers["content-type"].split(";")[0]!.trim() } : {}),
      status: 0,
    };
    this.requests.push(rec);
    const warnings: string[] = [];
    try {
      const body = await this.readBody(req);
      if (body !== undefined) (rec as { body?: Json }).body = body;
      const isWatch = rec.method === "GET" && (query.watch === "true" || query.watch === "1");
      const hasRv = query.resourceVersion !== undefined && query.resourceVersion !== "" && query.resourceVersion !== "0";
      const fault = this.faults.find(
        (f) =>
          f.remaining > 0 &&
          (!f.spec.method || f.spec.method === rec.method) &&
          (!f.spec.path || rec.path.includes(f.spec.path)) &&
          (f.spec.watch === undefined || f.spec.watch === isWatch) &&
          (!f.spec.expire || (isWatch && hasRv)),
      );
      if (fault) {
        fault.remaining--;
        fault.hits++;
        if (fault.remaining <= 0) this.faults.splice(this.faults.indexOf(fault), 1);
        const spec = fault.spec;
        if (spec.delayMs) {
          await new Promise((r) => setTimeout(r, spec.delayMs).unref());
          if (res.destroyed || this.closed) return; // the client gave up waiting
        }
        if (spec.drop) {
          rec.status = -1;
          req.socket.destroy();
          return;
        }
        if (spec.expire) {
          const gone = new FakeApiError(410, "Expired", `too old resource version: ${query.resourceVersion} (${this.rv})`);
          if (this.options.expiredWatch === "status") throw gone;
          rec.status = 200;
          res.writeHead(200, { "Content-Type": "application/json", "Transfer-Encoding": "chunked" });
          res.end(JSON.stringify({ type: "ERROR", object: gone.toStatus() }) + "\n");
          return;
        }
        if (spec.code !== undefined) throw this.faultError(spec.code, spec.message);
      }
      const result = this.route(req, res, rec, body, warnings);
      if (result === "streaming") return;
      rec.status = result.code;
      this.send(res, result.code, result.body, warnings);
    } catch (e) {
      const err = e instanceof FakeApiError ? e : new FakeApiError(500, "InternalError", `fake API server error: ${(e as Error).message}`);
      rec.status = err.code;
      if (!res.headersSent) this.send(res, err.code, err.toStatus(), warnings, err.headers);
      else res.end();
    }
  }

  /** The Status kube-apiserver answers with for an injected `code`. */
  private faultError(code: number, message?: string): FakeApiError {
    const reason = reasonOf(code);
    switch (code) {
      case 500: {
        const text = message ?? "injected fault (500)";
        return new FakeApiError(500, reason, `Internal error occurred: ${text}`, { causes: [{ message: text }] });
      }
      case 429:
        return new FakeApiError(429, reason, message ?? "storage is (re)initializing", { retryAfterSeconds: 1 }, { "Retry-After": "1" });
      case 504:
        return new FakeApiError(504, reason, message ?? "Timeout: request did not complete within requested timeout - context deadline exceeded", {});
      default:
        return new FakeApiError(code, reason, message ?? `injected fault (${code})`);
    }
  }

  private readBody(req: IncomingMessage): Promise<Json | undefined> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size > 3 * 1024 * 1024) reject(new FakeApiError(413, "RequestEntityTooLarge", "the request entity is too large"));
        else chunks.push(c);
      });
      req.on("error", reject);
      req.on("end", () => {
        if (size === 0) return resolve(undefined);
        const text = Buffer.concat(chunks).toString("utf8");
        try {
          resolve(JSON.parse(text) as Json);
        } catch (e) {
          reject(badRequest(`the body of the request was in an unknown format: ${(e as Error).message}`));
        }
      });
    });
  }

  private send(res: ServerResponse, code: number, body: Json, warnings: string[], extra: Readonly<Record<string, string>> = {}): void {
    if (res.destroyed) return;
    const headers: Record<string, string | string[]> = { "Content-Type": "application/json", ...extra };
    if (warnings.length) headers.Warning = warnings.map((w) => `299 - ${JSON.stringify(w)}`);
    res.writeHead(code, headers);
    res.end(JSON.stringify(body));
  }

  private fieldValidation(query: Record<string, string>): FieldValidation {
    const v = query.fieldValidation;
    if (v === undefined || v === "") return this.options.fieldValidation;
    if (v === "Strict" || v === "Warn" || v === "Ignore") return v;
    throw badRequest(`fieldValidation must be one of "Ignore", "Warn" or "Strict", got ${JSON.stringify(v)}`);
  }

  private route(req: IncomingMessage, res: ServerResponse, rec: FakeRequestRecord, body: Json | undefined, warnings: string[]): { code: number; body: Json } | "streaming" {
    const m = rec.method;
    const q = rec.query;
    const parts = rec.path.split("/").filter(Boolean).map(decodeURIComponent);
    const notAllowed = () => new FakeApiError(405, "MethodNotAllowed", `the server does not allow this method on the requested resource`);
    if (parts[0] === "api" && parts[1] === "v1" && parts[2] === "nodes") {
      if (parts.length === 3) {
        if (m === "GET") {
          if (q.watch === "true" || q.watch === "1") return this.watch(req, res, rec);
          return { code: 200, body: this.list(q) };
        }
        if (m === "POST") {
          if (!isObject(body ?? null)) throw badRequest("the body must be a Node object");
          return { code: 201, body: this.present(this.createNode(clone(body as JsonObject), this.fieldValidation(q), warnings)) };
        }
        throw notAllowed();
      }
      const name = parts[3]!;
      const status = parts.length === 5 && parts[4] === "status";
      if (parts.length > 5 || (parts.length === 5 && !status)) throw new FakeApiError(404, "NotFound", "the server could not find the requested resource");
      switch (m) {
        case "GET": {
          const n = this.nodes.get(name);
          if (!n) throw notFound("nodes", name);
          return { code: 200, body: this.present(n) };
        }
        case "PATCH": {
          const type = this.patchType(rec.contentType);
          if (body === undefined) throw badRequest("empty patch");
          return { code: 200, body: this.present(this.patchNodeInternal(name, body, type, status, this.fieldValidation(q), warnings)) };
        }
        case "PUT":
          if (!isObject(body ?? null)) throw badRequest("the body must be a Node object");
          return { code: 200, body: this.present(this.updateNode(name, clone(body as JsonObject), status, this.fieldValidation(q), warnings)) };
        case "DELETE":
          if (status) throw notAllowed();
          this.deleteNode(name);
          return { code: 200, body: { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", details: { name, kind: "nodes" } } };
        default:
          throw notAllowed();
      }
    }
    if (parts[0] === "api" && parts[1] === "v1" && parts[2] === "namespaces" && parts[4] === "pods" && parts.length === 6) {
      if (m !== "GET") throw notAllowed();
      const pod = this.pods.get(`${parts[3]}/${parts[5]}`);
      if (!pod) throw notFound("pods", parts[5]!);
      return { code: 200, body: { kind: "Pod", apiVersion: "v1", ...clone(pod) } };
    }
    throw new FakeApiError(404, "NotFound", "the server could not find the requested resource");
  }

  private patchType(contentType: string | undefined): PatchType {
    switch (contentType) {
      case "application/strategic-merge-patch+json":
        return "strategic";
      case "application/merge-patch+json":
        return "merge";
      case "application/json-patch+json":
        return "json";
      case "application/apply-patch+yaml":
      case "application/apply-patch+cbor":
        throw new FakeApiError(415, "UnsupportedMediaType", `the fake API server does not implement server-side apply (${contentType})`);
      default:
        throw new FakeApiError(
          415,
          "UnsupportedMediaType",
          `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got ${contentType ?? "none"})`,
        );
    }
  }

  private list(q: Record<string, string>): JsonObject {
    if (q.continue) throw badRequest("this fake API server never issues continue tokens");
    if (q.sendInitialEvents) throw badRequest("sendInitialEvents is only valid with watch=true");
    const rv = q.resourceVersion;
    if (rv && rv !== "0") {
      const n = Number(rv);
      if (!Number.isInteger(n) || n < 0) throw badRequest(`invalid resource version: ${JSON.stringify(rv)}`);
      if (n > this.rv) throw new FakeApiError(504, "Timeout", `Too large resource version: ${n}, current: ${this.rv}`);
    }
    const fs = fieldSelector(q.fieldSelector);
    const ls = labelSelector(q.labelSelector);
    // `limit` is honoured by returning everything at once, which the API allows (no continue token).
    const items = [...this.nodes.values()].filter((n) => fs(n) && ls(n)).sort((a, b) => String((a.metadata as JsonObject).name).localeCompare(String((b.metadata as JsonObject).name)));
    return { kind: "NodeList", apiVersion: "v1", metadata: { resourceVersion: String(this.rv) }, items: items.map((n) => clone(n)) };
  }

  private watch(req: IncomingMessage, res: ServerResponse, rec: FakeRequestRecord): "streaming" {
    const q = rec.query;
    if (q.sendInitialEvents) throw badRequest("sendInitialEvents (watch-list) is not supported by the fake API server");
    const matches = ((fs, ls) => (o: JsonObject) => fs(o) && ls(o))(fieldSelector(q.fieldSelector), labelSelector(q.labelSelector));
    const rvText = q.resourceVersion ?? "";
    let from: number | undefined;
    if (rvText !== "" && rvText !== "0") {
      from = Number(rvText);
      if (!Number.isInteger(from) || from < 0) throw badRequest(`invalid resource version: ${JSON.stringify(rvText)}`);
      if (from < this.historyStart) {
        const gone = new FakeApiError(410, "Expired", `too old resource version: ${from} (${this.historyStart})`);
        if (this.options.expiredWatch === "status") throw gone;
        // The watch cache answers 200 and sends one ERROR event carrying the 410 Status, then ends the stream.
        rec.status = 200;
        res.writeHead(200, { "Content-Type": "application/json", "Transfer-Encoding": "chunked" });
        res.end(JSON.stringify({ type: "ERROR", object: gone.toStatus() }) + "\n");
        return "streaming";
      }
    }
    rec.status = 200;
    res.writeHead(200, { "Content-Type": "application/json", "Transfer-Encoding": "chunked" });
    res.flushHeaders();
    const w: Watcher = { res, matches, bookmarks: q.allowWatchBookmarks === "true" || q.allowWatchBookmarks === "1", after: from ?? this.rv };
    if (from === undefined) {
      // No resourceVersion: the current state as synthetic ADDED events, then changes.
      const names = [...this.nodes.keys()].sort();
      for (const n of names) {
        const node = this.nodes.get(n)!;
        if (matches(node)) this.writeEvent(w, "ADDED", this.present(node));
      }
    } else {
      for (const ev of this.history) this.deliver(w, ev);
    }
    this.watchers.add(w);
    const timeout = Number(q.timeoutSeconds ?? 0);
    if (timeout > 0) w.timer = setTimeout(() => this.endWatch(w), timeout * 1000);
    req.on("close", () => this.endWatch(w));
    res.on("close", () => this.endWatch(w));
    return "streaming";
  }

  private writeEvent(w: Watcher, type: string, object: JsonObject): void {
    if (!w.res.writableEnded && !w.res.destroyed) w.res.write(JSON.stringify({ type, object }) + "\n");
  }

  private endWatch(w: Watcher): void {
    if (w.timer) clearTimeout(w.timer);
    this.watchers.delete(w);
    if (!w.res.writableEnded) w.res.end();
  }
}

/** Starts a FakeApiServer on an ephemeral 127.0.0.1 port and writes a kubeconfig pointing at it. */
export function startFakeApiServer(options: FakeApiServerOptions = {}): Promise<FakeApiServer> {
  return FakeApiServer.start(options);
}
