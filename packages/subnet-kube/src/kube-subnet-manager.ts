/**
 * KubeSubnetManager: the SubnetManager on the Kubernetes API (DESIGN §5, reference/flannel.md §4.1).
 *
 * - The subnet is the Node's `spec.podCIDRs` (or `spec.podCIDR`); kube-controller-manager allocates it, we
 *   never do. It must lie inside `Network` / `IPv6Network` of the net-conf file.
 * - This node's lease attributes are published as annotations (Flannel's format, configurable prefix) with ONE
 *   strategic-merge patch on `nodes/status`, and only when something differs. RBAC needs: nodes get/list/watch,
 *   nodes/status patch, pods get (node-name discovery).
 * - Peers come from a list+watch of all Nodes (node-reflector.ts). A node is a lease only with the
 *   `kube-subnet-manager: "true"` annotation; updates that do not touch the datapath-relevant fields are
 *   dropped; malformed nodes are skipped with a warning and counted, and never stop the stream.
 * - markReady sets the `NetworkUnavailable=False` condition; completeLease watches this node alone and rejects
 *   with LEASE_LOST if it is deleted.
 *
 * Differences from Flannel, on purpose: a podCIDR of a family the config does not enable is ignored (Flannel
 * fails for an IPv6 podCIDR without IPv6Network); a peer whose podCIDR changes is removed and re-added
 * (Flannel ignores podCIDR changes; the API makes podCIDR immutable once set, so this only matters for
 * recreated nodes seen through a re-list); a peer whose annotations become malformed is removed.
 */
import { readFile } from "node:fs/promises";
import type { V1Node } from "@kubernetes/client-node";
import {
  Backoff,
  type BackendData,
  ConfigError,
  type IPAddress,
  type JsonValue,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type Logger,
  type NetworkConfig,
  type SubnetManager,
  WeftError,
  errorMessage,
  parseNetworkConfig,
  sameSubnets,
  sleep,
} from "@weft/core";
import { DEFAULT_ANNOTATION_PREFIX, type KubeAnnotations, kubeAnnotations } from "./annotations.js";
import { KubeApiError, KubeNodeClient, isKubeApiError, loadKubeConfig } from "./kube-client.js";
import { type Families, annotationPatch, desiredAnnotations, localSubnets, nodePublicIPs, nodeToLease, slimNode } from "./node-lease.js";
import { showAnnotationValue } from "./show.js";
import { type NodeDelta, type ReflectorStats, reflectNodes } from "./node-reflector.js";

export const DEFAULT_NET_CONF_PATH = "/etc/weft/net-conf.json";

export interface KubeSubnetManagerOptions {
  /** The net-conf file (the ConfigMap mount), read by getNetworkConfig. Default /etc/weft/net-conf.json. */
  readonly netConfPath?: string;
  /** `--kubeconfig-file`. Without it and without kubeApiUrl the in-cluster configuration is used. */
  readonly kubeconfigFile?: string;
  /** `--kube-api-url`: overrides the kubeconfig's server, or is used alone (no credentials). */
  readonly kubeApiUrl?: string;
  /** In-cluster mode: the service-account directory (token, ca.crt, namespace). Default /var/run/secrets/kubernetes.io/serviceaccount. */
  readonly serviceAccountDir?: string;
  /** `--kube-annotation-prefix`; default `weft.io`. Flannel's is `flannel.alpha.coreos.com`. */
  readonly annotationPrefix?: string;
  /** This node's name; default env NODE_NAME, else spec.nodeName of the pod POD_NAMESPACE/POD_NAME. */
  readonly nodeName?: string;
  /** Environment to read NODE_NAME, POD_NAME, POD_NAMESPACE, KUBERNETES_SERVICE_* from. Default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Set the node condition NetworkUnavailable=False in completeLease. Default true. */
  readonly setNodeNetworkUnavailable?: boolean;
  /**
   * Backend types allowed to run IPv6, besides those the agent names through setIPv6BackendTypes (the modules
   * that declare `dualStack`). Default none: nothing in this package knows backends. With EnableIPv6 and a type
   * not allowed: dual-stack config runs IPv4 only (with a warning), IPv6-only fails.
   */
  readonly dualStackBackendTypes?: readonly string[];
  /** Added to dualStackBackendTypes (for callers that construct the manager without an agent). */
  readonly additionalDualStackBackendTypes?: readonly string[];
  /** Poll interval while waiting for the node to exist and to get a podCIDR. Default 3000 ms. */
  readonly retryIntervalMs?: number;
  /**
   * Give up waiting for the node to exist / to get a podCIDR after this long. Default 30000 ms. API errors
   * (no answer, 5xx, 429, 409, 401/403) are not bounded by it: they are retried for as long as they last.
   */
  readonly retryTimeoutMs?: number;
  /**
   * The cap of the back-off between retries of a failed API request (the first retry comes after 100 ms, then
   * doubling): the agent goes on within this long of the API server answering again. Default 1000 ms, or
   * retryIntervalMs when that is smaller.
   */
  readonly apiRetryMaxMs?: number;
  /** First back-off of the node watch after a failure (doubles to 30 s). Default 1000 ms. */
  readonly watchRetryDelayMs?: number;
  /** Server-side timeout of one watch request (randomised up to 2x). Default 300 s. */
  readonly watchTimeoutSeconds?: number;
  /** Timeout of one API request. Default 30000 ms. */
  readonly requestTimeoutMs?: number;
}

export interface KubeSubnetManagerStats extends ReflectorStats {
  /** Peer nodes skipped as malformed; each (node, resourceVersion) counts once. */
  malformedPeers: number;
  /** Annotation patches sent on nodes/status (0 when the node was already in sync). */
  annotationPatches: number;
}

const CONDITION_REASON = "WeftIsUp";
/** How often a lasting API failure is logged again while it is retried. */
const RETRY_WARN_EVERY_MS = 30_000;
const CONDITION_MESSAGE = "Weft is running on this node";

function annotationsOf(node: V1Node): Record<string, string> {
  return node.metadata?.annotations ?? {};
}

export class KubeSubnetManager implements SubnetManager {
  readonly annotations: KubeAnnotations;
  /** Counters of the peer watch (watchLeases) and of annotation publishing. */
  readonly stats: KubeSubnetManagerStats = { relists: 0, watchRestarts: 0, watchFailures: 0, bookmarks: 0, resourceVersion: "", malformedPeers: 0, annotationPatches: 0 };
  private readonly env: Readonly<Record<string, string | undefined>>;
  private readonly netConfPath: string;
  private readonly retryIntervalMs: number;
  private readonly retryTimeoutMs: number;
  private readonly apiRetryMaxMs: number;
  private dualStackTypes: ReadonlySet<string>;
  private clientInstance?: KubeNodeClient;
  private resolvedNodeName?: string;
  private config?: NetworkConfig;

  constructor(
    private readonly options: KubeSubnetManagerOptions,
    private readonly logger: Logger,
  ) {
    this.annotations = kubeAnnotations(options.annotationPrefix ?? DEFAULT_ANNOTATION_PREFIX);
    this.env = options.env ?? process.env;
    this.netConfPath = options.netConfPath ?? DEFAULT_NET_CONF_PATH;
    this.retryIntervalMs = options.retryIntervalMs ?? 3000;
    this.retryTimeoutMs = options.retryTimeoutMs ?? 30_000;
    this.apiRetryMaxMs = Math.max(1, options.apiRetryMaxMs ?? Math.min(1000, this.retryIntervalMs));
    this.dualStackTypes = new Set(
      [...(options.dualStackBackendTypes ?? []), ...(options.additionalDualStackBackendTypes ?? [])].map((t) => t.toLowerCase()),
    );
    if (options.nodeName) this.resolvedNodeName = options.nodeName;
    else if (this.env.NODE_NAME) this.resolvedNodeName = this.env.NODE_NAME;
  }

  get name(): string {
    const server = this.clientInstance?.server ?? this.options.kubeApiUrl ?? (this.options.kubeconfigFile ? `kubeconfig ${this.options.kubeconfigFile}` : "in-cluster");
    return `kube node ${this.resolvedNodeName ?? "(not yet known)"} via ${server}`;
  }

  /** The node name, once known (after acquireLease or resolveNodeName). */
  get nodeName(): string | undefined {
    return this.resolvedNodeName;
  }

  private get client(): KubeNodeClient {
    this.clientInstance ??= new KubeNodeClient(
      loadKubeConfig({
        ...(this.options.kubeconfigFile ? { kubeconfigFile: this.options.kubeconfigFile } : {}),
        ...(this.options.kubeApiUrl ? { kubeApiUrl: this.options.kubeApiUrl } : {}),
        ...(this.options.serviceAccountDir ? { serviceAccountDir: this.options.serviceAccountDir } : {}),
        env: this.env,
      }),
      this.options.requestTimeoutMs ?? 30_000,
    );
    return this.clientInstance;
  }

  /**
   * Adds the backend types whose modules declare `dualStack` (BackendModule): the agent calls it before
   * getNetworkConfig, so IPv6 runs for exactly the backends that say they carry it.
   */
  setIPv6BackendTypes(types: readonly string[]): void {
    this.dualStackTypes = new Set([...this.dualStackTypes, ...types.map((t) => t.toLowerCase())]);
  }

  /** True when `type` may run IPv6 in this manager (case-insensitive). */
  supportsIPv6(type: string): boolean {
    return this.dualStackTypes.has(type.toLowerCase());
  }

  // --- configuration ---------------------------------------------------------------------------------------

  async getNetworkConfig(signal: AbortSignal): Promise<NetworkConfig> {
    let waitingLogged = false;
    for (;;) {
      signal.throwIfAborted();
      let text: string;
      try {
        text = await readFile(this.netConfPath, "utf8");
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== "ENOENT") {
          throw new WeftError("CONFIG_INVALID", `cannot read ${this.netConfPath}: ${errorMessage(e)}: check --net-config-path and the ConfigMap mount`, { cause: e });
        }
        (waitingLogged ? this.logger.debug : this.logger.warn).call(
          this.logger,
          `waiting for ${this.netConfPath}: it does not exist yet (is the ConfigMap with net-conf.json mounted there?)`,
        );
        waitingLogged = true;
        await sleep(this.retryIntervalMs, signal);
        continue;
      }
      // Kube mode: SubnetLen/Min/Max are meaningless (kube-controller-manager allocates), so they are not checked.
      const config = parseNetworkConfig(text, { source: this.netConfPath, checkSubnets: false });
      for (const w of config.warnings) this.logger.warn(w);
      if (config.enableIPv6 && !this.supportsIPv6(config.backendType)) {
        const types = [...this.dualStackTypes].join(", ") || "(none loaded)";
        if (!config.enableIPv4) {
          throw new ConfigError(
            this.netConfPath,
            "Backend.Type",
            `Backend.Type "${config.backendType}" does not support IPv6, and EnableIPv4 is false: use one of ${types}, or enable IPv4`,
          );
        }
        this.logger.warn(`${this.netConfPath}: Backend.Type "${config.backendType}" does not support IPv6; running IPv4 only (IPv6 works with ${types})`);
      }
      this.config = config;
      return config;
    }
  }

  private families(config: NetworkConfig, backendType: string): Families {
    return { v4: config.enableIPv4, v6: config.enableIPv6 && this.supportsIPv6(backendType) };
  }

  // --- node discovery --------------------------------------------------------------------------------------

  /** Finds this node's name: option, NODE_NAME, else spec.nodeName of the pod POD_NAMESPACE/POD_NAME. */
  async resolveNodeName(signal: AbortSignal): Promise<string> {
    if (this.resolvedNodeName) return this.resolvedNodeName;
    const podName = this.env.POD_NAME;
    const podNamespace = this.env.POD_NAMESPACE;
    if (!podName || !podNamespace) {
      throw new WeftError(
        "CONFIG_INVALID",
        "cannot tell which node this is: set NODE_NAME (downward API fieldRef spec.nodeName), or both POD_NAME and POD_NAMESPACE (fieldRefs metadata.name and metadata.namespace) so it can be read from the pod",
      );
    }
    const pod = await this.retrying(`reading pod ${podNamespace}/${podName} to find the node name`, signal, () =>
      this.client.getPod(podNamespace, podName, signal),
    );
    const name = pod.spec?.nodeName;
    if (!name) {
      throw new WeftError("CONFIG_INVALID", `pod ${podNamespace}/${podName} (POD_NAMESPACE/POD_NAME) has no spec.nodeName yet: set NODE_NAME from the downward API instead`);
    }
    this.resolvedNodeName = name;
    return name;
  }

  /**
   * Runs `f` until it succeeds. Retryable API errors (no answer, 5xx, 429, 409, 401/403) are retried for as
   * long as they last — the API server being away at startup is no reason to exit, and etcd mode does the
   * same — with a back-off from 100 ms doubling to apiRetryMaxMs (1 s), so the agent goes on within about a
   * second of the server answering. A non-retryable error (400, 404, 422...) is thrown at once. The failure is
   * logged at warn when it starts and then every 30 s, not once per attempt.
   */
  private async retrying<T>(what: string, signal: AbortSignal, f: () => Promise<T>): Promise<T> {
    const backoff = new Backoff({ minMs: Math.min(100, this.apiRetryMaxMs), maxMs: this.apiRetryMaxMs });
    const started = performance.now();
    let lastWarn = 0;
    for (let attempt = 1; ; attempt++) {
      signal.throwIfAborted();
      try {
        const result = await f();
        if (attempt > 1) this.logger.info(`${what} succeeded after ${attempt} attempts (${Math.round((performance.now() - started) / 1000)} s)`);
        return result;
      } catch (e) {
        if (signal.aborted) throw signal.reason;
        if (!(e instanceof KubeApiError)) throw e;
        if (!e.retryable) throw e;
        if (attempt === 1 || performance.now() - lastWarn >= RETRY_WARN_EVERY_MS) {
          lastWarn = performance.now();
          const hint = e.status === 401 || e.status === 403 ? "; check the agent's RBAC (nodes get/list/watch, nodes/status patch, pods get)" : "";
          const since = attempt === 1 ? "" : ` for ${Math.round((performance.now() - started) / 1000)} s (${attempt} attempts)`;
          this.logger.warn(`${what} failed${since}; retrying until the API server answers${hint}`, { error: e.message });
        }
        await sleep(backoff.next(), signal);
      }
    }
  }

  /** GET this node, retrying transient errors; 404 → undefined. */
  private async readOwnNode(signal: AbortSignal): Promise<V1Node | undefined> {
    const name = await this.resolveNodeName(signal);
    try {
      return await this.retrying(`reading node "${name}"`, signal, () => this.client.getNode(name, signal));
    } catch (e) {
      if (isKubeApiError(e, 404)) return undefined;
      throw e;
    }
  }

  // --- stored data (read before the lease) -----------------------------------------------------------------

  /**
   * This node's own published backend data (`backend-data` / `backend-v6-data`), so a restarted agent can
   * keep its identity (vxlan keeps its VTEP MAC). Unparseable or `null` values read as absent.
   */
  async storedBackendData(signal: AbortSignal = new AbortController().signal): Promise<BackendData> {
    const node = await this.readOwnNode(signal);
    if (!node) return {};
    const ann = annotationsOf(node);
    const out: { v4?: JsonValue; v6?: JsonValue } = {};
    for (const [family, key] of [
      ["v4", this.annotations.backendData],
      ["v6", this.annotations.backendV6Data],
    ] as const) {
      const raw = ann[key];
      if (raw === undefined) continue;
      try {
        const v = JSON.parse(raw) as JsonValue;
        if (v !== null) out[family] = v;
      } catch (e) {
        this.logger.warn(`ignoring this node's ${key} annotation: not valid JSON (${errorMessage(e)})`);
      }
    }
    return out;
  }

  /**
   * The user-set `node-public-ip` / `node-public-ipv6` annotations of this node; the daemon treats them like
   * `--public-ip(v6)`. Read once at startup. A malformed value is a CONFIG_INVALID error naming it.
   */
  async storedPublicIPs(signal: AbortSignal = new AbortController().signal): Promise<{ v4?: IPAddress; v6?: IPAddress }> {
    const node = await this.readOwnNode(signal);
    return node ? nodePublicIPs(node, this.annotations) : {};
  }

  // --- the lease -------------------------------------------------------------------------------------------

  async acquireLease(attrs: LeaseAttrs, signal: AbortSignal): Promise<Lease> {
    const config = this.config ?? (await this.getNetworkConfig(signal));
    const name = await this.resolveNodeName(signal);
    const deadline = performance.now() + this.retryTimeoutMs;
    let node: V1Node | undefined;
    // Wait for the node to exist and to have a podCIDR (a node that just joined may not have one yet).
    for (;;) {
      node = await this.readOwnNode(signal);
      if (node && (node.spec?.podCIDRs?.length || node.spec?.podCIDR)) break;
      if (performance.now() + this.retryIntervalMs > deadline) break;
      this.logger.info(node ? `node "${name}" has no podCIDR yet; waiting` : `node "${name}" not found yet; waiting`);
      await sleep(this.retryIntervalMs, signal);
      signal.throwIfAborted();
    }
    if (!node) {
      throw new WeftError(
        "CONFIG_INVALID",
        `node "${name}" does not exist in the Kubernetes API (waited ${Math.round(this.retryTimeoutMs / 1000)} s): check NODE_NAME / the pod's spec.nodeName`,
      );
    }
    const families = this.families(config, attrs.backendType);
    const subnets = localSubnets(node, families, { ...(config.v4 ? { v4: config.v4.network } : {}), ...(config.v6 ? { v6: config.v6.network } : {}) }, this.netConfPath);
    // Before registerSubnet the agent has no backend data yet: keep what a previous agent published (restart).
    const { node: published, advertised } = await this.publish(node, attrs, families, signal, { keepUnknownData: true });
    this.logger.info(`acquired lease from node "${name}"`, {
      subnet: subnets.subnet?.toString(),
      ipv6Subnet: subnets.ipv6Subnet?.toString(),
      publicIP: advertised.publicIP?.toString(),
      publicIPv6: advertised.publicIPv6?.toString(),
    });
    return {
      ...subnets,
      attrs: advertised,
      nodeName: name,
      ...(published.metadata?.resourceVersion ? { revision: published.metadata.resourceVersion } : {}),
    };
  }

  async updateLease(lease: Lease, attrs: LeaseAttrs, signal: AbortSignal): Promise<Lease> {
    const name = await this.resolveNodeName(signal);
    const node = await this.readOwnNode(signal);
    if (!node) throw new WeftError("LEASE_LOST", `node "${name}" no longer exists in the Kubernetes API: its lease is gone`);
    const families: Families = { v4: lease.subnet !== undefined, v6: lease.ipv6Subnet !== undefined };
    const { node: published, advertised } = await this.publish(node, attrs, families, signal);
    return { ...lease, attrs: advertised, ...(published.metadata?.resourceVersion ? { revision: published.metadata.resourceVersion } : {}) };
  }

  /**
   * Publishes `attrs` as annotations with ONE strategic-merge patch on nodes/status, only when some annotation
   * differs. Retries every retryIntervalMs for up to retryTimeoutMs.
   */
  private async publish(
    node: V1Node,
    attrs: LeaseAttrs,
    families: Families,
    signal: AbortSignal,
    options: { readonly keepUnknownData?: boolean } = {},
  ): Promise<{ node: V1Node; advertised: LeaseAttrs }> {
    const name = node.metadata?.name ?? "";
    const current = annotationsOf(node);
    const { annotations: want, advertised } = desiredAnnotations(current, this.annotations, attrs, families, name, options);
    const patch = annotationPatch(current, want);
    if (Object.keys(patch).length === 0) {
      this.logger.debug(`node "${name}" annotations already up to date`);
      return { node, advertised };
    }
    if (advertised.publicIP && !advertised.publicIP.equals(attrs.publicIP)) {
      this.logger.info(`advertising public IP ${advertised.publicIP} from annotation ${this.annotations.publicIPOverwrite}`);
    }
    if (advertised.publicIPv6 && !advertised.publicIPv6.equals(attrs.publicIPv6)) {
      this.logger.info(`advertising public IPv6 ${advertised.publicIPv6} from annotation ${this.annotations.publicIPv6Overwrite}`);
    }
    const patched = await this.retrying(`patching node "${name}" annotations`, signal, () =>
      this.client.patchNodeStatus(name, { metadata: { annotations: patch } }, signal),
    );
    this.stats.annotationPatches++;
    return { node: patched, advertised };
  }

  /** NetworkUnavailable=False on this node (unless --set-node-network-unavailable=false). */
  async markReady(_lease: Lease, signal: AbortSignal): Promise<void> {
    if (!(this.options.setNodeNetworkUnavailable ?? true)) return;
    await this.markNetworkAvailable(await this.resolveNodeName(signal), signal);
  }

  async completeLease(lease: Lease, signal: AbortSignal): Promise<void> {
    const name = await this.resolveNodeName(signal);
    // Hold the lease: watch this node alone; its deletion means the lease is gone.
    const stats: ReflectorStats = { relists: 0, watchRestarts: 0, watchFailures: 0, bookmarks: 0, resourceVersion: "" };
    let mismatchLogged = false;
    const stream = reflectNodes(
      {
        client: this.client,
        logger: this.logger.child({ watch: `node ${name}` }),
        stats,
        fieldSelector: `metadata.name=${name}`,
        retryDelayMs: this.options.watchRetryDelayMs ?? 1000,
        watchTimeoutSeconds: this.options.watchTimeoutSeconds ?? 300,
        // Only the name matters here: whether this node still exists.
        project: (n) => ({ metadata: { ...(n.metadata?.name !== undefined ? { name: n.metadata.name } : {}), ...(n.metadata?.resourceVersion ? { resourceVersion: n.metadata.resourceVersion } : {}) } }),
        // The watch selects this node by name; an event about another node is not news about ours (a broken
        // server, proxy or cache sent it). Believing it once made the agent think its node was deleted and exit.
        accept: (n) => n.metadata?.name === name,
        onRejected: (type, n) => {
          const other = showAnnotationValue(String(n.metadata?.name ?? "(unnamed)"));
          const line = `ignoring a ${type} event for node ${other} on the watch of node "${name}" (fieldSelector metadata.name=${name}): the API server or a proxy sent another node's event; the lease is kept`;
          if (mismatchLogged) this.logger.debug(line);
          else this.logger.warn(line);
          mismatchLogged = true;
        },
      },
      signal,
    );
    const lost = (why: string) =>
      new WeftError("LEASE_LOST", `node "${name}" ${why}: its lease (${[lease.subnet, lease.ipv6Subnet].filter(Boolean).join(", ")}) is gone; the agent must stop`);
    for await (const d of stream) {
      if (d.kind === "relisted" && !d.nodes.some((n) => n.metadata?.name === name)) throw lost("no longer exists in the Kubernetes API");
      if (d.kind === "deleted") throw lost("was deleted from the Kubernetes API");
    }
  }

  /** Sets NetworkUnavailable=False (reason WeftIsUp). Retries until it succeeds or `signal` aborts. */
  private async markNetworkAvailable(name: string, signal: AbortSignal): Promise<void> {
    for (;;) {
      const nowIso = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
      const body = {
        status: {
          conditions: [
            { type: "NetworkUnavailable", status: "False", reason: CONDITION_REASON, message: CONDITION_MESSAGE, lastTransitionTime: nowIso, lastHeartbeatTime: nowIso },
          ],
        },
      };
      try {
        await this.retrying(`setting NetworkUnavailable=False on node "${name}"`, signal, () => this.client.patchNodeStatus(name, body, signal));
        this.logger.info(`node "${name}": condition NetworkUnavailable=False (${CONDITION_REASON})`);
        return;
      } catch (e) {
        if (signal.aborted) return;
        if (isKubeApiError(e, 404)) throw new WeftError("LEASE_LOST", `node "${name}" no longer exists in the Kubernetes API: its lease is gone`, { cause: e });
        // Pods are not scheduled on a node whose network is unavailable: keep trying, loudly.
        this.logger.error(`cannot set NetworkUnavailable=False on node "${name}"; retrying`, { error: errorMessage(e) });
        await sleep(this.retryIntervalMs, signal);
        if (signal.aborted) return;
      }
    }
  }

  // --- peers -----------------------------------------------------------------------------------------------

  async *watchLeases(local: Lease, signal: AbortSignal): AsyncIterable<LeaseEvent> {
    const self = local.nodeName ?? (await this.resolveNodeName(signal));
    const families: Families = { v4: local.subnet !== undefined, v6: local.ipv6Subnet !== undefined };
    const known = new Map<string, { lease: Lease; signature: string }>();
    const malformedSeen = new Map<string, string>();
    const inner = new AbortController();
    const stopInner = () => inner.abort();
    signal.addEventListener("abort", stopInner, { once: true });
    let snapshotSent = false;

    /** The events that bring `known` in line with `node`; `node` undefined means it is gone. */
    const apply = (name: string, node: V1Node | undefined): LeaseEvent[] => {
      if (name === self) return [];
      const prev = known.get(name);
      const gone = (): LeaseEvent[] => {
        if (!prev) return [];
        known.delete(name);
        return [{ type: "removed", lease: prev.lease }];
      };
      if (!node) return gone();
      const parsed = nodeToLease(node, this.annotations, families);
      if (parsed.kind === "not-a-lease") return gone();
      if (parsed.kind === "malformed") {
        const rv = node.metadata?.resourceVersion ?? "";
        if (malformedSeen.get(name) !== rv) {
          malformedSeen.set(name, rv);
          this.stats.malformedPeers++;
          this.logger.warn(`skipping peer node "${name}": ${parsed.problem}${prev ? " (removing its previous lease)" : ""}`, { node: name, resourceVersion: rv });
        }
        return gone();
      }
      malformedSeen.delete(name);
      const { lease, signature } = parsed;
      if (sameSubnets(lease, local)) {
        this.logger.warn(`peer node "${name}" claims this node's subnet; ignoring it`, { node: name });
        return gone();
      }
      if (prev?.signature === signature) return []; // nothing the datapath cares about changed
      known.set(name, { lease, signature });
      if (prev && !sameSubnets(prev.lease, lease)) return [{ type: "removed", lease: prev.lease }, { type: "added", lease }];
      return [{ type: "added", lease }];
    };

    const a = this.annotations;
    const stream = reflectNodes(
      {
        client: this.client,
        logger: this.logger.child({ watch: "nodes" }),
        stats: this.stats,
        // Keep only what nodeToLease reads (name, resourceVersion, podCIDRs, the lease annotations), not whole Nodes.
        project: (n) => slimNode(n, a),
        retryDelayMs: this.options.watchRetryDelayMs ?? 1000,
        watchTimeoutSeconds: this.options.watchTimeoutSeconds ?? 300,
      },
      inner.signal,
    );
    try {
      for await (const d of stream as AsyncIterable<NodeDelta>) {
        let events: LeaseEvent[] = [];
        if (d.kind === "relisted") {
          const present = new Set<string>();
          for (const n of d.nodes) {
            const name = n.metadata?.name ?? "";
            present.add(name);
            events.push(...apply(name, n));
          }
          for (const name of [...known.keys()]) if (!present.has(name)) events.push(...apply(name, undefined));
          for (const name of [...malformedSeen.keys()]) if (!present.has(name)) malformedSeen.delete(name);
          if (!snapshotSent) {
            snapshotSent = true;
            events = [{ type: "snapshot", leases: [...known.values()].map((k) => k.lease) }];
          }
        } else if (d.kind === "upsert") {
          events = apply(d.node.metadata?.name ?? "", d.node);
        } else {
          const name = d.node.metadata?.name ?? "";
          malformedSeen.delete(name);
          events = apply(name, undefined);
        }
        for (const e of events) {
          yield e;
          if (signal.aborted) return;
        }
      }
    } finally {
      signal.removeEventListener("abort", stopInner);
      inner.abort();
    }
  }
}
