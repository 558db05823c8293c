/**
 * A real single-member etcd (Debian's etcd 3.4) for tests: fresh temp directory, fast election, readiness by
 * HTTP GET /health (never `etcdctl endpoint health`: a failed first gRPC dial costs a 1 s reconnect backoff).
 *
 * Layout of `dataDir` (a fresh mkdtemp directory, removed by stop()):
 *   data/            etcd's --data-dir
 *   etcd.log         zap log (--log-outputs)
 *   etcd.stdio       the process's stdout/stderr (panics land here)
 *   <name>:23790     client socket (listen: "unix"); etcd creates it in its working directory, and the
 *   <name>:23800     peer socket    name must have the form host:port or etcd rejects the URL.
 *
 *   tls/             with `tls: true` only: a throw-away CA, a server certificate for 127.0.0.1 and a client
 *                    certificate, made by the `openssl` binary (keys 0600). etcd then requires a client
 *                    certificate signed by that CA (--client-cert-auth) on its https:// client URL.
 *
 * The unix listener speaks the same HTTP as the TCP one (/health, /version, the /v3 JSON gateway), so one
 * HTTP client with `socketPath` serves both modes. The unix endpoint needs no address anywhere and works
 * from every namespace on the machine, pods included (see linux-lab.md §7). The TLS listener speaks the same
 * HTTP over TLS; the helpers below take the client files as their last argument.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { request } from "node:http";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ChildHandle } from "@weft/kernel";
import { WeftError } from "@weft/core";
import { registerCleanup } from "./cleanup.js";
import { uniqueName } from "./guards.js";
import { labRunner } from "./runner.js";

/** PEM files a client needs to talk to a TLS etcd started with `tls: true`. */
export interface EtcdClientTls {
  /** The throw-away CA that signed the server and client certificates. */
  readonly caFile: string;
  /** Client certificate (CN weft-test-client, extendedKeyUsage clientAuth). */
  readonly certFile: string;
  /** Its private key (mode 0600). */
  readonly keyFile: string;
}

export interface EtcdServer {
  /** `http://127.0.0.1:<port>` (loopback), `https://127.0.0.1:<port>` (loopback with tls) or `unix:///abs/dir/<name>:23790` (unix). */
  readonly endpoint: string;
  readonly endpoints: string[];
  readonly pid: number;
  /** The temp directory holding etcd's data (in `data/`), its log and its sockets. */
  readonly dataDir: string;
  readonly logFile: string;
  readonly name: string;
  /** Set when started with `tls: true`: what a client needs (etcd demands a client certificate). */
  readonly tls?: EtcdClientTls;
  /** SIGTERM by PID, wait (SIGKILL after 10 s), then rm -rf dataDir. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL by PID and wait; the data directory stays for restart(). */
  kill(): Promise<void>;
  /** Starts etcd again on the same data and endpoint (killing the running one first, if any). */
  restart(): Promise<void>;
}

export interface StartEtcdOptions {
  /** Default "loopback". */
  readonly listen?: "loopback" | "unix";
  /** Appended to etcd's argv (e.g. `["--auth-token", "jwt,..."]`). */
  readonly extraArgs?: readonly string[];
  /** How long to wait for /health (default 20 s; the machine is noisy). */
  readonly readyTimeoutMs?: number;
  /**
   * Serve clients over TLS with mutual authentication (loopback only): a fresh CA and certificates are made
   * with `openssl` in the temp directory and exposed as `EtcdServer.tls`. The peer URL stays plain http
   * (one member; nothing else dials it).
   */
  readonly tls?: boolean;
}

/** A free TCP port on 127.0.0.1 for each entry of `count` (all held open together, so they differ). */
export async function freeLoopbackPorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const srv = createServer();
          srv.once("error", reject);
          srv.listen(0, "127.0.0.1", () => resolve(srv));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

export interface EtcdHttpResponse {
  readonly status: number;
  readonly body: string;
}

/**
 * One HTTP request to an etcd endpoint (`http://host:port`, `https://host:port` or `unix:///path/name:port`).
 * `body`, if given, is sent as JSON with POST. For the v3 JSON gateway keys and values are base64 (see
 * etcdPut/etcdGet). An https endpoint needs `tls` (the server's CA and a client certificate).
 */
export function etcdHttp(endpoint: string, path: string, body?: unknown, timeoutMs = 2000, tls?: EtcdClientTls): Promise<EtcdHttpResponse> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const secure = endpoint.startsWith("https://");
    if (secure && !tls) {
      reject(new Error(`etcd ${endpoint}: an https endpoint needs the client TLS files (EtcdServer.tls)`));
      return;
    }
    const target = endpoint.startsWith("unix://")
      ? { socketPath: endpoint.slice("unix://".length), host: "localhost" }
      : (() => {
          const u = new URL(endpoint);
          return { host: u.hostname, port: Number(u.port) };
        })();
    // Read per request: the files are tiny, and a restart() keeps them, so there is nothing to cache.
    const tlsOptions =
      secure && tls
        ? { ca: readFileSync(tls.caFile), cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile), agent: false as const }
        : {};
    const req = (secure ? httpsRequest : request)(
      {
        ...target,
        path,
        method: payload === undefined ? "GET" : "POST",
        headers: payload === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
        timeout: timeoutMs,
        ...tlsOptions,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`etcd ${endpoint}${path}: no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(payload);
  });
}

const b64 = (s: string): string => Buffer.from(s, "utf8").toString("base64");

/** Puts `key` = `value` through the v3 JSON gateway. */
export async function etcdPut(endpoint: string, key: string, value: string, tls?: EtcdClientTls): Promise<void> {
  const r = await etcdHttp(endpoint, "/v3/kv/put", { key: b64(key), value: b64(value) }, undefined, tls);
  if (r.status !== 200) throw new Error(`etcd put ${key} at ${endpoint}: HTTP ${r.status}: ${r.body.slice(0, 200)}`);
}

/** Reads `key` through the v3 JSON gateway; undefined when absent. */
export async function etcdGet(endpoint: string, key: string, tls?: EtcdClientTls): Promise<string | undefined> {
  const r = await etcdHttp(endpoint, "/v3/kv/range", { key: b64(key) }, undefined, tls);
  if (r.status !== 200) throw new Error(`etcd get ${key} at ${endpoint}: HTTP ${r.status}: ${r.body.slice(0, 200)}`);
  const kvs = (JSON.parse(r.body) as { kvs?: { value?: string }[] }).kvs;
  const v = kvs?.[0]?.value;
  return v === undefined ? (kvs && kvs.length > 0 ? "" : undefined) : Buffer.from(v, "base64").toString("utf8");
}

/** True when GET /health answers {"health":"true"}. */
export async function etcdHealthy(endpoint: string, timeoutMs = 1000, tls?: EtcdClientTls): Promise<boolean> {
  try {
    const r = await etcdHttp(endpoint, "/health", undefined, timeoutMs, tls);
    return r.status === 200 && (JSON.parse(r.body) as { health?: string }).health === "true";
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The most telling lines of etcd's output: its first line (flag errors), else fatal/error log lines, else the tail. */
function explain(stdio: string, log: string): string {
  const first = tail(stdio, 1000).split("\n").find((l) => l.trim() !== "");
  const errors = tail(log, 1000)
    .split("\n")
    .filter((l) => /"level":"(fatal|panic|error)"/.test(l))
    .slice(-3);
  return [first && !first.startsWith("{") ? first : undefined, ...(errors.length > 0 ? errors : [tail(log, 3)])]
    .filter((l) => l)
    .join("\n");
}

function tail(file: string, lines = 5): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

class Etcd implements EtcdServer {
  readonly endpoints: string[];
  readonly logFile: string;
  private child: ChildHandle | undefined;
  private stopped: Promise<void> | undefined;
  private unregister: () => void = () => undefined;

  constructor(
    readonly name: string,
    readonly dataDir: string,
    readonly endpoint: string,
    private readonly args: readonly string[],
    private readonly sockets: readonly string[],
    private readonly readyTimeoutMs: number,
    readonly tls?: EtcdClientTls,
  ) {
    this.endpoints = [endpoint];
    this.logFile = join(dataDir, "etcd.log");
  }

  get pid(): number {
    return this.child?.pid ?? -1;
  }

  async start(): Promise<void> {
    // A SIGKILLed etcd leaves its socket files behind, and Go's listen() on an existing path fails with
    // EADDRINUSE: remove them before starting again.
    for (const s of this.sockets) if (existsSync(s)) unlinkSync(s);
    const stdio = join(this.dataDir, "etcd.stdio");
    const child = labRunner.spawn("etcd", this.args, { cwd: this.dataDir, stdoutFile: stdio, stderrFile: stdio });
    this.child = child;
    let exited: { code: number | null; signal: string | null } | undefined;
    void child.exited.then((e) => (exited = e));

    const deadline = Date.now() + this.readyTimeoutMs;
    for (;;) {
      if (exited) {
        throw new WeftError(
          "PROCESS_FAILED",
          `etcd exited during startup (code ${exited.code}, signal ${exited.signal}):\n${explain(stdio, this.logFile)}`,
        );
      }
      if (await etcdHealthy(this.endpoint, 500, this.tls)) return;
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        await child.exited;
        throw new WeftError(
          "PROCESS_FAILED",
          `etcd at ${this.endpoint} not healthy after ${this.readyTimeoutMs} ms:\n${explain(stdio, this.logFile)}`,
        );
      }
      await sleep(10);
    }
  }

  arm(): void {
    this.unregister = registerCleanup(
      () => this.stop(),
      () => {
        // Exiting: nothing async runs any more. Kill by PID and remove the directory synchronously.
        try {
          if (this.child) process.kill(this.child.pid, "SIGKILL");
        } catch {
          // already gone
        }
        rmSync(this.dataDir, { recursive: true, force: true });
      },
    );
  }

  private async signalAndWait(signal: NodeJS.Signals, graceMs: number): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill(signal);
    const timer = new Promise<"late">((r) => setTimeout(() => r("late"), graceMs).unref());
    if ((await Promise.race([child.exited, timer])) === "late") {
      child.kill("SIGKILL");
      await child.exited;
    }
    this.child = undefined;
  }

  async kill(): Promise<void> {
    await this.signalAndWait("SIGKILL", 10_000);
  }

  async restart(): Promise<void> {
    if (this.stopped) throw new Error(`etcd ${this.name}: restart() after stop(); start a new one with startEtcd()`);
    await this.kill();
    await this.start();
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      await this.signalAndWait("SIGTERM", 10_000);
      rmSync(this.dataDir, { recursive: true, force: true });
      this.unregister();
    })();
    return this.stopped;
  }
}

/** What `makeTestPki` wrote: the client's files plus the server's certificate and key. */
export interface TestPki extends EtcdClientTls {
  readonly serverCertFile: string;
  readonly serverKeyFile: string;
}

/**
 * Makes a throw-away PKI in `dir` with the `openssl` binary (OpenSSL 3: `req -x509 -CA` signs in one step):
 * a CA, a server certificate for IP 127.0.0.1 (and DNS localhost) and a client certificate. ECDSA P-256,
 * valid for 2 days; keys are chmod 0600. `cn` names the CA so two PKIs are told apart in error messages.
 *
 * `openssl req -x509` applies the config's v3_ca section (basicConstraints CA:TRUE) to every certificate it
 * makes; the leaf certificates override it with `-addext basicConstraints=critical,CA:FALSE`.
 */
export async function makeTestPki(dir: string, cn = "weft-test-ca"): Promise<TestPki> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const f = (name: string) => join(dir, name);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"];
  const openssl = async (args: string[]) => {
    const r = await labRunner.run("openssl", args, { reject: false, timeoutMs: 30_000 });
    if (r.exitCode !== 0) {
      throw new WeftError("PROCESS_FAILED", `openssl ${args.slice(0, 2).join(" ")} failed (exit ${r.exitCode}): ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
    }
  };
  await openssl(["req", "-x509", ...ec, "-keyout", f("ca.key"), "-out", f("ca.crt"), "-subj", `/CN=${cn}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  const leaf = (name: string, subject: string, usage: string, san?: string) =>
    openssl(["req", "-x509", ...ec, "-keyout", f(`${name}.key`), "-out", f(`${name}.crt`), "-subj", subject,
      "-CA", f("ca.crt"), "-CAkey", f("ca.key"),
      "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "keyUsage=critical,digitalSignature",
      "-addext", `extendedKeyUsage=${usage}`, ...(san ? ["-addext", `subjectAltName=${san}`] : [])]);
  // clientAuth too: etcd 3.4's HTTP/JSON gateway dials etcd's own gRPC port presenting the *server*
  // certificate, and with --client-cert-auth a certificate without clientAuth is refused ("incompatible key
  // usage" in etcd.log, "connection closed" / HTTP 503 on every /v3 call while /health still says true).
  await leaf("server", "/CN=127.0.0.1", "serverAuth,clientAuth", "IP:127.0.0.1,DNS:localhost");
  await leaf("client", "/CN=weft-test-client", "clientAuth");
  for (const k of ["ca.key", "server.key", "client.key"]) chmodSync(f(k), 0o600);
  return {
    caFile: f("ca.crt"),
    certFile: f("client.crt"),
    keyFile: f("client.key"),
    serverCertFile: f("server.crt"),
    serverKeyFile: f("server.key"),
  };
}

/**
 * Starts a fresh single-member etcd and resolves once /health says true. Loopback mode picks free ports for
 * the client and peer listeners; unix mode uses sockets in the temp directory (no TCP port at all).
 */
export async function startEtcd(opts: StartEtcdOptions = {}): Promise<EtcdServer> {
  const listen = opts.listen ?? "loopback";
  if (opts.tls && listen !== "loopback") throw new Error(`startEtcd: tls needs listen "loopback" (got ${JSON.stringify(listen)})`);
  const name = uniqueName("we");
  const dataDir = mkdtempSync(join(tmpdir(), "weft-etcd-"));
  let clientUrl: string;
  let peerUrl: string;
  let endpoint: string;
  const sockets: string[] = [];
  if (listen === "unix") {
    // Relative to etcd's cwd (dataDir); clients use the absolute path.
    clientUrl = `unix://${name}:23790`;
    peerUrl = `unix://${name}:23800`;
    endpoint = `unix://${join(dataDir, `${name}:23790`)}`;
    sockets.push(join(dataDir, `${name}:23790`), join(dataDir, `${name}:23800`));
    if (endpoint.length - "unix://".length > 107) {
      rmSync(dataDir, { recursive: true, force: true });
      throw new Error(`startEtcd: socket path ${endpoint} exceeds 107 bytes (sun_path); set TMPDIR to a shorter directory`);
    }
  } else {
    const [clientPort, peerPort] = await freeLoopbackPorts(2);
    clientUrl = `${opts.tls ? "https" : "http"}://127.0.0.1:${clientPort}`;
    peerUrl = `http://127.0.0.1:${peerPort}`;
    endpoint = clientUrl;
  }
  const args = [
    "--name", name,
    "--data-dir", join(dataDir, "data"),
    "--logger=zap",
    `--log-outputs=${join(dataDir, "etcd.log")}`,
    "--listen-client-urls", clientUrl,
    "--advertise-client-urls", clientUrl,
    "--listen-peer-urls", peerUrl,
    "--initial-advertise-peer-urls", peerUrl,
    "--initial-cluster", `${name}=${peerUrl}`,
    "--initial-cluster-state", "new",
    // Fast single-member election: ~0.2 s to healthy instead of ~0.9 s.
    "--heartbeat-interval", "10",
    "--election-timeout", "100",
  ];
  let tls: EtcdClientTls | undefined;
  if (opts.tls) {
    let pki: TestPki;
    try {
      pki = await makeTestPki(join(dataDir, "tls"));
    } catch (err) {
      rmSync(dataDir, { recursive: true, force: true });
      throw err;
    }
    tls = { caFile: pki.caFile, certFile: pki.certFile, keyFile: pki.keyFile };
    args.push("--cert-file", pki.serverCertFile, "--key-file", pki.serverKeyFile, "--trusted-ca-file", pki.caFile, "--client-cert-auth");
  }
  args.push(...(opts.extraArgs ?? []));
  const etcd = new Etcd(name, dataDir, endpoint, args, sockets, opts.readyTimeoutMs ?? 20_000, tls);
  etcd.arm();
  try {
    await etcd.start();
  } catch (err) {
    await etcd.stop().catch(() => undefined);
    throw err;
  }
  return etcd;
}
