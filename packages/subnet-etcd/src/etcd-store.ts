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
 *   do our own backoff (100 ms to 5 s) in the manager.
 * - Calls have no deadline by default; a stopped (SIGSTOP) etcd would hang them forever. Unary calls get
 *   `requestTimeoutMs`, and the connection sends keepalive pings so a silent watch stream is noticed.
 * - A failed TLS handshake is not an error of its own in grpc-js: the call fails with `14 UNAVAILABLE: No
 *   connection established. Last error: <Node's TLS error>`, exactly like a refused connection, and would be
 *   retried forever. `tlsProblem` reads the Node/OpenSSL text out of it and turns the cases that only the
 *   operator can fix (a CA that does not match, a client certificate etcd refuses) into CONFIG_INVALID.
 */
import { readFileSync } from "node:fs";
import { ConfigError, WeftError, errorMessage } from "@weft/core";
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdPermissionDeniedError,
  EtcdUserNotFoundError,
  GRPCUnauthenticatedError,
  type IKeyValue,
  type IOptions,
  type Watcher,
} from "etcd3";
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

/** Endpoints for logs: any `user:password@` part removed. */
export function redactEndpoint(endpoint: string): string {
  return endpoint.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, "$1");
}

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
  private readonly tls: EtcdTlsOptions;
  private readonly secure: boolean;
  private readonly watches = new Set<EtcdWatch>();

  constructor(options: EtcdConnectionOptions) {
    if (options.endpoints.length === 0) throw new ConfigError("etcd options", "endpoints", "no etcd endpoints given: pass at least one, e.g. http://127.0.0.1:2379");
    const tls = options.tls ?? {};
    if (!!tls.certFile !== !!tls.keyFile) {
      throw new ConfigError("etcd options", tls.certFile ? "tls.keyFile" : "tls.certFile", "TLS client auth needs both a certificate and a key file: set both or neither");
    }
    if ((options.username === undefined) !== (options.password === undefined)) {
      throw new ConfigError("etcd options", "username", "etcd username and password go together: set both or neither");
    }
    this.username = options.username;
    this.tls = tls;
    const secure = !!tls.caFile || !!tls.certFile;
    // etcd3 uses TLS with the system roots for https:// endpoints when no credentials are given.
    this.secure = secure || options.endpoints.some((e) => /^https:/i.test(e));
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
      hosts: [...options.endpoints],
      ...(credentials ? { credentials } : {}),
      ...(options.username !== undefined ? { auth: { username: options.username, password: options.password ?? "" } } : {}),
      dialTimeout: options.dialTimeoutMs,
      // HTTP/2 pings find a half-open connection (a partition, a frozen etcd) that would otherwise leave the
      // watch stream silent forever. etcd accepts pings every 5 s or slower (--grpc-keepalive-min-time).
      grpcOptions: { "grpc.keepalive_time_ms": 30_000, "grpc.keepalive_timeout_ms": 10_000, "grpc.keepalive_permit_without_calls": 1 },
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      faultHandling: {
        host: () => passThroughPolicy,
        watchBackoff: exponentialBackoff(options.watchBackoffMinMs, options.watchBackoffMaxMs),
      },
    });
    this.label = `etcd ${options.endpoints.map(redactEndpoint).join(",")}`;
  }

  /** Turns an etcd3/grpc error into a WeftError: credentials and TLS problems are permanent, the rest transient. */
  private classify(op: string, e: unknown): WeftError {
    if (e instanceof WeftError) return e;
    const tls = this.secure ? tlsProblem(errorMessage(e), this.tls) : undefined;
    if (tls) return new WeftError(tls.permanent ? "CONFIG_INVALID" : "STORE_UNAVAILABLE", `${this.label}: ${op} failed: ${tls.text}`, { cause: e });
    if (
      e instanceof EtcdAuthenticationFailedError ||
      e instanceof EtcdUserNotFoundError ||
      e instanceof GRPCUnauthenticatedError ||
      e instanceof EtcdPermissionDeniedError
    ) {
      return new WeftError(
        "CONFIG_INVALID",
        `${this.label} refused ${op} for user ${JSON.stringify(this.username ?? "")}: ${errorMessage(e)}; check the etcd username/password options and the user's role on the prefix`,
        { cause: e },
      );
    }
    return new WeftError("STORE_UNAVAILABLE", `${this.label}: ${op} failed: ${errorMessage(e)}`, { cause: e });
  }

  private async call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw this.classify(op, e);
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
    const w = new EtcdWatch(this.client, key, prefix, fromRevision, handlers, (x) => this.watches.delete(x));
    this.watches.add(w);
    return w;
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
  ) {
    this.next = fromRevision;
    const b = client.watch();
    (prefix ? b.prefix(key) : b.key(key)).startRevision(fromRevision.toString());
    this.watcher = b.watcher();
    const w = this.watcher;
    w.on("error", (err) => {
      if (this.closed) return;
      this.closed = true;
      this.onClose(this);
      handlers.onCanceled(err);
    });
    w.on("connected", () => {
      if (!this.closed) handlers.onConnected();
    });
    w.on("disconnected", (err) => {
      // Resume exactly after the last delivered event (see the file comment).
      (w.request as { start_revision?: string | number }).start_revision = this.next.toString();
      if (!this.closed) handlers.onDisconnected(err);
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
    try {
      await this.watcher.cancel();
    } catch {
      // The stream is gone already; nothing to cancel.
    }
  }
}
