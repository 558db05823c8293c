/**
 * /healthz (alive), /readyz (datapath programmed), /metrics (Prometheus), /status and /drift (JSON for weftctl and
 * people).
 *
 * Exposure: --healthz-ip defaults to 0.0.0.0 (kubelet probes and Prometheus reach the node from outside), so
 * /healthz, /readyz and /metrics answer anyone; /status and /drift show peer addresses and kernel state and answer
 * only clients on the node itself (loopback, or a connection to one of the node's own addresses from that address:
 * Linux drops packets from outside that claim a local source, accept_local=0), with 403 and one line otherwise.
 *
 * Load: a burst of requests must not starve the agent. Concurrent /status and /drift requests share one read (single
 * flight), and a read that started at most {@link HealthServerOptions.reuseMs} ago is reused; reads (/status,
 * /drift, /metrics) run at most {@link HealthServerOptions.maxConcurrent} at a time, with at most
 * {@link HealthServerOptions.maxQueued} more waiting (then 503 with Retry-After). /healthz and /readyz do no work.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AgentMetrics } from "./metrics.js";

export interface HealthSource {
  ready(): { ready: boolean; reason: string };
  /** The /status JSON (may be read live, e.g. the backend's status). */
  status?(): unknown;
  /** What a full reconcile would change now (read-only). */
  drift?(): Promise<unknown>;
  /** Brings gauges read on demand (the backend's status) up to date before /metrics is rendered; must not throw. */
  refreshMetrics?(): Promise<void>;
}

/** Tuning of the health server; the defaults suit weftd. */
export interface HealthServerOptions {
  /**
   * Whether a client may read /status and /drift, from the connection's remote and local addresses. Default
   * {@link isNodeLocalClient}: loopback, or the node talking to one of its own addresses.
   */
  readonly trustedClient?: (remoteAddress: string | undefined, localAddress: string | undefined) => boolean;
  /**
   * How long after a /status or /drift read started its result is served to later requests too (ms; default
   * 100; 0 = only requests that arrive while the read runs share it). Counted from the read's start, so a request
   * never gets a result read more than this long before it arrived (weftctl drift right after a change sees it).
   */
  readonly reuseMs?: number;
  /** Requests doing work (/status, /drift, /metrics) at once (default 4). */
  readonly maxConcurrent?: number;
  /** Requests waiting for a work slot before more get 503 (default 64). */
  readonly maxQueued?: number;
}

/** The endpoint a request asks for, or why it is refused before any work (see {@link routeRequest}). */
export type HealthRoute =
  | { readonly kind: "healthz" | "readyz" | "status" | "drift" | "metrics" }
  | { readonly kind: "method-not-allowed" }
  | { readonly kind: "not-found" };

const ENDPOINTS = new Set(["healthz", "readyz", "status", "drift", "metrics"] as const);

/**
 * Routes a request from its method and request target (as Node gives them, unparsed): the path is everything
 * before `?` or `#`; a query is ignored. Only GET and HEAD are allowed. Never throws.
 */
export function routeRequest(method: string | undefined, url: string | undefined): HealthRoute {
  if (method !== "GET" && method !== "HEAD") return { kind: "method-not-allowed" };
  const target = url ?? "/";
  const end = target.search(/[?#]/);
  const path = end < 0 ? target : target.slice(0, end);
  const name = path.startsWith("/") ? path.slice(1) : undefined;
  if (name !== undefined && (ENDPOINTS as Set<string>).has(name)) return { kind: name as "healthz" };
  return { kind: "not-found" };
}

/** True for 127.0.0.0/8, ::1 and their IPv4-mapped form (::ffff:127.x.y.z). */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.toLowerCase();
  if (a === "::1" || a === "0:0:0:0:0:0:0:1") return true;
  const v4 = a.startsWith("::ffff:") ? a.slice(7) : a;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/**
 * The default trust rule for /status and /drift: a loopback client, or a client whose address is the address it
 * connected to (the node itself; Linux refuses packets from outside with a local source address unless
 * accept_local is set).
 */
export function isNodeLocalClient(remoteAddress: string | undefined, localAddress: string | undefined): boolean {
  if (isLoopbackAddress(remoteAddress)) return true;
  return remoteAddress !== undefined && remoteAddress !== "" && remoteAddress === localAddress;
}

/** Longest string shown in /status or /drift; longer ones are cut, saying how much was left out. */
export const MAX_RENDERED_STRING = 4096;
/** Deepest nesting shown in /status or /drift; deeper values are replaced by a marker. */
export const MAX_RENDERED_DEPTH = 64;

/**
 * The /status and /drift body: `value` as indented JSON plus a newline. Never throws and always yields valid
 * JSON, whatever the value holds (peer data from the cluster is hostile input): bigints become strings, strings
 * longer than {@link MAX_RENDERED_STRING} are cut, nesting deeper than {@link MAX_RENDERED_DEPTH}, cycles and values
 * whose getters or toJSON throw become markers; what JSON cannot hold (undefined, functions) is left out as
 * JSON.stringify would.
 */
export function renderJson(value: unknown): string {
  return JSON.stringify(plain(value, 0, new Set()) ?? null, null, 2) + "\n";
}

/** `value` as plain JSON data (undefined: leave out). Recursion is bounded by MAX_RENDERED_DEPTH. */
function plain(value: unknown, depth: number, path: Set<object>): unknown {
  switch (typeof value) {
    case "string":
      return value.length > MAX_RENDERED_STRING ? `${value.slice(0, MAX_RENDERED_STRING)}… (${value.length - MAX_RENDERED_STRING} more characters)` : value;
    case "number":
      return Number.isFinite(value) ? value : null;
    case "boolean":
      return value;
    case "bigint":
      return value.toString();
    case "undefined":
    case "function":
    case "symbol":
      return undefined;
  }
  if (value === null) return null;
  const obj = value as object;
  if (depth >= MAX_RENDERED_DEPTH) return "[nested too deep]";
  if (path.has(obj)) return "[circular]";
  let v: unknown = obj;
  try {
    const toJSON = (obj as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === "function") v = (toJSON as () => unknown).call(obj);
  } catch (err) {
    return `[unreadable: ${plainMessage(err)}]`;
  }
  if (v !== obj) return plain(v, depth + 1, path);
  path.add(obj);
  try {
    if (Array.isArray(obj)) {
      const out: unknown[] = [];
      for (let i = 0; i < obj.length; i++) {
        let item: unknown;
        try {
          item = plain(obj[i], depth + 1, path);
        } catch (err) {
          item = `[unreadable: ${plainMessage(err)}]`;
        }
        out.push(item === undefined ? null : item);
      }
      return out;
    }
    const out: Record<string, unknown> = {};
    let keys: string[];
    try {
      keys = Object.keys(obj);
    } catch (err) {
      return `[unreadable: ${plainMessage(err)}]`;
    }
    for (const k of keys) {
      let item: unknown;
      try {
        item = plain((obj as Record<string, unknown>)[k], depth + 1, path);
      } catch (err) {
        item = `[unreadable: ${plainMessage(err)}]`;
      }
      // defineProperty: a key "__proto__" stays an ordinary key.
      if (item !== undefined) Object.defineProperty(out, k, { value: item, enumerable: true, writable: true, configurable: true });
    }
    return out;
  } finally {
    path.delete(obj);
  }
}

function plainMessage(err: unknown): string {
  try {
    const text = err instanceof Error ? err.message : String(err);
    return text.length > 200 ? `${text.slice(0, 200)}…` : text;
  } catch {
    return "error";
  }
}

/**
 * One read shared by every caller while it runs (single flight), and its result served to callers that come
 * less than `reuseMs` after the read started. A failed read is not reused.
 */
export class SharedRead<T> {
  private inflight?: Promise<T>;
  private last?: { readonly at: number; readonly value: T };

  constructor(
    private readonly read: () => Promise<T>,
    private readonly reuseMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get(): Promise<T> {
    if (this.inflight) return this.inflight;
    if (this.last && this.now() - this.last.at < this.reuseMs) return Promise.resolve(this.last.value);
    const at = this.now();
    const p = (async () => this.read())();
    this.inflight = p;
    p.then(
      (value) => {
        this.last = { at, value };
        this.inflight = undefined;
      },
      () => {
        this.last = undefined;
        this.inflight = undefined;
      },
    );
    return p;
  }
}

/** At most `max` tasks at once, at most `maxQueued` waiting; `run` resolves undefined when the queue is full. */
class WorkLimit {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly max: number,
    private readonly maxQueued: number,
  ) {}

  async run<T>(task: () => Promise<T>): Promise<{ value: T } | undefined> {
    if (this.running >= this.max) {
      if (this.waiting.length >= this.maxQueued) return undefined;
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return { value: await task() };
    } finally {
      // The slot passes to the next waiter as it is (running stays counted), or is freed.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

const TEXT = { "Content-Type": "text/plain" };
/** What a read fails with when the work limit's queue is full (answered 503). */
const BUSY = new Error("busy");
const JSON_TYPE = { "Content-Type": "application/json" };

/** One line for an error text from a source (bounded, control characters escaped). */
function oneLine(err: unknown): string {
  let text: string;
  try {
    text = String(err);
  } catch {
    text = "error";
  }
  if (text.length > 200) text = `${text.slice(0, 200)}…`;
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/**
 * Starts the health server on `host`:`port`. See the file's note for who may read what and how load is bounded.
 */
export async function startHealthServer(host: string, port: number, health: HealthSource, metrics: AgentMetrics, options: HealthServerOptions = {}): Promise<Server> {
  const trusted = options.trustedClient ?? isNodeLocalClient;
  const reuseMs = options.reuseMs ?? 100;
  const limit = new WorkLimit(Math.max(1, options.maxConcurrent ?? 4), Math.max(0, options.maxQueued ?? 64));
  // The limit bounds reads, not requests: a request that joins a read in flight costs nothing more.
  const limited = async <T>(read: () => Promise<T>): Promise<T> => {
    const done = await limit.run(read);
    if (!done) throw BUSY;
    return done.value;
  };
  const status = new SharedRead(() => limited(async () => renderJson(await health.status!())), reuseMs);
  const drift = new SharedRead(() => limited(async () => renderJson(await health.drift!())), reuseMs);

  const busy = (res: ServerResponse) => res.writeHead(503, { ...TEXT, "Retry-After": "1" }).end("weftd is busy answering other requests: retry in a second\n");
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const route = routeRequest(req.method, req.url);
    switch (route.kind) {
      case "method-not-allowed":
        res.writeHead(405, { ...TEXT, Allow: "GET, HEAD" }).end();
        return;
      case "healthz":
        res.writeHead(200, TEXT).end("weftd is running\n");
        return;
      case "readyz": {
        const r = health.ready();
        res.writeHead(r.ready ? 200 : 503, TEXT).end(r.ready ? "weftd is ready\n" : `weftd is not ready: ${oneLine(r.reason)}\n`);
        return;
      }
      case "status":
      case "drift": {
        const read = route.kind === "status" ? (health.status ? status : undefined) : health.drift ? drift : undefined;
        if (!read) break;
        if (!trusted(req.socket.remoteAddress, req.socket.localAddress)) {
          res
            .writeHead(403, TEXT)
            .end(`forbidden: /${route.kind} shows this node's peers and kernel state and answers only on the node itself; run weftctl ${route.kind} there\n`);
          return;
        }
        read.get().then(
          (body) => void res.writeHead(200, JSON_TYPE).end(body),
          (err) =>
            err === BUSY ? busy(res) : void res.writeHead(500, TEXT).end(`${route.kind === "status" ? "reading the status" : "reading kernel state"} failed: ${oneLine(err)}\n`),
        );
        return;
      }
      case "metrics":
        limited(async () => {
          await Promise.resolve()
            .then(() => health.refreshMetrics?.())
            .catch(() => undefined);
          return metrics.registry.metrics();
        }).then(
          (text) => void res.writeHead(200, { "Content-Type": metrics.registry.contentType }).end(text),
          (err) => (err === BUSY ? busy(res) : void res.writeHead(500, TEXT).end(`rendering the metrics failed: ${oneLine(err)}\n`)),
        );
        return;
    }
    res.writeHead(404, TEXT).end("not found: try /healthz, /readyz, /status, /drift or /metrics\n");
  };
  const server = createServer((req, res) => {
    try {
      handle(req, res);
    } catch {
      if (!res.headersSent) res.writeHead(500, TEXT).end("internal error\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
