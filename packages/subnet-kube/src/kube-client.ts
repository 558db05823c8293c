/**
 * KubeNodeClient: the handful of Kubernetes API calls the subnet manager makes, on @kubernetes/client-node
 * 1.4.0 (2.x crashes on Node 20), with two things the generated client does not give directly:
 *
 * - cancellation: every request carries an AbortSignal (the caller's, plus a per-request timeout), set through
 *   a request middleware because the generated methods have no signal parameter;
 * - readable errors: ApiException's message embeds headers and the raw body; KubeApiError carries the HTTP
 *   code, the Status reason and the Status message only.
 *
 * Patches on `nodes/status` need an explicit Content-Type: the generated client otherwise sends
 * `application/json-patch+json` (the first type in its list), which a strategic-merge body is not.
 */
import {
  ApiException,
  CoreV1Api,
  KubeConfig,
  Observable,
  type ConfigurationOptions,
  type ObservableMiddleware,
  type RequestContext,
  type ResponseContext,
  type V1Node,
  type V1NodeList,
  type V1Pod,
  Watch,
} from "@kubernetes/client-node";
import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { isIPv6 } from "node:net";
import { join } from "node:path";
import { WeftError, errorMessage } from "@weft/core";

/** Where the kubelet mounts a pod's service-account token, CA and namespace. */
export const DEFAULT_SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export interface KubeConnectionOptions {
  /** Path of a kubeconfig file (`--kubeconfig-file`). */
  readonly kubeconfigFile?: string;
  /** API server URL (`--kube-api-url`); overrides the kubeconfig's server, or is used alone without one. */
  readonly kubeApiUrl?: string;
  /** Environment for the in-cluster check (KUBERNETES_SERVICE_HOST/PORT). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** In-cluster mode: the directory with `token`, `ca.crt` and `namespace`. Default DEFAULT_SERVICE_ACCOUNT_DIR. */
  readonly serviceAccountDir?: string;
}

/** A failed API call: `status` is the HTTP code, 0 when no HTTP answer arrived (refused, reset, timeout). */
export class KubeApiError extends Error {
  override readonly name = "KubeApiError";
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** Worth retrying: no answer, conflicts, throttling, server errors, and authz (RBAC may be applied late). */
  get retryable(): boolean {
    return this.status === 0 || this.status === 401 || this.status === 403 || this.status === 409 || this.status === 429 || this.status >= 500;
  }
}

export function isKubeApiError(e: unknown, status?: number): e is KubeApiError {
  return e instanceof KubeApiError && (status === undefined || e.status === status);
}

/**
 * Builds the KubeConfig, as Flannel's clientcmd.BuildConfigFromFlags does: a kubeconfig file (with its
 * server replaced by --kube-api-url when both are given), else --kube-api-url alone (no credentials), else
 * the in-cluster configuration.
 */
export function loadKubeConfig(o: KubeConnectionOptions): KubeConfig {
  const kc = new KubeConfig();
  const skipTLS = (url: string) => url.startsWith("http:"); // client-node 1.x refuses http: URLs otherwise
  if (o.kubeconfigFile) {
    try {
      kc.loadFromFile(o.kubeconfigFile);
    } catch (e) {
      throw new WeftError("CONFIG_INVALID", `cannot load --kubeconfig-file ${o.kubeconfigFile}: ${errorMessage(e)}; point it at a readable kubeconfig`, { cause: e });
    }
    const current = kc.getCurrentCluster();
    if (!current) {
      throw new WeftError("CONFIG_INVALID", `--kubeconfig-file ${o.kubeconfigFile} has no current cluster: set current-context to a context whose cluster is defined`);
    }
    if (o.kubeApiUrl) {
      kc.loadFromOptions({
        clusters: kc.clusters.map((c) => (c.name === current.name ? { ...c, server: o.kubeApiUrl!, skipTLSVerify: c.skipTLSVerify || skipTLS(o.kubeApiUrl!) } : c)),
        users: kc.users,
        contexts: kc.contexts,
        currentContext: kc.currentContext,
      });
    }
  } else if (o.kubeApiUrl) {
    kc.loadFromOptions({
      clusters: [{ name: "weft", server: o.kubeApiUrl, skipTLSVerify: skipTLS(o.kubeApiUrl) }],
      users: [{ name: "weft" }],
      contexts: [{ name: "weft", cluster: "weft", user: "weft" }],
      currentContext: "weft",
    });
  } else {
    loadInCluster(kc, o.env, o.serviceAccountDir ?? DEFAULT_SERVICE_ACCOUNT_DIR);
  }
  return kc;
}

/**
 * The in-cluster configuration, built here rather than with KubeConfig.loadFromCluster(), which reads
 * process.env (not the injected env), always uses the kubelet's fixed directory, switches to plain http for
 * ports 80/8080/8001 (client-go never does), and fails only at the first request when the token is missing.
 * Like client-go's rest.InClusterConfig: https to KUBERNETES_SERVICE_HOST:PORT, the token file re-read by the
 * client (client-node's tokenFile provider, every 60 s, so rotated projected tokens are picked up), ca.crt
 * as the only root when present (client-go logs and carries on with the system roots when it is not).
 */
function loadInCluster(kc: KubeConfig, env: Readonly<Record<string, string | undefined>>, dir: string): void {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) {
    throw new WeftError(
      "CONFIG_INVALID",
      "not running inside a Kubernetes pod (KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are unset): pass --kubeconfig-file or --kube-api-url",
    );
  }
  const tokenFile = join(dir, "token");
  try {
    accessSync(tokenFile, constants.R_OK);
  } catch (e) {
    throw new WeftError(
      "CONFIG_INVALID",
      `in a pod (KUBERNETES_SERVICE_HOST=${host}) but the service-account token ${tokenFile} is unreadable (${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}): mount it (automountServiceAccountToken: true on the DaemonSet) or pass --kubeconfig-file`,
      { cause: e },
    );
  }
  const caFile = join(dir, "ca.crt");
  const namespaceFile = join(dir, "namespace");
  let namespace: string | undefined;
  try {
    namespace = readFileSync(namespaceFile, "utf8").trim() || undefined;
  } catch {
    // Optional: only used as the context's default namespace.
  }
  kc.loadFromOptions({
    clusters: [{ name: "in-cluster", server: `https://${isIPv6(host) ? `[${host}]` : host}:${port}`, skipTLSVerify: false, ...(existsSync(caFile) ? { caFile } : {}) }],
    users: [{ name: "in-cluster", authProvider: { name: "tokenFile", config: { tokenFile } } }],
    contexts: [{ name: "in-cluster", cluster: "in-cluster", user: "in-cluster", ...(namespace ? { namespace } : {}) }],
    currentContext: "in-cluster",
  });
}

function middleware(signal: AbortSignal, contentType?: string): ConfigurationOptions {
  const mw: ObservableMiddleware = {
    pre(ctx: RequestContext) {
      ctx.setSignal(signal);
      if (contentType) ctx.setHeaderParam("Content-Type", contentType);
      return new Observable(Promise.resolve(ctx));
    },
    post(rsp: ResponseContext) {
      return new Observable(Promise.resolve(rsp));
    },
  };
  return { middleware: [mw], middlewareMergeStrategy: "append" };
}

/** Extracts code, reason and message from whatever the client threw. */
export function toKubeApiError(e: unknown, what: string): KubeApiError {
  if (e instanceof KubeApiError) return e;
  if (e instanceof ApiException) {
    let reason = "";
    let message = "";
    try {
      const status = (typeof e.body === "string" ? JSON.parse(e.body) : e.body) as { reason?: string; message?: string } | undefined;
      reason = status?.reason ?? "";
      message = status?.message ?? "";
    } catch {
      message = String(e.body).slice(0, 200);
    }
    return new KubeApiError(e.code, reason, `${what}: HTTP ${e.code}${reason ? ` ${reason}` : ""}${message ? `: ${message}` : ""}`, { cause: e });
  }
  const err = e as { message?: string; code?: string; statusCode?: number; name?: string };
  if (typeof err?.statusCode === "number") return new KubeApiError(err.statusCode, "", `${what}: HTTP ${err.statusCode} ${err.message ?? ""}`.trim(), { cause: e });
  return new KubeApiError(0, err?.name === "AbortError" ? "Timeout" : "", `${what}: ${err?.message ?? String(e)}`, { cause: e });
}

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";

export interface NodeWatchOptions {
  readonly resourceVersion: string;
  readonly fieldSelector?: string;
  readonly timeoutSeconds: number;
  readonly signal: AbortSignal;
  readonly onEvent: (type: WatchEventType, object: V1Node & { code?: number; message?: string; reason?: string }) => void;
  /** Called once when the stream ends: null on a clean close by the server, else the error. */
  readonly onDone: (err: KubeApiError | null) => void;
}

export class KubeNodeClient {
  private readonly api: CoreV1Api;
  private readonly watcher: Watch;
  readonly server: string;

  constructor(
    private readonly kc: KubeConfig,
    private readonly requestTimeoutMs: number,
  ) {
    this.api = kc.makeApiClient(CoreV1Api);
    this.watcher = new Watch(kc);
    this.server = kc.getCurrentCluster()?.server ?? "(unknown)";
  }

  private signal(signal: AbortSignal): AbortSignal {
    return AbortSignal.any([signal, AbortSignal.timeout(this.requestTimeoutMs)]);
  }

  private async call<T>(what: string, signal: AbortSignal, f: (s: AbortSignal) => Promise<T>): Promise<T> {
    try {
      return await f(this.signal(signal));
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      throw toKubeApiError(e, what);
    }
  }

  getNode(name: string, signal: AbortSignal): Promise<V1Node> {
    return this.call(`get node "${name}"`, signal, (s) => this.api.readNode({ name }, middleware(s)));
  }

  listNodes(signal: AbortSignal, fieldSelector?: string): Promise<V1NodeList> {
    return this.call("list nodes", signal, (s) => this.api.listNode({ ...(fieldSelector ? { fieldSelector } : {}) }, middleware(s)));
  }

  getPod(namespace: string, name: string, signal: AbortSignal): Promise<V1Pod> {
    return this.call(`get pod "${namespace}/${name}"`, signal, (s) => this.api.readNamespacedPod({ name, namespace }, middleware(s)));
  }

  /** One strategic-merge patch on the `nodes/status` subresource (RBAC: patch on nodes/status). */
  patchNodeStatus(name: string, body: object, signal: AbortSignal): Promise<V1Node> {
    return this.call(`patch node "${name}" status`, signal, (s) =>
      this.api.patchNodeStatus({ name, body }, middleware(s, "application/strategic-merge-patch+json")),
    );
  }

  /**
   * Starts a watch on Nodes from `resourceVersion` with bookmarks. Resolves once the stream is open (or has
   * failed: then onDone has been called). Aborting `signal` ends the stream; onDone is then not reported as an
   * error by the caller, which checks its own signal.
   */
  async watchNodes(o: NodeWatchOptions): Promise<void> {
    let done = false;
    const finish = (err: KubeApiError | null) => {
      if (done) return;
      done = true;
      o.onDone(err);
    };
    const query: Record<string, string | number | boolean> = {
      resourceVersion: o.resourceVersion,
      allowWatchBookmarks: true,
      timeoutSeconds: o.timeoutSeconds,
    };
    if (o.fieldSelector) query.fieldSelector = o.fieldSelector;
    // The Watch class opens the stream before handing out its AbortController; if our signal fires while the
    // request is still pending we abort as soon as the controller exists.
    const opened = this.watcher.watch(
      "/api/v1/nodes",
      query,
      (type, obj) => {
        if (!done) o.onEvent(type as WatchEventType, obj as V1Node);
      },
      (err: unknown) => finish(err ? toKubeApiError(err, "watch nodes") : null),
    );
    const timer = setTimeout(() => finish(new KubeApiError(0, "Timeout", `watch nodes: no response within ${this.requestTimeoutMs} ms`)), this.requestTimeoutMs);
    try {
      const controller = await opened;
      if (o.signal.aborted || done) controller.abort();
      else o.signal.addEventListener("abort", () => controller.abort(), { once: true });
    } catch (e) {
      finish(toKubeApiError(e, "watch nodes"));
    } finally {
      clearTimeout(timer);
    }
  }
}
