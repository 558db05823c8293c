/**
 * SubnetStore over etcd v3 with the `etcd3` client (grpc-js).
 *
 * Things about etcd3 1.1.2 this file works around (each verified against etcd 3.4):
 * - A watcher reconnects by itself after a stream error, but resumes from `header.revision + 1` of the last
 *   response it saw. During catch-up etcd stamps responses with the *current* store revision, not the
 *   revision of the events in them, so a disconnect in the middle of a catch-up would skip events. We track
 *   the revision of the last delivered event ourselves and rewrite `watcher.request.start_revision` on every
 *   `disconnected`, before the client's reconnect timer fires.
 * - A watch that falls behind compaction is answered by etcd with `created` and then `canceled` with a
 *   compact_revision; etcd3 turns that into an `error` event with the message "Watcher canceled: " (etcd 3.4
 *   sends no cancel_reason) and drops the watcher. We report it as `onCanceled`; the caller re-lists.
 * - An EventEmitter `error` without a listener throws, so the listener is attached before anything else.
 * - The client's default per-host circuit breaker fails every call fast for 5 s after three failures,
 *   which would keep a restarted etcd unreachable for up to 5 s. We replace it with a pass-through policy and
 *   do our own backoff (100 ms to 1 s) in the manager.
 * - grpc-js shares subchannels between channels by default, so the fresh channel etcd3 makes after a failure
 *   inherited the old connection attempt, hung or in grpc's own backoff (1 s growing to 120 s): agents took
 *   20-35 s to reach an etcd that was up. We use a local subchannel pool, a 100 ms-1 s reconnect backoff, and a
 *   short first deadline while etcd has not answered (CONNECT_DEADLINE_MS), so an agent is ready within ~1 s
 *   of etcd answering however its first attempts went.
 * - etcd3 passes an endpoint to grpc-js after stripping only `http(s)://`: `user:pass@host:port` became the
 *   gRPC target, never resolved, and was echoed in every error. Endpoints are parsed first (endpoints.ts):
 *   credentials leave the URL and become the client's auth; error text from the client is redacted too.
 * - etcd3 fetches a new auth token only when a unary call fails with "invalid auth token"; a watch stream keeps
 *   the token it was opened with, and etcd cancels every watch created on it once that token is refused (TTL
 *   expiry, a restart). We drop the cached token and end the stream so a new one is opened with a fresh token
 *   (renewWatchAuth); and cancel() of a watch whose create etcd refused never settles, so close() does not
 *   wait for it (that once kept a SIGTERM'd agent alive).
 * - Calls have no deadline by default; a stopped (SIGSTOP) etcd would hang them forever. Unary calls get
 *   `requestTimeoutMs`, and the connection sends keepalive pings so a silent watch stream is noticed.
 * - A failed TLS handshake is not an error of its own in grpc-js: the call fails with `14 UNAVAILABLE: No
 *   connection established. Last error: <Node's TLS error>`, exactly like a refused connection, and would be
 *   retried forever. `tlsProblem` reads the Node/OpenSSL text out of it and turns the cases that only the
 *   operator can fix (a CA that does not match, a client certificate etcd refuses) into CONFIG_INVALID.
 */
import { readFileSync } from "node:fs";
import { ConfigError, WeftError, errorMessage, redactCredentials, registerSecret } from "@weft/core";
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  EtcdUserNotFoundError,
  GRPCUnauthenticatedError,
  type IKeyValue,
  type IOptions,
  type Watcher,
} from "etcd3";
import { parseEndpoints, redactEndpoint } from "./endpoints.js";
import type { KeyCondition, LeaseChoice, StoreEvent, StoredKV, StoreWatch, SubnetStore, WatchHandlers } from "./store.js";

export interface EtcdTlsOptions {
  /** Client certificate (PEM file). TLS client auth is used only when both certFile and keyFile are set. */
  readonly certFile?: string;
  /** Client key (PEM file). */
  readonly keyFile?: string;
  /** CA bundle (PEM file) to verify the server; the system roots when absent. */
  readonly caFile?: string;
}

export interface EtcdConnectionOptions {
  /** See endpoints.ts: `user:password@` in an endpoint becomes the client's auth, never part of its URL. */
  readonly endpoints: readonly string[];
  readonly tls?: EtcdTlsOptions;
  readonly username?: string;
  /** Never logged. */
  readonly password?: string;
  readonly requestTimeoutMs: number;
  readonly dialTimeoutMs: number;
  readonly watchBackoffMinMs: number;
  readonly watchBackoffMaxMs: number;
}

export { redactEndpoint };

/** The first deadline of a call while etcd is not known to be reachable (doubled per consecutive miss). */
const CONNECT_DEADLINE_MS = 1_500;

type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions["faultHandling"]>["host"]>>;
type WatchBackoff = NonNullable<NonNullable<IOptions["faultHandling"]>["watchBackoff"]>;

/** A cockatiel-shaped policy that just runs the call (etcd3 only ever calls `execute` on it). */
const passThroughPolicy = {
  execute<T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    return Promise.resolve().then(() => fn({ signal: signal ?? new AbortController().signal }));
  },
  onSuccess: () => ({ dispose() {} }),
  onFailure: () => ({ dispose() {} }),
} as unknown as HostPolicy;

/** The watch stream's reconnect delay: min doubling to max (cockatiel's IBackoff shape). */
function exponentialBackoff(min: number, max: number): WatchBackoff {
  const make = (d: number): WatchBackoff => ({ duration: d, next: () => make(Math.min(max, d * 2)) }) as unknown as WatchBackoff;
  return { next: () => make(min) } as unknown as WatchBackoff;
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConfigError("etcd options", `tls.${what}`, `cannot read ${what} ${path}: ${errorMessage(e)}; point it at a readable PEM file`);
  }
}

/**
 * What a grpc-js "No connection established" message says about TLS, as one actionable sentence, or
 * undefined when it is not a TLS verification problem. `permanent` is false for hints about errors that also
 * happen while etcd restarts (a connection closed mid-handshake).
 *
 * The texts come from Node (server certificate checks, done by the client) and from OpenSSL alerts sent by
 * etcd (client certificate checks): with --client-cert-auth, Go answers a missing or untrusted client
 * certificate with alert 42 "bad certificate" (TLS 1.2 and 1.3 alike in etcd 3.4's Go 1.19), newer servers
 * send "certificate required" (116) or "unknown ca" (48).
 */
export function tlsProblem(message: string, tls: EtcdTlsOptions): { permanent: boolean; text: string } | undefined {
  const last = /Last error: (?:Error: )?(.*?)(?:\s*\(\d{4}-\d\d-\d\dT[^)]*\))?\.?(?: Resolution note:.*)?$/s.exec(message)?.[1]?.trim() ?? message;
  const ca = tls.caFile ? `the CA file ${tls.caFile}` : "the system CA roots (no CA file set)";
  if (/unable to verify the first certificate|unable to get (local )?issuer certificate|self[- ]signed certificate|certificate signature failure|CERT_UNTRUSTED/i.test(last)) {
    return {
      permanent: true,
      text: `TLS: etcd's server certificate is not signed by ${ca} (${last}); set the etcd CA file option (tls.caFile, --etcd-cafile) to the CA that signed etcd's --cert-file`,
    };
  }
  if (/certificate has expired|certificate is not yet valid/i.test(last)) {
    return { permanent: true, text: `TLS: etcd's server certificate is not valid now (${last}); renew etcd's --cert-file or check this machine's clock` };
  }
  if (/does not match certificate's altnames|ERR_TLS_CERT_ALTNAME_INVALID/i.test(last)) {
    return {
      permanent: true,
      text: `TLS: etcd's server certificate does not name the host in the endpoint (${last}); use an endpoint host that is in the certificate's subjectAltName`,
    };
  }
  const alert = /alert (bad certificate|certificate required|unknown ca|certificate unknown|certificate expired|certificate revoked|unsupported certificate|access denied)/i.exec(last)?.[1];
  if (alert) {
    const text = tls.certFile
      ? `TLS: etcd refused the client certificate ${tls.certFile} (alert "${alert}"); it must be signed by a CA in etcd's --trusted-ca-file, be valid now and allow clientAuth`
      : `TLS: etcd requires a client certificate (alert "${alert}"; etcd runs with --client-cert-auth) and none is set; set the etcd certificate and key options (tls.certFile/tls.keyFile, --etcd-certfile/--etcd-keyfile)`;
    return { permanent: true, text };
  }
  if (/socket disconnected before secure TLS connection|wrong version number|packet length too long/i.test(last)) {
    return { permanent: false, text: `the TLS handshake was cut off (${last}); if this persists, check that etcd serves TLS on this endpoint (etcd --cert-file) or drop the TLS options` };
  }
  return undefined;
}

/**
 * The client's error as a cause that is safe to print: same class name and gRPC code, the redacted message, no
 * stack (which repeats the message). An error that says nothing secret is kept as it is.
 */
function redactedCause(e: unknown, redactedText: string): unknown {
  if (!(e instanceof Error) || e.message === redactedText) return e;
  const out = new Error(redactedText);
  out.name = e.name;
  const code = (e as { code?: unknown }).code;
  if (code !== undefined) (out as { code?: unknown }).code = code;
  out.stack = `${e.name}: ${redactedText}`;
  return out;
}

function toKV(kv: IKeyValue): StoredKV {
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    createRevision: BigInt(kv.create_revision),
    modRevision: BigInt(kv.mod_revision),
    lease: kv.lease && kv.lease !== "" ? String(kv.lease) : "0",
  };
}

export class EtcdStore implements SubnetStore {
  readonly label: string;
  private readonly client: Etcd3;
  private readonly username: string | undefined;
  /** Never logged; only used to redact it from third-party error text. */
  private readonly password: string | undefined;
  private readonly tls: EtcdTlsOptions;
  private readonly secure: boolean;
  private readonly watches = new Set<EtcdWatch>();
  private lastWatchAuthRenewal = 0;
  /** A unary call succeeded and none has failed as unavailable since (see the connect deadline). */
  private reachable = false;
  /** Consecutive unavailable calls while not reachable. */
  private misses = 0;

  constructor(options: EtcdConnectionOptions) {
    if (options.endpoints.length === 0) throw new ConfigError("etcd options", "endpoints", "no etcd endpoints given: pass at least one, e.g. http://127.0.0.1:2379");
    const tls = options.tls ?? {};
    if (!!tls.certFile !== !!tls.keyFile) {
      throw new ConfigError("etcd options", tls.certFile ? "tls.keyFile" : "tls.certFile", "TLS client auth needs both a certificate and a key file: set both or neither");
    }
    if ((options.username === undefined) !== (options.password === undefined)) {
      throw new ConfigError("etcd options", "username", "etcd username and password go together: set both or neither");
    }
    registerSecret(options.password);
    // Credentials leave the URLs here: the client dials clean targets (so no gRPC error can echo them) and
    // authenticates with the username/password the endpoints or the options gave.
    const parsed = parseEndpoints(options.endpoints, {
      ...(options.username !== undefined ? { username: options.username } : {}),
      ...(options.password !== undefined ? { password: options.password } : {}),
    });
    const endpoints = parsed.endpoints.map((e) => e.url);
    this.username = parsed.username;
    this.password = parsed.password;
    this.tls = tls;
    const secure = !!tls.caFile || !!tls.certFile;
    // etcd3 uses TLS with the system roots for https:// endpoints when no credentials are given.
    this.secure = secure || parsed.endpoints.some((e) => e.scheme === "https");
    const credentials = secure
      ? {
          // grpc-js's createSsl takes null for "the system roots".
          rootCertificate: tls.caFile ? readPem(tls.caFile, "caFile") : (null as unknown as Buffer),
          ...(tls.keyFile ? { privateKey: readPem(tls.keyFile, "keyFile") } : {}),
          ...(tls.certFile ? { certChain: readPem(tls.certFile, "certFile") } : {}),
        }
      : undefined;
    const timeout = options.requestTimeoutMs;
    this.client = new Etcd3({
      hosts: endpoints,
      ...(credentials ? { credentials } : {}),
      ...(parsed.username !== undefined ? { auth: { username: parsed.username, password: parsed.password ?? "" } } : {}),
      dialTimeout: options.dialTimeoutMs,
      // HTTP/2 pings find a half-open connection (a partition, a frozen etcd) that would otherwise leave the
      // watch stream silent forever. etcd accepts pings every 5 s or slower (--grpc-keepalive-min-time).
      grpcOptions: {
        "grpc.keepalive_time_ms": 30_000,
        "grpc.keepalive_timeout_ms": 10_000,
        "grpc.keepalive_permit_without_calls": 1,
        // A subchannel of our own: grpc-js's global pool would hand a reset channel the same connection attempt,
        // hung or backing off (1 s growing to 120 s), instead of a fresh one.
        "grpc.use_local_subchannel_pool": 1,
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 1_000,
      },
      // While etcd has not answered yet (or stopped answering), a call gets a short deadline, so a connect that
      // hangs is abandoned and retried on a fresh connection well within the 2 s readiness bound; each
      // consecutive miss doubles it (an etcd that is up but slow still gets through), capped at the timeout.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + (this.reachable ? timeout : Math.min(timeout, CONNECT_DEADLINE_MS * 2 ** Math.min(this.misses, 4))) }),
      faultHandling: {
        host: () => passThroughPolicy,
        watchBackoff: exponentialBackoff(options.watchBackoffMinMs, options.watchBackoffMaxMs),
      },
    });
    this.label = `etcd ${endpoints.join(",")}`;
  }

  /** Turns an etcd3/grpc error into a WeftError: credentials and TLS problems are permanent, the rest transient. */
  private classify(op: string, e: unknown): WeftError {
    if (e instanceof WeftError) return e;
    const text = this.redact(errorMessage(e));
    const tls = this.secure ? tlsProblem(text, this.tls) : undefined;
    if (tls) return new WeftError(tls.permanent ? "CONFIG_INVALID" : "STORE_UNAVAILABLE", `${this.label}: ${op} failed: ${tls.text}`, { cause: redactedCause(e, text) });
    if (
      e instanceof EtcdAuthenticationFailedError ||
      e instanceof EtcdUserNotFoundError ||
      e instanceof GRPCUnauthenticatedError ||
      e instanceof EtcdPermissionDeniedError
    ) {
      return new WeftError(
        "CONFIG_INVALID",
        `${this.label} refused ${op} for user ${JSON.stringify(this.username ?? "")}: ${text}; check the etcd username/password options and the user's role on the prefix`,
        { cause: redactedCause(e, text) },
      );
    }
    return new WeftError("STORE_UNAVAILABLE", `${this.label}: ${op} failed: ${text}`, { cause: redactedCause(e, text) });
  }

  /** Third-party error text without credentials (a second line of defence: the URLs carry none). */
  private redact(text: string): string {
    return redactCredentials(text, [this.password]);
  }

  private async call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      const out = await fn();
      this.reachable = true;
      this.misses = 0;
      return out;
    } catch (e) {
      const err = this.classify(op, e);
      if (err.code === "STORE_UNAVAILABLE") {
        if (!this.reachable) this.misses++;
        this.reachable = false;
      }
      throw err;
    }
  }

  get(key: string): Promise<{ kv?: StoredKV; revision: bigint }> {
    return this.call(`get ${key}`, async () => {
      const res = await this.client.get(key).exec();
      const kv = res.kvs[0];
      return { ...(kv ? { kv: toKV(kv) } : {}), revision: BigInt(res.header.revision) };
    });
  }

  list(prefix: string): Promise<{ kvs: StoredKV[]; revision: bigint }> {
    return this.call(`list ${prefix}`, async () => {
      const res = await this.client.getAll().prefix(prefix).exec();
      return { kvs: res.kvs.map(toKV), revision: BigInt(res.header.revision) };
    });
  }

  grantLease(ttlSeconds: number): Promise<string> {
    return this.call(`lease grant (TTL ${ttlSeconds} s)`, async () => {
      const res = await this.client.leaseClient.leaseGrant({ TTL: ttlSeconds, ID: 0 });
      if (res.error) throw new Error(res.error);
      return String(res.ID);
    });
  }

  revokeLease(id: string): Promise<void> {
    return this.call(`lease revoke ${id}`, async () => {
      await this.client.leaseClient.leaseRevoke({ ID: id });
    });
  }

  private putOp(key: string, value: string, lease: LeaseChoice) {
    const put = this.client.put(key).value(value);
    if (lease === "keep") return put.ignoreLease();
    if (lease !== "none") return put.lease(lease.lease);
    return put;
  }

  create(key: string, value: string, lease: LeaseChoice): Promise<{ ok: boolean; revision: bigint }> {
    return this.call(`create ${key}`, async () => {
      const res = await this.client
        .if(key, "Version", "==", 0)
        .then(this.putOp(key, value, lease === "keep" ? "none" : lease))
        .commit();
      return { ok: res.succeeded, revision: BigInt(res.header.revision) };
    });
  }

  replace(key: string, value: string, cond: KeyCondition, lease: LeaseChoice): Promise<{ ok: boolean; revision: bigint }> {
    return this.call(`update ${key}`, async () => {
      const res = await this.condition(key, cond).then(this.putOp(key, value, lease)).commit();
      return { ok: res.succeeded, revision: BigInt(res.header.revision) };
    });
  }

  deleteIf(key: string, cond: KeyCondition): Promise<boolean> {
    return this.call(`delete ${key}`, async () => {
      const res = await this.condition(key, cond).then(this.client.delete().key(key)).commit();
      return res.succeeded;
    });
  }

  private condition(key: string, cond: KeyCondition) {
    // Version > 0 first: comparing Mod/Create of a missing key against 0 would otherwise succeed.
    const c = this.client.if(key, "Version", ">", 0);
    return "modRevision" in cond ? c.and(key, "Mod", "==", cond.modRevision.toString()) : c.and(key, "Create", "==", cond.createRevision.toString());
  }

  watch(key: string, prefix: boolean, fromRevision: bigint, handlers: WatchHandlers): StoreWatch {
    const w = new EtcdWatch(
      this.client,
      key,
      prefix,
      fromRevision,
      handlers,
      (x) => this.watches.delete(x),
      (e) => redactedCause(e, this.redact(errorMessage(e))),
      () => this.renewWatchAuth(),
    );
    this.watches.add(w);
    return w;
  }

  /**
   * A watch stream's token was refused (see isAuthRejection). etcd3 fetches a new token only when a unary call
   * fails with "invalid auth token", and a stream keeps the metadata it was opened with: so drop the cached
   * token, and end the current stream so that etcd3 opens a new one (after its watch backoff) with a fresh
   * token. Watchers on it see a disconnect and resume from their revision; the refused one was canceled and is
   * re-created by the manager's resync. At most once a second: every watcher on the stream reports it.
   */
  private renewWatchAuth(): void {
    if (this.username === undefined) return;
    const now = Date.now();
    if (now - this.lastWatchAuthRenewal < 1_000) return;
    this.lastWatchAuthRenewal = now;
    const internals = this.client as unknown as {
      pool?: { authenticator?: { invalidateMetadata?: () => void } };
      watchManager?: { state?: number; handleError?: (e: Error) => void };
    };
    internals.pool?.authenticator?.invalidateMetadata?.();
    const wm = internals.watchManager;
    // State 2 is etcd3's WatchManager "Connected" (1.1.2); in other states the next connect fetches the token.
    if (wm?.state === 2 && typeof wm.handleError === "function") {
      wm.handleError(new WeftError("STORE_UNAVAILABLE", "etcd refused the watch stream's auth token; reconnecting with a new one"));
    }
  }

  async close(): Promise<void> {
    // Cancel watchers first: etcd3 re-establishes a stream for any watcher left, even after close().
    await Promise.all([...this.watches].map((w) => w.close()));
    this.client.close();
  }
}

class EtcdWatch implements StoreWatch {
  private readonly watcher: Watcher;
  /** The revision to resume from: one past the last event delivered. */
  private next: bigint;
  private closed = false;

  constructor(
    client: Etcd3,
    key: string,
    prefix: boolean,
    fromRevision: bigint,
    private readonly handlers: WatchHandlers,
    private readonly onClose: (w: EtcdWatch) => void,
    /** The stream's errors reach the handlers (and their log lines) only through this. */
    redact: (e: unknown) => unknown,
    /** etcd refused the stream's auth token: fetch a new one and open a new stream (see the file comment). */
    onAuthRejected: () => void,
  ) {
    this.next = fromRevision;
    const b = client.watch();
    (prefix ? b.prefix(key) : b.key(key)).startRevision(fromRevision.toString());
    this.watcher = b.watcher();
    const w = this.watcher;
    w.on("error", (err) => {
      if (isAuthRejection(err)) onAuthRejected();
      if (this.closed) return;
      this.closed = true;
      this.onClose(this);
      handlers.onCanceled(redact(err));
    });
    w.on("connected", () => {
      if (!this.closed) handlers.onConnected();
    });
    w.on("disconnected", (err) => {
      // Resume exactly after the last delivered event (see the file comment).
      (w.request as { start_revision?: string | number }).start_revision = this.next.toString();
      if (isAuthRejection(err)) onAuthRejected();
      if (!this.closed) handlers.onDisconnected(redact(err));
    });
    w.on("data", (res) => {
      if (this.closed || res.events.length === 0) return;
      const events: StoreEvent[] = [];
      for (const ev of res.events) {
        const kv = ev.kv;
        // Several events can share one revision (a transaction); etcd never splits a revision across responses.
        const rev = BigInt(kv.mod_revision);
        if (rev >= this.next) this.next = rev + 1n;
        events.push(ev.type === "Put" ? { type: "put", kv: toKV(kv) } : { type: "delete", key: kv.key.toString(), modRevision: rev });
      }
      if (events.length > 0) handlers.onEvents(events);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onClose(this);
    // etcd3's cancel() of a watcher whose create request is in flight waits for "connected" or "disconnected";
    // when etcd answers that request with a cancellation (an expired auth token) it emits "error" instead and
    // cancel() never settles, which once kept a SIGTERM'd agent alive. Whichever comes first ends the wait; the
    // bound is a last resort.
    let timer: NodeJS.Timeout | undefined;
    let onError: (() => void) | undefined;
    try {
      await Promise.race([
        this.watcher.cancel().catch(() => undefined), // the stream is gone already: nothing to cancel
        new Promise<void>((resolve) => {
          onError = resolve;
          this.watcher.once("error", onError);
        }),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, CLOSE_BOUND_MS);
          timer.unref?.();
        }),
      ]);
    } finally {
      clearTimeout(timer);
      if (onError) this.watcher.off("error", onError);
    }
  }
}

/** How long close() waits for etcd to confirm a watch's cancellation. */
const CLOSE_BOUND_MS = 3_000;

/**
 * etcd refused the auth token a watch stream was opened with: "invalid auth token" (a simple token expired by
 * --auth-token-ttl or lost in a restart, a JWT past its TTL), as a stream error or as the cancel reason of a
 * watch create request. A permission error for the user is not one (a new token would not help).
 */
function isAuthRejection(err: unknown): boolean {
  return err instanceof EtcdInvalidAuthTokenError || /invalid auth token|code = Unauthenticated/i.test(errorMessage(err));
}
