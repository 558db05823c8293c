/**
 * docs/deploy/weft.yaml against the real parts it configures: weftd's flag parser (the built binary),
 * @weft/core's net-conf parser, the vxlan module's config schema, weft-cni's install parser and default
 * conflist, and the API calls KubeSubnetManager really makes against the fake API server (its audit log is the
 * source of the RBAC rules, not a list written next to them).
 */
import "reflect-metadata";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, posix } from "node:path";
import { fileURLToPath } from "node:url";
import type { V1ClusterRole, V1ClusterRoleBinding, V1ConfigMap, V1Container, V1DaemonSet, V1PodSpec } from "@kubernetes/client-node";
import vxlanModule from "@weft/backend-vxlan";
import { DEFAULT_SUBNET_FILE, checkConflist, defaultConflist, parseInstallArgs } from "@weft/cni";
import { IPAddress, type LeaseEvent, MemoryLogger, parseNetworkConfig } from "@weft/core";
import { ExecaRunner } from "@weft/kernel";
import { type JsonObject, startFakeApiServer } from "@weft/kube-testing";
import { KubeSubnetManager } from "@weft/subnet-kube";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { effectiveFlags, parseHelp } from "./flags.js";
import { type KubeObject, findObject, loadManifest, mountFor, unknownFields, volumeProblems } from "./manifest.js";
import { grantedPairs, requiredPair } from "./rbac.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const MANIFEST = join(ROOT, "docs", "deploy", "weft.yaml");
const NAMESPACE = "kube-weft";
const text = readFileSync(MANIFEST, "utf8");
const docs = loadManifest(text);
const ds = findObject<V1DaemonSet>(docs, "DaemonSet", "weft");
const pod = ds.spec!.template.spec! as V1PodSpec;
const cm = findObject<V1ConfigMap>(docs, "ConfigMap", "weft-cfg");
const container = (name: string): V1Container => {
  const c = [...(pod.initContainers ?? []), ...pod.containers].find((x) => x.name === name);
  if (!c) throw new Error(`the DaemonSet has no container ${name}`);
  return c;
};
const weftd = container("weftd");
const installCni = container("install-cni");

describe("documents", () => {
  it("every document has apiVersion, kind and metadata.name, and namespaced objects live in kube-weft", () => {
    expect(docs.map((d) => `${d.apiVersion} ${d.kind} ${d.metadata?.name}`)).toEqual([
      "v1 Namespace kube-weft",
      "v1 ServiceAccount weft",
      "rbac.authorization.k8s.io/v1 ClusterRole weft",
      "rbac.authorization.k8s.io/v1 ClusterRoleBinding weft",
      "v1 ConfigMap weft-cfg",
      "apps/v1 DaemonSet weft",
    ]);
    for (const d of docs) {
      expect(d.apiVersion, JSON.stringify(d.metadata)).toMatch(/\S/);
      expect(d.kind).toMatch(/\S/);
      expect(d.metadata?.name).toMatch(/\S/);
      const clusterScoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"].includes(d.kind!);
      expect(d.metadata?.namespace, `${d.kind}/${d.metadata?.name}`).toBe(clusterScoped ? undefined : NAMESPACE);
    }
  });

  it("has no field the Kubernetes model does not know (a typo would be dropped silently)", () => {
    expect(unknownFields(text)).toEqual([]);
    // The check itself: a misspelt field is reported with its path.
    const typo = text.replace("readinessProbe:", "readinesProbe:");
    expect(unknownFields(typo)).toEqual(["DaemonSet/weft: .spec.template.spec.containers[0].readinesProbe"]);
  });

  it("labels the namespace for the privileged Pod Security level", () => {
    const ns = findObject(docs, "Namespace", NAMESPACE);
    expect(ns.metadata?.labels?.["pod-security.kubernetes.io/enforce"]).toBe("privileged");
  });

  it("binds the ClusterRole to the ServiceAccount the DaemonSet runs as", () => {
    const binding = findObject<V1ClusterRoleBinding>(docs, "ClusterRoleBinding", "weft");
    expect(binding.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "weft" });
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: "weft", namespace: NAMESPACE }]);
    findObject(docs, "ServiceAccount", "weft");
    expect(pod.serviceAccountName).toBe("weft");
  });
});

describe("weftd's arguments", () => {
  let help: ReturnType<typeof parseHelp>;
  const runner = new ExecaRunner();
  let weftdBin: string;
  const runWeftd = (args: readonly string[]) => runner.run(process.execPath, [weftdBin, ...args], { reject: false, timeoutMs: 20_000, env: { PATH: process.env.PATH ?? "" } });

  beforeAll(async () => {
    // The built binary, through the bin link npm made for @weft/daemon (its package exports no API).
    weftdBin = join(ROOT, "node_modules", ".bin", "weftd");
    if (!existsSync(weftdBin)) throw new Error(`${weftdBin} is missing: run npm install and npm run build at the repository root`);
    const built = realpathSync(weftdBin);
    const flagsJs = join(dirname(built), "flags.js");
    const flagsTs = join(dirname(built), "..", "src", "flags.ts");
    if (existsSync(flagsTs) && statSync(flagsJs).mtimeMs < statSync(flagsTs).mtimeMs) {
      throw new Error(`${flagsJs} is older than ${flagsTs}: run npm run build so the flags are checked against current weftd`);
    }
    const r = await runWeftd(["--help"]);
    expect(r.exitCode, r.stderr).toBe(0);
    help = parseHelp(r.stdout);
    expect(help.size).toBeGreaterThan(20);
  });

  it("are accepted by weftd's own parser (weftd <args> --help exits 0 only when every argument parses)", async () => {
    expect(weftd.command).toEqual(["weftd"]);
    const r = await runWeftd([...(weftd.args ?? []), "--help"]);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    // The same probe rejects what it should, so a pass above means something.
    const bad = await runWeftd([...(weftd.args ?? []), "--healthz-prot=8081", "--help"]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain("unknown flag --healthz-prot: did you mean --healthz-port?");
  });

  it("run the kube subnet manager with masquerading and a loopback health port", () => {
    const f = effectiveFlags(weftd.args ?? [], help);
    expect(f.get("kube-subnet-mgr")).toBe("true");
    expect(f.get("ip-masq")).toBe("true");
    expect(f.get("healthz-ip")).toBe("127.0.0.1");
    expect(f.get("healthz-port")).toBe("8081");
    // Flags whose defaults the manifest's mounts depend on are spelt out, and equal the defaults.
    for (const name of ["net-config-path", "subnet-file", "state-dir"]) expect(f.get(name), name).toBe(help.get(name)!.default);
  });

  it("name files that the pod's volumes provide", () => {
    const f = effectiveFlags(weftd.args ?? [], help);
    const netConf = mountFor(pod, "weftd", f.get("net-config-path")!);
    expect(netConf?.volume.configMap?.name).toBe("weft-cfg");
    expect(Object.keys(cm.data ?? {})).toContain(netConf!.subPath);
    // subnet.env must land on the host, where the CNI plugin (run by the runtime, on the host) reads it from
    // its default path.
    const subnet = mountFor(pod, "weftd", f.get("subnet-file")!);
    expect(subnet?.volume.hostPath?.path && posix.join(subnet.volume.hostPath.path, subnet.subPath)).toBe(DEFAULT_SUBNET_FILE);
    expect(defaultConflist().plugins).toEqual(JSON.parse(cm.data!["cni-conf.json"]!).plugins);
    // VTEP MAC and keys survive pod restarts only on a hostPath.
    expect(mountFor(pod, "weftd", f.get("state-dir")!)?.volume.hostPath?.path).toBe("/var/lib/weft");
  });

  it("probes reach /healthz and /readyz on the health port and address", () => {
    const f = effectiveFlags(weftd.args ?? [], help);
    const port = Number(f.get("healthz-port"));
    expect(port).toBeGreaterThan(0);
    for (const [probe, path] of [
      [weftd.livenessProbe, "/healthz"],
      [weftd.readinessProbe, "/readyz"],
    ] as const) {
      expect(probe?.httpGet?.path).toBe(path);
      expect(probe?.httpGet?.port).toBe(port);
      expect(probe?.httpGet?.scheme ?? "HTTP").toBe("HTTP");
      // A listener on 127.0.0.1 is reachable by kubelet only in the node's own network namespace.
      if (f.get("healthz-ip") !== "0.0.0.0") {
        expect(probe?.httpGet?.host).toBe(f.get("healthz-ip"));
        expect(pod.hostNetwork).toBe(true);
      }
    }
  });
});

describe("ConfigMap weft-cfg", () => {
  it("net-conf.json passes @weft/core's parser (kube mode) and its Backend the vxlan module's schema", () => {
    const config = parseNetworkConfig(cm.data!["net-conf.json"]!, { source: "weft-cfg/net-conf.json", checkSubnets: false });
    expect(config.backendType).toBe("vxlan");
    expect(config.v4?.network.toString()).toBe("10.244.0.0/16");
    expect(config.enableIPv6).toBe(false);
    expect(config.warnings).toEqual([]);
    expect(vxlanModule.type).toBe(config.backendType);
    const backend = (JSON.parse(cm.data!["net-conf.json"]!) as { Backend: unknown }).Backend;
    expect(() => vxlanModule.configSchema.parse(backend, "Backend")).not.toThrow();
    expect(() => vxlanModule.configSchema.parse({ Type: "vxlan", VNI: "one" }, "Backend")).toThrow(/VNI/);
  });

  it("cni-conf.json is a conflist weft-cni accepts: its default network (weft, then portmap)", () => {
    const conf = cm.data!["cni-conf.json"]!;
    expect(() => checkConflist(conf, "weft-cfg/cni-conf.json")).not.toThrow();
    expect(JSON.parse(conf)).toEqual(defaultConflist());
  });
});

describe("init containers", () => {
  it("install-cni's arguments pass weft-cni's parser and write into the host's CNI directories", () => {
    expect(installCni.command).toEqual(["weft-cni"]);
    const [mode, ...rest] = installCni.args ?? [];
    expect(mode).toBe("install");
    const opts = parseInstallArgs(rest);
    expect(mountFor(pod, "install-cni", opts.binDir)?.volume.hostPath?.path).toBe("/opt/cni/bin");
    expect(mountFor(pod, "install-cni", opts.confDir)?.volume.hostPath?.path).toBe("/etc/cni/net.d");
    const conflist = mountFor(pod, "install-cni", opts.conflist!);
    expect(conflist?.volume.configMap?.name).toBe("weft-cfg");
    expect(conflist?.subPath).toBe("cni-conf.json");
  });

  it("the --node interpreter given to the plugin is the host path the node binary is installed at, before install-cni", () => {
    const opts = parseInstallArgs((installCni.args ?? []).slice(1));
    const names = (pod.initContainers ?? []).map((c) => c.name);
    expect(names.indexOf("install-node")).toBeLessThan(names.indexOf("install-cni"));
    const mv = container("install-node");
    expect(mv.command).toEqual(["mv"]);
    const target = mv.args!.at(-1)!;
    const m = mountFor(pod, "install-node", target);
    expect(m?.volume.hostPath && posix.join(m.volume.hostPath.path, m.subPath)).toBe(opts.node);
    const cp = container("copy-node");
    expect(names.indexOf("copy-node")).toBeLessThan(names.indexOf("install-node"));
    expect(cp.args!.at(-1)).toBe(mv.args!.at(-2));
  });
});

describe("install-cni, run for real", () => {
  it("the built weft-cni, given the manifest's arguments (host paths mapped to a temporary root), installs the ConfigMap's conflist and a plugin whose #! is --node", async () => {
    const bin = join(ROOT, "node_modules", ".bin", "weft-cni");
    if (!existsSync(bin)) throw new Error(`${bin} is missing: run npm install and npm run build at the repository root`);
    const root = mkdtempSync(join(tmpdir(), "weft-deploy-cni-"));
    try {
      // Each path the container sees is replaced by where its volume would be: a hostPath under `root`, or the
      // ConfigMap key written to a file.
      const mapped = (installCni.args ?? []).map((a) => {
        if (!a.startsWith("/") || a === parseInstallArgs((installCni.args ?? []).slice(1)).node) return a;
        const m = mountFor(pod, "install-cni", a);
        if (!m) throw new Error(`install-cni argument ${a} is on no volume`);
        if (m.volume.hostPath) return join(root, m.volume.hostPath.path, m.subPath);
        const data = findObject<V1ConfigMap>(docs, "ConfigMap", m.volume.configMap!.name!).data![m.subPath]!;
        const file = join(root, "configmap", m.subPath);
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, data);
        return file;
      });
      const r = await new ExecaRunner().run(process.execPath, [bin, ...mapped], { reject: false, timeoutMs: 20_000 });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stderr).toContain("installed weft as");
      // `weft` is the C shim (it forwards to weftd); `weft-cni`, the Node plugin, is its fallback and carries the #!.
      const plugin = readFileSync(join(root, "opt/cni/bin/weft-cni"), "utf8");
      expect(plugin.slice(0, plugin.indexOf("\n"))).toBe(`#!${parseInstallArgs((installCni.args ?? []).slice(1)).node}`);
      expect(statSync(join(root, "opt/cni/bin/weft-cni")).mode & 0o111).not.toBe(0);
      expect(readFileSync(join(root, "opt/cni/bin/weft")).subarray(0, 4).toString("latin1")).toBe("\x7fELF");
      expect(statSync(join(root, "opt/cni/bin/weft")).mode & 0o111).not.toBe(0);
      expect(JSON.parse(readFileSync(join(root, "etc/cni/net.d/10-weft.conflist"), "utf8"))).toEqual(JSON.parse(cm.data!["cni-conf.json"]!));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("DaemonSet", () => {
  it("every volume mount names a declared volume, and every volume is mounted", () => {
    expect(volumeProblems(pod)).toEqual([]);
    const broken: V1PodSpec = { ...pod, containers: [{ ...weftd, volumeMounts: [...(weftd.volumeMounts ?? []), { name: "nope", mountPath: "/x" }] }] };
    expect(volumeProblems(broken)).toContain("container weftd mounts nope at /x, but no volume has that name");
  });

  it("runs on the host network, node-critical, on tainted nodes, with NET_ADMIN and NET_RAW but not privileged", () => {
    expect(pod.hostNetwork).toBe(true);
    expect(pod.priorityClassName).toBe("system-node-critical");
    expect(pod.tolerations).toEqual(expect.arrayContaining([{ operator: "Exists", effect: "NoSchedule" }, { operator: "Exists", effect: "NoExecute" }]));
    expect(weftd.securityContext?.privileged).toBe(false);
    expect([...(weftd.securityContext?.capabilities?.add ?? [])].sort()).toEqual(["NET_ADMIN", "NET_RAW"]);
    const mounts = new Map((weftd.volumeMounts ?? []).map((m) => [m.mountPath, m]));
    for (const p of ["/run/weft", "/var/lib/weft", "/etc/weft", "/run/xtables.lock", "/lib/modules"]) expect(mounts.has(p), p).toBe(true);
    expect(mounts.get("/lib/modules")?.readOnly).toBe(true);
    expect(mounts.get("/etc/weft")?.readOnly).toBe(true);
    expect(mountFor(pod, "weftd", "/run/xtables.lock")?.volume.hostPath).toEqual({ path: "/run/xtables.lock", type: "FileOrCreate" });
    expect(weftd.resources?.requests?.cpu).toBeDefined();
    expect(weftd.resources?.requests?.memory).toBeDefined();
    // Only the one-shot sysctl writer is privileged.
    const privileged = [...(pod.initContainers ?? []), ...pod.containers].filter((c) => c.securityContext?.privileged).map((c) => c.name);
    expect(privileged).toEqual(["enable-ip-forward"]);
  });

  it("gives weftd the node and pod names the kube subnet manager reads", () => {
    const env = Object.fromEntries((weftd.env ?? []).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]));
    expect(env).toEqual({ NODE_NAME: "spec.nodeName", POD_NAME: "metadata.name", POD_NAMESPACE: "metadata.namespace" });
  });

  it("uses the one placeholder image everywhere", () => {
    const images = new Set([...(pod.initContainers ?? []), ...pod.containers].map((c) => c.image));
    expect([...images]).toEqual(["ghcr.io/weft-net/weft:0.1.0"]);
    expect(ds.spec!.selector.matchLabels).toEqual(ds.spec!.template.metadata!.labels);
  });
});

describe("ClusterRole weft", () => {
  const cleanups: (() => unknown)[] = [];
  afterAll(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it("grants exactly the (resource, verb) pairs KubeSubnetManager uses through acquire, watch, completeLease and markReady", async () => {
    const server = await startFakeApiServer();
    cleanups.push(() => server.close());
    const dir = mkdtempSync(join(tmpdir(), "weft-deploy-check-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const netConfPath = join(dir, "net-conf.json");
    writeFileSync(netConfPath, cm.data!["net-conf.json"]!);

    server.addNode({ metadata: { name: "node-1" }, spec: { podCIDR: "10.244.1.0/24", podCIDRs: ["10.244.1.0/24"] } } as JsonObject);
    server.addNode({
      metadata: {
        name: "node-2",
        annotations: {
          "weft.io/kube-subnet-manager": "true",
          "weft.io/backend-type": "vxlan",
          "weft.io/backend-data": JSON.stringify({ VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:02" }),
          "weft.io/public-ip": "198.18.0.2",
        },
      },
      spec: { podCIDR: "10.244.2.0/24", podCIDRs: ["10.244.2.0/24"] },
    } as JsonObject);
    server.addPod({ metadata: { name: "weft-x7k2p", namespace: NAMESPACE }, spec: { nodeName: "node-1" } } as JsonObject);

    // As the DaemonSet runs it, but with NODE_NAME left out so the pods fallback is exercised too.
    const mgr = new KubeSubnetManager(
      {
        kubeconfigFile: server.kubeconfigPath,
        netConfPath,
        env: { POD_NAME: "weft-x7k2p", POD_NAMESPACE: NAMESPACE },
        retryIntervalMs: 20,
        retryTimeoutMs: 2000,
        watchRetryDelayMs: 20,
      },
      new MemoryLogger(),
    );
    const stop = new AbortController();
    cleanups.push(() => stop.abort());
    const signal = stop.signal;

    // What weftd does at start: stored data, config, lease, peers, complete.
    await mgr.storedBackendData(signal);
    await mgr.storedPublicIPs(signal);
    await mgr.getNetworkConfig(signal);
    const attrs = { backendType: "vxlan", publicIP: IPAddress.parse("198.18.0.1"), backendData: { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:01" } };
    const lease = await mgr.acquireLease(attrs, signal);
    expect(lease.nodeName).toBe("node-1");
    expect(lease.subnet?.toString()).toBe("10.244.1.0/24");

    const watchStop = new AbortController();
    const events: LeaseEvent[] = [];
    const watching = (async () => {
      for await (const e of mgr.watchLeases(lease, AbortSignal.any([signal, watchStop.signal]))) {
        events.push(e);
        if (e.type === "snapshot") server.deleteNode("node-2"); // a peer leaving: the watch must see it
      }
    })();
    const completeStop = new AbortController();
    const completing = mgr.completeLease(lease, AbortSignal.any([signal, completeStop.signal])).catch((e: unknown) => e);
    await mgr.markReady(lease, signal);

    const waitFor = async (what: string, pred: () => boolean) => {
      const t0 = Date.now();
      while (!pred()) {
        if (Date.now() - t0 > 5000) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await waitFor("the peer snapshot and node-2's removal", () => events.some((e) => e.type === "removed" && e.lease.nodeName === "node-2"));
    const conditions = () => ((server.getNode("node-1")!.status as JsonObject | undefined)?.conditions ?? []) as JsonObject[];
    await waitFor("NetworkUnavailable=False", () => conditions().some((c) => c.type === "NetworkUnavailable" && c.status === "False"));
    await waitFor("completeLease's watch of node-1", () =>
      server.requests.some((r) => r.query.watch === "true" && r.query.fieldSelector === "metadata.name=node-1"),
    );
    // An address change later in the agent's life goes through updateLease.
    await mgr.updateLease(lease, { ...attrs, publicIP: IPAddress.parse("198.18.0.11") }, signal);
    watchStop.abort();
    completeStop.abort();
    await watching;
    await completing;

    const failed = server.requests.filter((r) => r.status >= 400);
    expect(failed.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([]);
    const used = [...new Set(server.requests.map(requiredPair))].sort();
    const role = findObject<V1ClusterRole>(docs, "ClusterRole", "weft");
    expect([...grantedPairs(role)].sort()).toEqual(used);
    // The pairs themselves, for the reader (and so an empty audit log cannot pass).
    expect(used).toEqual(["nodes get", "nodes list", "nodes watch", "nodes/status patch", "pods get"]);
  });
});

describe("RBAC arithmetic", () => {
  it("maps requests to verbs as the API server does", () => {
    const q = {};
    expect(requiredPair({ method: "GET", path: "/api/v1/nodes/n1", query: q })).toBe("nodes get");
    expect(requiredPair({ method: "GET", path: "/api/v1/nodes", query: q })).toBe("nodes list");
    expect(requiredPair({ method: "GET", path: "/api/v1/nodes", query: { watch: "true" } })).toBe("nodes watch");
    expect(requiredPair({ method: "PATCH", path: "/api/v1/nodes/n1/status", query: q })).toBe("nodes/status patch");
    expect(requiredPair({ method: "PATCH", path: "/api/v1/nodes/n1", query: q })).toBe("nodes patch");
    expect(requiredPair({ method: "GET", path: "/api/v1/namespaces/kube-weft/pods/p", query: q })).toBe("pods get");
    expect(requiredPair({ method: "DELETE", path: "/apis/apps/v1/namespaces/x/daemonsets", query: q })).toBe("apps/daemonsets deletecollection");
    expect(() => requiredPair({ method: "GET", path: "/healthz", query: q })).toThrow(/not a resource request/);
  });

  it("refuses wildcards in a role", () => {
    expect(() => grantedPairs({ metadata: { name: "r" }, rules: [{ apiGroups: [""], resources: ["nodes"], verbs: ["*"] }] })).toThrow(/wildcard/);
  });
});
