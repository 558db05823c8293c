/**
 * The CNI server: the `weft` plugin's work done in a long-running process (weftd), answering the C shim
 * (../shim/weft-cni-shim.c) over a unix socket. Decision and measurements: docs/adr/0006-cni-latency.md.
 *
 * One code path: every request goes through `runCni` (./plugin.ts), the same function the Node plugin (the
 * shim's fallback, ./main.ts) runs, on the same host-local-compatible IPAM store and lock. Only the ports
 * differ: here the node side is the long-lived process's kernel port, and the pod side one `ip` process per pod.
 *
 * Wire format (HTTP/1.1 over the unix socket, one request per connection; HTTP so that no raw socket code is
 * needed on this side and so `curl --unix-socket` can talk to it):
 *   POST /cni/v1, body: "CNI_X=value\0" for each CNI_* variable, an empty entry "\0", then the plugin's stdin.
 *   200 + header `Weft-Cni-Exit-Code: 0|1`, body: what the plugin prints on stdout (result or error object).
 *   413 / 408 / 400 / 404: the body is a CNI error object (the shim prints it and exits 1).
 *   GET /cni/v1/status: in-flight and served counts as JSON (for debugging).
 * Bounds: a request body over `maxRequestBytes` is refused (413) before it is read; a client that does not send
 * its whole request within `receiveTimeoutMs` gets 408 and its connection is closed. Requests run concurrently:
 * a slow one (a held IPAM lock, a hung `ip`) never blocks the others.
 *
 * The socket is 0600 in a directory owned by this process's user and not writable by group or others; it is
 * created under a umask of 0177, so it is never reachable by anyone else, not even between bind and chmod.
 */
import { chmodSync, existsSync, lstatSync, rmdirSync, statSync, unlinkSync } from "node:fs";
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { dirname } from "node:path";
import { ensureDirectory } from "@weft/kernel";
import { CniErrorCode, type CniErrorJson } from "./errors.js";
import { type PluginDeps, runCni } from "./plugin.js";
import { CURRENT_VERSION } from "./result.js";

/** The socket weftd serves and the shim uses when the network config has no `agentSocket`. */
export const DEFAULT_CNI_SOCKET = "/run/weft/cni.sock";
/** The shim's limit on stdin (1 MiB) plus its limit on the CNI_* environment (64 KiB). */
export const MAX_CNI_REQUEST_BYTES = 1024 * 1024 + 64 * 1024;
/** The endpoint the shim posts to (GET `${CNI_PATH}/status` answers in-flight and served counts). */
export const CNI_PATH = "/cni/v1";
/** How long close() waits for requests in flight before it closes their connections (weftd's SIGTERM). */
export const CNI_DRAIN_TIMEOUT_MS = 5000;
/** The answer's header carrying the plugin's exit code (0 or 1). */
export const EXIT_CODE_HEADER = "weft-cni-exit-code";

/** One CNI request as the shim sends it. */
export interface CniWireRequest {
  readonly env: Readonly<Record<string, string>>;
  readonly stdin: string;
}

/** The body the shim sends (also used by tests to speak for it). */
export function encodeCniRequest(req: CniWireRequest): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(req.env)) parts.push(Buffer.from(`${k}=${v}\0`, "utf8"));
  parts.push(Buffer.from([0]), Buffer.from(req.stdin, "utf8"));
  return Buffer.concat(parts);
}

/**
 * Decodes a request body; only CNI_* variables are taken, anything else is refused. As the Node plugin sees its
 * environment: a `CNI_` name that is not a CNI variable (lower case, punctuation) is ignored, and of duplicate
 * entries the first counts (getenv's rule).
 */
export function decodeCniRequest(body: Buffer): CniWireRequest {
  const env: Record<string, string> = {};
  let pos = 0;
  for (;;) {
    const nul = body.indexOf(0, pos);
    if (nul < 0) throw new Error("the environment block has no terminating empty entry");
    if (nul === pos) {
      pos++;
      break;
    }
    const entry = body.subarray(pos, nul).toString("utf8");
    const eq = entry.indexOf("=");
    if (eq <= 0) throw new Error(`environment entry ${JSON.stringify(entry.slice(0, 40))} has no name`);
    const name = entry.slice(0, eq);
    if (!name.startsWith("CNI_")) throw new Error(`environment entry ${JSON.stringify(name.slice(0, 40))} is not a CNI_* variable`);
    if (/^CNI_[A-Z0-9_]+$/.test(name) && !Object.hasOwn(env, name)) env[name] = entry.slice(eq + 1);
    pos = nul + 1;
  }
  return { env, stdin: body.subarray(pos).toString("utf8") };
}

/** What one request did, for metrics and logs. */
export interface CniRequestObservation {
  readonly command: string;
  readonly seconds: number;
  readonly exitCode: number;
  /** The CNI error code when exitCode is 1. */
  readonly code?: number;
  readonly containerID?: string;
  readonly msg?: string;
}

export interface CniServerOptions {
  readonly socketPath: string;
  /** The ports runCni works through (node side: the long-lived process's kernel; pod side: per namespace). */
  readonly deps: Omit<PluginDeps, "fault" | "trace">;
  readonly maxRequestBytes?: number;
  /** Time a client has to send its whole request (default 10 s; the shim sends it at once). */
  readonly receiveTimeoutMs?: number;
  /**
   * Test-only: honour `WEFT_CNI_FAULT=<point>` in CNI_ARGS (the shim forwards CNI_* only), as the Node plugin
   * honours the WEFT_CNI_FAULT variable. Off unless the process that serves sets it.
   */
  readonly faultInjection?: boolean;
  readonly observe?: (o: CniRequestObservation) => void;
}

function errorBody(code: number, msg: string, details?: string): string {
  const e: CniErrorJson = { cniVersion: CURRENT_VERSION, code, msg, ...(details ? { details } : {}) };
  return `${JSON.stringify(e)}\n`;
}

/** The CNI_ARGS value of `key` ("K1=V1;K2=V2"), if present. */
function cniArg(args: string | undefined, key: string): string | undefined {
  for (const kv of (args ?? "").split(";")) {
    const eq = kv.indexOf("=");
    if (eq > 0 && kv.slice(0, eq) === key) return kv.slice(eq + 1);
  }
  return undefined;
}

/**
 * Makes sure `dir` exists, is a directory owned by this process's user, and is not writable by others. Returns
 * the first directory it had to create, if any (removed again, when empty, as the server goes).
 */
export function prepareSocketDir(dir: string): string | undefined {
  // The first missing ancestor is what gets created; ensureDirectory refuses /proc, /sys and non-directory
  // components (Node 20's recursive mkdir spins forever under /proc) and creates one component at a time.
  let created: string | undefined;
  for (let d = dir; !existsSync(d); d = dirname(d)) {
    created = d;
    if (dirname(d) === d) break;
  }
  ensureDirectory(dir, "--cni-socket");
  const st = lstatSync(dir);
  const uid = process.getuid?.() ?? 0;
  if (!st.isDirectory()) throw new Error(`--cni-socket: ${dir} is not a directory; choose a socket path in a directory owned by uid ${uid}`);
  if (st.uid !== uid) {
    throw new Error(`--cni-socket: directory ${dir} is owned by uid ${st.uid}, not by this process (uid ${uid}); use a root-owned directory such as /run/weft`);
  }
  if ((st.mode & 0o022) !== 0) {
    throw new Error(
      `--cni-socket: directory ${dir} has mode ${(st.mode & 0o777).toString(8)}, writable by group or others; ` +
        `make it 0755 or 0700 (chmod go-w ${dir}) or choose another directory`,
    );
  }
  return created;
}

/** One answer read from the CNI socket by {@link requestCniSocket}. */
export interface CniSocketAnswer {
  /** The HTTP status: 200 for an answered request (the plugin's own error or not), 4xx for a refused one. */
  readonly status: number;
  /** The plugin's exit code from the `weft-cni-exit-code` header; undefined when the answer has none. */
  readonly exitCode: number | undefined;
  /** What the shim would print: the plugin's stdout, a CNI error object, or (for "status") the counts as JSON. */
  readonly body: string;
}

/**
 * The client side of the CNI socket, in TypeScript (the shim is the C side): sends `req` over the unix socket at
 * `socketPath` as the shim does (POST {@link CNI_PATH}, the {@link encodeCniRequest} body), or, for `"status"`,
 * GET `${CNI_PATH}/status`, and reads the whole answer. Rejects with the connection's error (its `code`: ENOENT,
 * ECONNREFUSED, EACCES, ...) or, when the whole exchange takes longer than `timeoutMs`, with an error whose code is
 * ETIMEDOUT (the connection was accepted: something lives there, but it does not answer). Used by weftd (is another
 * agent serving this socket?), by `weftctl doctor` and by the tests.
 */
export function requestCniSocket(socketPath: string, req: CniWireRequest | "status", timeoutMs = 5000): Promise<CniSocketAnswer> {
  const body = req === "status" ? undefined : encodeCniRequest(req);
  return new Promise((resolve, reject) => {
    const r = httpRequest(
      {
        socketPath,
        path: req === "status" ? `${CNI_PATH}/status` : CNI_PATH,
        method: req === "status" ? "GET" : "POST",
        agent: false,
        headers: { host: "weftd", connection: "close", ...(body ? { "content-type": "application/x-weft-cni", "content-length": body.length } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          clearTimeout(timer);
          const exit = Number(res.headers[EXIT_CODE_HEADER]);
          resolve({ status: res.statusCode ?? 0, exitCode: Number.isInteger(exit) ? exit : undefined, body: Buffer.concat(chunks).toString("utf8") });
        });
      },
    );
    const timer = setTimeout(() => {
      reject(Object.assign(new Error(`${socketPath} accepted the connection but did not answer within ${timeoutMs} ms`), { code: "ETIMEDOUT" }));
      r.destroy();
    }, timeoutMs);
    r.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    r.end(body);
  });
}

/** True when something answers HTTP on the socket at `path`, or accepts and hangs (another agent serving it). */
async function socketAnswers(path: string): Promise<boolean> {
  try {
    await requestCniSocket(path, "status", 1000);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ETIMEDOUT";
  }
}

/**
 * weftd's side of the `weft` shim: an HTTP/1.1 server on a root-only unix socket that runs each request through
 * `runCni` with the given ports. `start()` creates the socket, `close()` waits for requests in flight and removes
 * it. One instance per socket; see the top of this file for the protocol and its bounds.
 */
export class CniServer {
  private server: Server | undefined;
  private closing: Promise<void> | undefined;
  private inFlight = 0;
  private served = 0;
  private socketIno: number | undefined;
  private createdDir: string | undefined;
  /** Removes the socket (and the directory start() created, when empty) if this process exits without close(). */
  private readonly onExit = () => this.removeSocket();
  private readonly maxBytes: number;
  private readonly receiveTimeoutMs: number;

  constructor(private readonly opts: CniServerOptions) {
    this.maxBytes = opts.maxRequestBytes ?? MAX_CNI_REQUEST_BYTES;
    this.receiveTimeoutMs = opts.receiveTimeoutMs ?? 10_000;
  }

  /** The socket this server serves (or will serve). */
  get socketPath(): string {
    return this.opts.socketPath;
  }

  /** Creates the socket (0600, in a directory checked by prepareSocketDir) and starts serving. */
  async start(): Promise<void> {
    const path = this.opts.socketPath;
    if (!path.startsWith("/")) throw new Error(`--cni-socket ${JSON.stringify(path)} must be an absolute path`);
    if (Buffer.byteLength(path) > 107) throw new Error(`--cni-socket ${path} is longer than 107 bytes (the limit of a unix socket path)`);
    this.createdDir = prepareSocketDir(dirname(path));
    let existing;
    try {
      existing = lstatSync(path);
    } catch {
      existing = undefined;
    }
    if (existing) {
      if (!existing.isSocket()) throw new Error(`--cni-socket: ${path} exists and is not a socket; remove it or choose another path`);
      if (await socketAnswers(path)) throw new Error(`--cni-socket: another process serves ${path} (a second weftd?); stop it or choose another path`);
      unlinkSync(path); // left by an agent that died
    }
    const server = createServer(
      {
        requestTimeout: this.receiveTimeoutMs,
        headersTimeout: this.receiveTimeoutMs,
        connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(this.receiveTimeoutMs / 4))),
        keepAliveTimeout: 1000,
      },
      (req, res) => void this.handle(req, res),
    );
    // A client that half-closes after its request (shutdown(SHUT_WR)) still gets its answer: without this, Node's
    // HTTP server aborts a request still running when the client's FIN arrives (an undocumented but long-standing
    // switch of http.Server).
    (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
    server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
      if (!socket.writable) return socket.destroy();
      const timeout = err.code === "ERR_HTTP_REQUEST_TIMEOUT" || err.code === "ERR_HTTP_HEADERS_TIMEOUT";
      const body = timeout
        ? errorBody(CniErrorCode.IO_FAILURE, `weftd: the request was not received completely within ${this.receiveTimeoutMs} ms; the client hung or is too slow`)
        : errorBody(CniErrorCode.DECODING_FAILURE, `weftd: malformed request on the CNI socket: ${err.message}`);
      const status = timeout ? "408 Request Timeout" : "400 Bad Request";
      socket.end(`HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    });
    const old = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(path, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } finally {
      process.umask(old);
    }
    chmodSync(path, 0o600);
    this.socketIno = statSync(path).ino;
    this.server = server;
    process.once("exit", this.onExit);
  }

  /**
   * Stops accepting, waits for requests in flight (at most `drainTimeoutMs`, default {@link CNI_DRAIN_TIMEOUT_MS}),
   * removes the socket if it is still ours. Requests still running at the deadline have their connections closed:
   * their shims answer CNI error 11 and the runtime retries. Every call returns the same promise, so weftd can
   * start closing at the signal and wait for the end before it exits.
   */
  close(drainTimeoutMs = CNI_DRAIN_TIMEOUT_MS): Promise<void> {
    if (this.closing) return this.closing;
    const server = this.server;
    if (!server) return Promise.resolve();
    this.server = undefined;
    this.closing = (async () => {
      // Stop accepting at once (new shims then run the fallback), wait for requests in flight, then clean up. The
      // exit hook stays until then: a process that exits meanwhile still removes the socket.
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Idle connections (a client that connected and sent nothing) hold up nothing: only requests are awaited.
        server.closeIdleConnections();
        timer = setTimeout(() => {
          server.closeAllConnections();
          resolve();
        }, drainTimeoutMs);
      });
      clearTimeout(timer);
      this.removeSocket();
      process.off("exit", this.onExit);
    })();
    return this.closing;
  }

  /** Unlinks the socket if it is still the one this server made, then the directories start() created if empty. */
  private removeSocket(): void {
    try {
      if (statSync(this.opts.socketPath).ino === this.socketIno) unlinkSync(this.opts.socketPath);
    } catch {
      // already gone
    }
    const top = this.createdDir;
    this.createdDir = undefined;
    if (top === undefined) return;
    for (let d = dirname(this.opts.socketPath); d.startsWith(top); d = dirname(d)) {
      try {
        rmdirSync(d);
      } catch {
        return; // not empty (subnet.env lives there): it stays
      }
      if (d === top) return;
    }
  }

  private send(res: ServerResponse, status: number, body: string, exitCode: number): void {
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      [EXIT_CODE_HEADER]: String(exitCode),
      connection: "close",
    });
    res.end(body);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === "GET" && req.url === `${CNI_PATH}/status`) {
      this.send(res, 200, `${JSON.stringify({ inFlight: this.inFlight, served: this.served })}\n`, 0);
      return;
    }
    if (req.method !== "POST" || req.url !== CNI_PATH) {
      req.resume();
      this.send(res, 404, errorBody(CniErrorCode.INTERNAL, `weftd: no such endpoint ${req.method} ${req.url} on the CNI socket (POST ${CNI_PATH})`), 1);
      return;
    }
    const declared = Number(req.headers["content-length"] ?? "NaN");
    const tooLarge = () => errorBody(CniErrorCode.INVALID_NETWORK_CONFIG, `weftd: the CNI request is larger than the ${this.maxBytes}-byte limit; the network config is too large`);
    if (Number.isFinite(declared) && declared > this.maxBytes) {
      this.send(res, 413, tooLarge(), 1);
      req.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const c of req) {
        size += (c as Buffer).length;
        if (size > this.maxBytes) {
          this.send(res, 413, tooLarge(), 1);
          req.destroy();
          return;
        }
        chunks.push(c as Buffer);
      }
    } catch {
      return; // the client went away (or timed out: clientError answered it)
    }
    let wire: CniWireRequest;
    try {
      wire = decodeCniRequest(Buffer.concat(chunks));
    } catch (err) {
      this.send(res, 400, errorBody(CniErrorCode.DECODING_FAILURE, `weftd: malformed CNI request: ${(err as Error).message}`), 1);
      return;
    }
    const started = performance.now();
    this.inFlight++;
    let outcome;
    try {
      const fault = this.opts.faultInjection ? cniArg(wire.env.CNI_ARGS, "WEFT_CNI_FAULT") : undefined;
      outcome = await runCni(wire.env, wire.stdin, { ...this.opts.deps, ...(fault ? { fault } : {}) });
    } finally {
      this.inFlight--;
      this.served++;
    }
    this.send(res, 200, outcome.stdout, outcome.exitCode);
    if (this.opts.observe) {
      let code: number | undefined;
      let msg: string | undefined;
      if (outcome.exitCode !== 0) {
        try {
          const e = JSON.parse(outcome.stdout) as { code?: unknown; msg?: unknown };
          if (typeof e.code === "number") code = e.code;
          if (typeof e.msg === "string") msg = e.msg;
        } catch {
          code = CniErrorCode.INTERNAL;
        }
      }
      this.opts.observe({
        command: wire.env.CNI_COMMAND ?? "",
        seconds: (performance.now() - started) / 1000,
        exitCode: outcome.exitCode,
        ...(code !== undefined ? { code } : {}),
        ...(msg !== undefined ? { msg } : {}),
        ...(wire.env.CNI_CONTAINERID ? { containerID: wire.env.CNI_CONTAINERID } : {}),
      });
    }
  }
}
