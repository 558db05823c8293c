/**
 * loadKubeConfig's three ways to reach the API server, each against the in-repo FakeApiServer with the real
 * @kubernetes/client-node: --kube-api-url alone, a kubeconfig whose server --kube-api-url replaces, and the
 * in-cluster configuration (KUBERNETES_SERVICE_HOST/PORT + a service-account directory).
 *
 * The fake server speaks plain HTTP and does not record headers, so each test puts a small front in between
 * that records the Authorization header and relays to the fake: plain HTTP for the kube-api-url cases, HTTPS
 * with the committed test PKI (testdata/README.md) for in-cluster, which is always https. So in-cluster runs
 * end to end: server URL from the env, the CA file as the only trusted root, the bearer token read from the
 * token file. Not covered here: the 60 s re-read of a rotated token (client-node's timer, not ours).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { type IncomingMessage, type Server, type ServerResponse, createServer as createHttpServer, request } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IPAddress, MemoryLogger, WeftError } from "@weft/core";
import { type FakeApiServer, startFakeApiServer } from "@weft/kube-testing";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_SERVICE_ACCOUNT_DIR, KubeApiError, KubeNodeClient, loadKubeConfig } from "./kube-client.js";
import { KubeSubnetManager } from "./kube-subnet-manager.js";

const testdata = (f: string) => new URL(`./testdata/${f}`, import.meta.url).pathname;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const signal = () => new AbortController().signal;

async function fake(): Promise<FakeApiServer> {
  const server = await startFakeApiServer();
  cleanups.push(() => server.close());
  server.addNode({ metadata: { name: "n1" }, spec: { podCIDR: "198.19.7.0/24" } });
  return server;
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "weft-kube-client-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Front {
  readonly url: string;
  readonly port: number;
  /** method, path and Authorization header (or "(none)") of every request. */
  readonly seen: string[];
}

/** An HTTP or HTTPS front on 127.0.0.1 that records each request and relays it to the fake server. */
async function front(target: FakeApiServer, tls?: { cert: Buffer; key: Buffer }): Promise<Front> {
  const seen: string[] = [];
  const t = new URL(target.url);
  const relay = (req: IncomingMessage, res: ServerResponse) => {
    seen.push(`${req.method} ${req.url?.split("?")[0]} ${req.headers.authorization ?? "(none)"}`);
    const up = request({ host: t.hostname, port: Number(t.port), method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  };
  const server: Server = tls ? createHttpsServer({ cert: tls.cert, key: tls.key }, relay) : createHttpServer(relay);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  const port = (server.address() as AddressInfo).port;
  return { url: `${tls ? "https" : "http"}://127.0.0.1:${port}`, port, seen };
}

/** A port nothing listens on (bound, then closed). */
async function deadUrl(): Promise<string> {
  const s = createHttpServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

/** A kubeconfig with a bearer token for its user and `server` as its cluster's server. */
function kubeconfig(dir: string, server: string): string {
  const path = join(dir, "kubeconfig");
  writeFileSync(
    path,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- name: c",
      "  cluster:",
      `    server: ${server}`,
      "    insecure-skip-tls-verify: true",
      "users:",
      "- name: u",
      "  user:",
      "    token: kubeconfig-token",
      "contexts:",
      "- name: ctx",
      "  context: {cluster: c, user: u}",
      "current-context: ctx",
      "",
    ].join("\n"),
  );
  return path;
}

/** A service-account directory as the kubelet mounts it (only the files asked for). */
function serviceAccount(dir: string, o: { token?: string; ca?: string; namespace?: string } = {}): string {
  const sa = join(dir, "serviceaccount");
  mkdirSync(sa);
  if (o.token !== undefined) writeFileSync(join(sa, "token"), o.token);
  if (o.ca !== undefined) writeFileSync(join(sa, "ca.crt"), readFileSync(testdata(o.ca)));
  if (o.namespace !== undefined) writeFileSync(join(sa, "namespace"), o.namespace);
  return sa;
}

const names = async (c: KubeNodeClient) => (await c.listNodes(signal())).items.map((n) => n.metadata?.name);

describe("loadKubeConfig: --kube-api-url alone", () => {
  it("reaches the server at the URL, with no credentials", async () => {
    const server = await fake();
    const f = await front(server);
    const kc = loadKubeConfig({ kubeApiUrl: f.url, env: {} });
    expect(kc.getCurrentCluster()?.server).toBe(f.url);
    const client = new KubeNodeClient(kc, 5_000);
    expect(client.server).toBe(f.url);
    expect(await names(client)).toEqual(["n1"]);
    expect(f.seen).toEqual(["GET /api/v1/nodes (none)"]);
  });

  it("is what a KubeSubnetManager uses end to end (acquireLease patches the node through it)", async () => {
    const server = await fake();
    const f = await front(server);
    const dir = tempDir();
    writeFileSync(join(dir, "net-conf.json"), JSON.stringify({ Network: "198.19.0.0/16", Backend: { Type: "vxlan" } }));
    const mgr = new KubeSubnetManager({ kubeApiUrl: f.url, netConfPath: join(dir, "net-conf.json"), nodeName: "n1", env: {}, retryTimeoutMs: 2_000 }, new MemoryLogger());
    const lease = await mgr.acquireLease({ backendType: "vxlan", publicIP: IPAddress.parse("198.18.0.7"), backendData: { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:07" } }, signal());
    expect(lease.subnet?.toString()).toBe("198.19.7.0/24");
    expect(mgr.name).toBe(`kube node n1 via ${f.url}`);
    expect(((server.getNode("n1")!.metadata as { annotations?: Record<string, string> }).annotations ?? {})["weft.io/public-ip"]).toBe("198.18.0.7");
    expect(f.seen).toContain("PATCH /api/v1/nodes/n1/status (none)");
  });
});

describe("loadKubeConfig: --kubeconfig-file with --kube-api-url", () => {
  it("keeps the kubeconfig's credentials and replaces its server with the URL", async () => {
    const server = await fake();
    const f = await front(server);
    const dir = tempDir();
    const dead = await deadUrl();
    const path = kubeconfig(dir, dead);
    // Alone, the kubeconfig points at nothing: the request fails without an HTTP answer.
    const alone = new KubeNodeClient(loadKubeConfig({ kubeconfigFile: path, env: {} }), 2_000);
    expect(alone.server).toBe(dead);
    const err = await alone.listNodes(signal()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    expect((err as KubeApiError).status).toBe(0);
    // With --kube-api-url the same file reaches the server at the URL, carrying the kubeconfig's token.
    const kc = loadKubeConfig({ kubeconfigFile: path, kubeApiUrl: f.url, env: {} });
    expect(kc.getCurrentCluster()?.server).toBe(f.url);
    expect(await names(new KubeNodeClient(kc, 5_000))).toEqual(["n1"]);
    expect(f.seen).toEqual(["GET /api/v1/nodes Bearer kubeconfig-token"]);
  });

  it("an unreadable kubeconfig or one without a current cluster is one clear error naming the flag", () => {
    const dir = tempDir();
    expect(() => loadKubeConfig({ kubeconfigFile: join(dir, "absent"), env: {} })).toThrow(
      new RegExp(`^cannot load --kubeconfig-file ${join(dir, "absent")}: .*ENOENT.*; point it at a readable kubeconfig$`),
    );
    const noCurrent = join(dir, "no-current");
    writeFileSync(noCurrent, ["apiVersion: v1", "kind: Config", "clusters:", "- name: c", "  cluster: {server: 'http://127.0.0.1:1'}", ""].join("\n"));
    const err = (() => {
      try {
        loadKubeConfig({ kubeconfigFile: noCurrent, kubeApiUrl: "http://127.0.0.1:2", env: {} });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(WeftError);
    expect((err as WeftError).code).toBe("CONFIG_INVALID");
    expect((err as WeftError).message).toBe(`--kubeconfig-file ${noCurrent} has no current cluster: set current-context to a context whose cluster is defined`);
  });
});

describe("loadKubeConfig: in-cluster", () => {
  const tls = () => ({ cert: readFileSync(testdata("server.crt")), key: readFileSync(testdata("server.key")) });

  it("builds https://HOST:PORT from the given env (not process.env) with the directory's CA and token file", () => {
    const dir = tempDir();
    const sa = serviceAccount(dir, { token: "sa-token", ca: "ca.crt", namespace: "kube-system\n" });
    const kc = loadKubeConfig({ env: { KUBERNETES_SERVICE_HOST: "198.18.0.1", KUBERNETES_SERVICE_PORT: "443" }, serviceAccountDir: sa });
    const cluster = kc.getCurrentCluster();
    expect(cluster?.server).toBe("https://198.18.0.1:443");
    expect(cluster?.caFile).toBe(join(sa, "ca.crt"));
    expect(cluster?.skipTLSVerify).toBe(false);
    expect(kc.getCurrentUser()?.authProvider).toEqual({ name: "tokenFile", config: { tokenFile: join(sa, "token") } });
    expect(kc.getContextObject(kc.getCurrentContext())?.namespace).toBe("kube-system");
    // An IPv6 service address is bracketed; any port stays https (client-go never switches to http).
    const v6 = loadKubeConfig({ env: { KUBERNETES_SERVICE_HOST: "2001:2::1", KUBERNETES_SERVICE_PORT: "8080" }, serviceAccountDir: sa });
    expect(v6.getCurrentCluster()?.server).toBe("https://[2001:2::1]:8080");
  });

  it("talks HTTPS to the service address, trusting only ca.crt, with the token as bearer", async () => {
    const server = await fake();
    const f = await front(server, tls());
    const sa = serviceAccount(tempDir(), { token: "sa-token-1", ca: "ca.crt" });
    const kc = loadKubeConfig({ env: { KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: String(f.port) }, serviceAccountDir: sa });
    expect(kc.getCurrentCluster()?.caFile).toBe(join(sa, "ca.crt"));
    expect(await names(new KubeNodeClient(kc, 5_000))).toEqual(["n1"]);
    expect(f.seen).toEqual(["GET /api/v1/nodes Bearer sa-token-1"]);
  });

  it("refuses a server whose certificate ca.crt did not sign", async () => {
    const server = await fake();
    const f = await front(server, tls());
    const sa = serviceAccount(tempDir(), { token: "sa-token-1", ca: "other-ca.crt" });
    const client = new KubeNodeClient(loadKubeConfig({ env: { KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: String(f.port) }, serviceAccountDir: sa }), 5_000);
    const err = await client.listNodes(signal()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    expect((err as KubeApiError).status).toBe(0);
    expect((err as KubeApiError).message).toMatch(/^list nodes: .*(unable to verify|self[- ]signed|issuer certificate)/);
    expect(f.seen).toEqual([]); // no request got past the handshake
  });

  it("in a pod without a mounted token: one clear error naming the token file and the flags", () => {
    const sa = serviceAccount(tempDir(), { ca: "ca.crt" });
    const env = { KUBERNETES_SERVICE_HOST: "198.18.0.1", KUBERNETES_SERVICE_PORT: "443" };
    expect(() => loadKubeConfig({ env, serviceAccountDir: sa })).toThrow(
      `in a pod (KUBERNETES_SERVICE_HOST=198.18.0.1) but the service-account token ${join(sa, "token")} is unreadable (ENOENT): mount it (automountServiceAccountToken: true on the DaemonSet) or pass --kubeconfig-file`,
    );
  });

  it("defaults to the kubelet's service-account directory", () => {
    expect(DEFAULT_SERVICE_ACCOUNT_DIR).toBe("/var/run/secrets/kubernetes.io/serviceaccount");
    const tokenFile = `${DEFAULT_SERVICE_ACCOUNT_DIR}/token`;
    const env = { KUBERNETES_SERVICE_HOST: "198.18.0.1", KUBERNETES_SERVICE_PORT: "443" };
    if (existsSync(tokenFile)) {
      // Running inside a pod: the default directory is the one used.
      expect(loadKubeConfig({ env }).getCurrentUser()?.authProvider?.config?.tokenFile).toBe(tokenFile);
    } else {
      expect(() => loadKubeConfig({ env })).toThrow(`the service-account token ${tokenFile} is unreadable`);
    }
  });
});

describe("loadKubeConfig: nothing given outside a pod", () => {
  it("is one clear error naming --kubeconfig-file and --kube-api-url", () => {
    for (const env of [{}, { KUBERNETES_SERVICE_HOST: "198.18.0.1" }, { KUBERNETES_SERVICE_PORT: "443" }]) {
      let err: unknown;
      try {
        loadKubeConfig({ env });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(WeftError);
      expect((err as WeftError).code).toBe("CONFIG_INVALID");
      expect((err as WeftError).message).toBe(
        "not running inside a Kubernetes pod (KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are unset): pass --kubeconfig-file or --kube-api-url",
      );
    }
  });

  it("surfaces from KubeSubnetManager.acquireLease at once, not after retries", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "net-conf.json"), JSON.stringify({ Network: "198.19.0.0/16", Backend: { Type: "vxlan" } }));
    const mgr = new KubeSubnetManager({ netConfPath: join(dir, "net-conf.json"), nodeName: "n1", env: {}, retryIntervalMs: 10_000 }, new MemoryLogger());
    const t0 = Date.now();
    await expect(mgr.acquireLease({ backendType: "vxlan", publicIP: IPAddress.parse("198.18.0.7") }, signal())).rejects.toThrow(/pass --kubeconfig-file or --kube-api-url/);
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(mgr.name).toBe("kube node n1 via in-cluster");
  });
});
