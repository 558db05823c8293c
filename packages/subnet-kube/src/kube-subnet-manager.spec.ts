/**
 * KubeSubnetManager against FakeApiServer: the real @kubernetes/client-node over real HTTP on 127.0.0.1.
 * Assertions are on the server's final state (node annotations and conditions, its request log) and on the
 * lease stream, never on internal calls.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { join } from "node:path";
import { type FakeApiServer, type FakeApiServerOptions, type JsonObject, startFakeApiServer } from "@weft/kube-testing";
import { IPAddress, type Lease, type LeaseAttrs, type LeaseEvent, MemoryLogger, isWeftError } from "@weft/core";
import { afterEach, describe, expect, it } from "vitest";
import { KubeSubnetManager, type KubeSubnetManagerOptions } from "./kube-subnet-manager.js";

const DUAL = { Network: "198.19.0.0/16", EnableIPv6: true, IPv6Network: "2001:2::/48", Backend: { Type: "vxlan" } };
const V4 = { Network: "198.19.0.0/16", Backend: { Type: "vxlan" } };

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Env {
  server: FakeApiServer;
  mgr: KubeSubnetManager;
  logger: MemoryLogger;
  netConfPath: string;
  make(o?: Partial<KubeSubnetManagerOptions>): KubeSubnetManager;
}

async function setup(netconf: object | null = DUAL, o: Partial<KubeSubnetManagerOptions> = {}, serverOptions: FakeApiServerOptions = {}): Promise<Env> {
  const server = await startFakeApiServer(serverOptions);
  cleanups.push(() => server.close());
  const dir = mkdtempSync(join(tmpdir(), "weft-kube-spec-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const netConfPath = join(dir, "net-conf.json");
  if (netconf) writeFileSync(netConfPath, JSON.stringify(netconf));
  const logger = new MemoryLogger();
  const make = (more: Partial<KubeSubnetManagerOptions> = {}) =>
    new KubeSubnetManager(
      {
        kubeconfigFile: server.kubeconfigPath,
        netConfPath,
        nodeName: "n1",
        env: {},
        retryIntervalMs: 20,
        retryTimeoutMs: 400,
        watchRetryDelayMs: 20,
        // What weftd's agent names from its built-in modules (BackendModule.dualStack).
        dualStackBackendTypes: ["vxlan", "host-gw", "wireguard"],
        ...o,
        ...more,
      },
      logger,
    );
  return { server, mgr: make(), logger, netConfPath, make };
}

function signal(): AbortSignal {
  const c = new AbortController();
  cleanups.push(() => c.abort());
  return c.signal;
}

async function waitFor(what: string, pred: () => boolean, timeoutMs = 4000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const vxlanAttrs = (n: number): LeaseAttrs => ({
  backendType: "vxlan",
  publicIP: IPAddress.parse(`198.18.0.${n}`),
  publicIPv6: IPAddress.parse(`2001:2::${n}`),
  backendData: { VNI: 1, VtepMAC: `aa:bb:cc:dd:ee:0${n}` },
  backendV6Data: { VNI: 1, VtepMAC: `aa:bb:cc:dd:ee:1${n}` },
});

function bareNode(name: string, n: number, dual = true): JsonObject {
  return { metadata: { name }, spec: { podCIDRs: dual ? [`198.19.${n}.0/24`, `2001:2:0:${n}::/64`] : [`198.19.${n}.0/24`] } };
}

/** A node as another agent leaves it: podCIDRs plus the lease annotations. */
function peerNode(name: string, n: number, extra: Record<string, string> = {}): JsonObject {
  const node = bareNode(name, n);
  (node.metadata as JsonObject).annotations = {
    "weft.io/kube-subnet-manager": "true",
    "weft.io/backend-type": "vxlan",
    "weft.io/backend-data": JSON.stringify({ VNI: 1, VtepMAC: `aa:bb:cc:dd:ee:0${n}` }),
    "weft.io/backend-v6-data": JSON.stringify({ VNI: 1, VtepMAC: `aa:bb:cc:dd:ee:1${n}` }),
    "weft.io/public-ip": `198.18.0.${n}`,
    "weft.io/public-ipv6": `2001:2::${n}`,
    ...extra,
  };
  return node;
}

const annotations = (s: FakeApiServer, name: string) => ((s.getNode(name)!.metadata as JsonObject).annotations ?? {}) as Record<string, string>;
const patches = (s: FakeApiServer) => s.requests.filter((r) => r.method === "PATCH");

/** Consumes watchLeases in the background. */
function collect(mgr: KubeSubnetManager, local: Lease) {
  const ctl = new AbortController();
  const events: LeaseEvent[] = [];
  const done = (async () => {
    for await (const e of mgr.watchLeases(local, ctl.signal)) events.push(e);
  })();
  cleanups.push(async () => {
    ctl.abort();
    await done;
  });
  return { events, ctl, done };
}

const describeEvent = (e: LeaseEvent) =>
  e.type === "snapshot" ? `snapshot ${e.leases.map((l) => l.nodeName).sort().join(",")}` : `${e.type} ${e.lease.nodeName} ${e.lease.subnet ?? ""}`;

describe("acquireLease", () => {
  it("takes the dual-stack subnets from spec.podCIDRs and publishes the annotations in ONE strategic-merge patch on nodes/status", async () => {
    const { server, mgr } = await setup();
    server.addNode(bareNode("n1", 1));
    const lease = await mgr.acquireLease(vxlanAttrs(1), signal());
    expect(lease.subnet?.toString()).toBe("198.19.1.0/24");
    expect(lease.ipv6Subnet?.toString()).toBe("2001:2:0:1::/64");
    expect(lease.nodeName).toBe("n1");
    expect(lease.revision).toBe((server.getNode("n1")!.metadata as JsonObject).resourceVersion);
    expect(annotations(server, "n1")).toEqual({
      "weft.io/kube-subnet-manager": "true",
      "weft.io/backend-type": "vxlan",
      "weft.io/backend-data": '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}',
      "weft.io/backend-v6-data": '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:11"}',
      "weft.io/public-ip": "198.18.0.1",
      "weft.io/public-ipv6": "2001:2::1",
    });
    expect(patches(server).map((r) => [r.path, r.contentType, r.status])).toEqual([["/api/v1/nodes/n1/status", "application/strategic-merge-patch+json", 200]]);
  });

  it("takes the subnet from spec.podCIDR with an IPv4 config, with Flannel's prefix when asked", async () => {
    const { server, make } = await setup(V4);
    server.addNode({ metadata: { name: "n1" }, spec: { podCIDR: "198.19.7.0/24" } });
    const mgr = make({ annotationPrefix: "flannel.alpha.coreos.com" });
    const lease = await mgr.acquireLease({ backendType: "host-gw", publicIP: IPAddress.parse("198.18.0.7") }, signal());
    expect([lease.subnet?.toString(), lease.ipv6Subnet]).toEqual(["198.19.7.0/24", undefined]);
    expect(annotations(server, "n1")).toEqual({
      "flannel.alpha.coreos.com/kube-subnet-manager": "true",
      "flannel.alpha.coreos.com/backend-type": "host-gw",
      "flannel.alpha.coreos.com/backend-data": "null",
      "flannel.alpha.coreos.com/public-ip": "198.18.0.7",
    });
  });

  it("waits for a podCIDR, then says exactly what to fix", async () => {
    const { server, mgr } = await setup(V4);
    server.addNode({ metadata: { name: "n1" } });
    const err = await mgr.acquireLease(vxlanAttrs(1), signal()).catch((e: unknown) => e);
    expect(isWeftError(err, "CONFIG_INVALID")).toBe(true);
    expect((err as Error).message).toBe('node "n1" has no spec.podCIDR: start kube-controller-manager with --allocate-node-cidrs and --cluster-cidr, or set it by hand');
  });

  it("picks up a podCIDR assigned while it waits", async () => {
    const { server, make } = await setup(V4);
    server.addNode({ metadata: { name: "n1" } });
    const mgr = make({ retryTimeoutMs: 3000 });
    const p = mgr.acquireLease(vxlanAttrs(1), signal());
    setTimeout(() => server.patchNode("n1", { spec: { podCIDR: "198.19.4.0/24" } }), 100);
    expect((await p).subnet?.toString()).toBe("198.19.4.0/24");
  });

  it("rejects a podCIDR outside Network, naming both", async () => {
    const { server, mgr, netConfPath } = await setup(V4);
    server.addNode({ metadata: { name: "n1" }, spec: { podCIDR: "10.244.3.0/24" } });
    await expect(mgr.acquireLease(vxlanAttrs(1), signal())).rejects.toThrow(`node "n1" podCIDR 10.244.3.0/24 is outside Network 198.19.0.0/16 of ${netConfPath}`);
    expect(patches(server)).toEqual([]);
  });

  it("fails clearly when the node does not exist", async () => {
    const { mgr } = await setup(V4);
    await expect(mgr.acquireLease(vxlanAttrs(1), signal())).rejects.toThrow(/node "n1" does not exist in the Kubernetes API .*check NODE_NAME/);
  });

  it("patches only when something differs", async () => {
    const { server, mgr } = await setup();
    server.addNode(bareNode("n1", 1));
    const lease = await mgr.acquireLease(vxlanAttrs(1), signal());
    await mgr.acquireLease(vxlanAttrs(1), signal()); // a restarted agent with the same data
    const rvBefore = server.resourceVersion;
    await mgr.updateLease(lease, vxlanAttrs(1), signal());
    expect(patches(server)).toHaveLength(1);
    expect(server.resourceVersion).toBe(rvBefore);
    const updated = await mgr.updateLease(lease, { ...vxlanAttrs(1), backendData: { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:99" } }, signal());
    expect(patches(server)).toHaveLength(2);
    expect(patches(server)[1]!.body).toEqual({ metadata: { annotations: { "weft.io/backend-data": '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:99"}' } } });
    expect(annotations(server, "n1")["weft.io/backend-data"]).toBe('{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:99"}');
    expect(updated.attrs.backendData).toEqual({ VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:99" });
    expect(mgr.stats.annotationPatches).toBe(2);
  });

  it("advertises the user-set public-ip(v6)-overwrite annotations instead of its own public IPs", async () => {
    const { server, mgr } = await setup();
    server.addNode(peerNode("n1", 1, { "weft.io/public-ip-overwrite": "203.0.113.1", "weft.io/public-ipv6-overwrite": "2001:db8::1" }));
    const lease = await mgr.acquireLease(vxlanAttrs(1), signal());
    expect(lease.attrs.publicIP?.toString()).toBe("203.0.113.1");
    expect(lease.attrs.publicIPv6?.toString()).toBe("2001:db8::1");
    expect(annotations(server, "n1")).toMatchObject({ "weft.io/public-ip": "203.0.113.1", "weft.io/public-ipv6": "2001:db8::1" });
  });

  it("rejects a malformed overwrite annotation, naming it", async () => {
    const { server, mgr } = await setup();
    server.addNode(peerNode("n1", 1, { "weft.io/public-ip-overwrite": "not-an-ip" }));
    await expect(mgr.acquireLease(vxlanAttrs(1), signal())).rejects.toThrow(/public-ip-overwrite "not-an-ip" is not an IPv4 address/);
  });

  it("retries a failing patch every interval, and gives up at once on a non-retryable answer", async () => {
    const { server, mgr } = await setup();
    server.addNode(bareNode("n1", 1));
    server.failNext(2, { method: "PATCH", code: 503 });
    await mgr.acquireLease(vxlanAttrs(1), signal());
    expect(patches(server).map((r) => r.status)).toEqual([503, 503, 200]);
    expect(annotations(server, "n1")["weft.io/kube-subnet-manager"]).toBe("true");

    server.failNext(1, { method: "PATCH", code: 400 });
    const t0 = Date.now();
    await expect(mgr.updateLease((await mgr.acquireLease(vxlanAttrs(1), signal())) as Lease, vxlanAttrs(2), signal())).rejects.toThrow(/HTTP 400/);
    expect(Date.now() - t0).toBeLessThan(300);
  });

  it("keeps retrying API errors past the retry window at startup (etcd mode does too), then acquires", async () => {
    // Issue 15: it gave up with STORE_UNAVAILABLE after retryTimeoutMs (30 s by default) and weftd exited.
    const { server, mgr, logger } = await setup(); // retryTimeoutMs 400
    server.addNode(bareNode("n1", 1));
    const down = server.fault({ code: 500 });
    const lease = mgr.acquireLease(vxlanAttrs(1), signal()).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 1000));
    down.clear();
    const got = await lease;
    expect(isWeftError(got), String(got)).toBe(false);
    expect((got as Lease).subnet?.toString()).toBe("198.19.1.0/24");
    expect(annotations(server, "n1")["weft.io/kube-subnet-manager"]).toBe("true");
    expect(down.hits).toBeGreaterThan(3);
    // Said once with the fix, not once per attempt.
    const warned = logger.records.filter((r) => r.level === "warn" && /failed/.test(r.msg));
    expect(warned.length).toBeGreaterThanOrEqual(1);
    expect(warned.length).toBeLessThan(down.hits);
  });

  it("is ready within 2 s of the API server answering, with the default intervals", async () => {
    const { server, make } = await setup(DUAL, { retryIntervalMs: undefined, retryTimeoutMs: undefined });
    server.addNode(bareNode("n1", 1));
    const mgr = make();
    const down = server.fault({ drop: true }); // connection resets: nothing answers
    const t0 = Date.now();
    let answeredAt = 0;
    const started = (async () => {
      // What weftd asks at startup, in order: the node's public-IP annotations, then the lease.
      await mgr.storedPublicIPs(signal());
      await mgr.acquireLease(vxlanAttrs(1), signal());
      return Date.now();
    })();
    await new Promise((r) => setTimeout(r, 3500));
    down.clear();
    answeredAt = Date.now();
    const doneAt = await started;
    expect(answeredAt - t0).toBeGreaterThanOrEqual(3400);
    // A generous bound that detects the defect (a 3 s retry interval), not a speed measurement.
    expect(doneAt - answeredAt).toBeLessThan(2000);
  });
});

describe("dual-stack backend types", () => {
  it("runs IPv4 only for a backend type outside the list, and removes stale IPv6 annotations", async () => {
    const { server, mgr, logger } = await setup({ ...DUAL, Backend: { Type: "ipsec" } });
    server.addNode(peerNode("n1", 1));
    await mgr.getNetworkConfig(signal());
    expect(logger.records.some((r) => r.level === "warn" && /does not support IPv6; running IPv4 only/.test(r.msg))).toBe(true);
    const lease = await mgr.acquireLease({ backendType: "ipsec", publicIP: IPAddress.parse("198.18.0.1") }, signal());
    expect([lease.subnet?.toString(), lease.ipv6Subnet]).toEqual(["198.19.1.0/24", undefined]);
    const ann = annotations(server, "n1");
    expect(ann["weft.io/backend-v6-data"]).toBeUndefined();
    expect(ann["weft.io/public-ipv6"]).toBeUndefined();
    expect(ann["weft.io/backend-type"]).toBe("ipsec");
  });

  it("refuses IPv6-only for such a type, and accepts types the caller adds", async () => {
    const v6only = { EnableIPv4: false, EnableIPv6: true, IPv6Network: "2001:2::/48", Backend: { Type: "sample" } };
    const { make } = await setup(v6only);
    await expect(make().getNetworkConfig(signal())).rejects.toThrow(/Backend.Type "sample" does not support IPv6, and EnableIPv4 is false/);
    const config = await make({ additionalDualStackBackendTypes: ["Sample"] }).getNetworkConfig(signal());
    expect(config.enableIPv6).toBe(true);
  });

  it("runs IPv6 for the types the agent names from its modules' dualStack, and knows none by itself", async () => {
    const v6only = { EnableIPv4: false, EnableIPv6: true, IPv6Network: "2001:2::/48", Backend: { Type: "vxlan" } };
    const { make } = await setup(v6only);
    const mgr = make({ dualStackBackendTypes: undefined });
    await expect(mgr.getNetworkConfig(signal())).rejects.toThrow(/Backend.Type "vxlan" does not support IPv6, and EnableIPv4 is false: use one of \(none loaded\)/);
    mgr.setIPv6BackendTypes(["VXLAN"]);
    expect((await mgr.getNetworkConfig(signal())).enableIPv6).toBe(true);
  });
});

describe("node discovery and stored data", () => {
  it("finds the node name from the pod named by POD_NAME/POD_NAMESPACE", async () => {
    const { server, make } = await setup(V4);
    server.addNode({ metadata: { name: "worker-7" }, spec: { podCIDR: "198.19.7.0/24" } });
    server.addPod({ metadata: { name: "weft-x1", namespace: "kube-system" }, spec: { nodeName: "worker-7" } });
    const mgr = make({ nodeName: undefined, env: { POD_NAME: "weft-x1", POD_NAMESPACE: "kube-system" } });
    const lease = await mgr.acquireLease(vxlanAttrs(7), signal());
    expect(lease.nodeName).toBe("worker-7");
    expect(mgr.name).toContain("kube node worker-7");
    expect(make({ nodeName: undefined, env: { NODE_NAME: "from-env" } }).nodeName).toBe("from-env");
  });

  it("says what to set when neither NODE_NAME nor POD_NAME/POD_NAMESPACE is there", async () => {
    const { make } = await setup(V4);
    await expect(make({ nodeName: undefined, env: { POD_NAME: "x" } }).acquireLease(vxlanAttrs(1), signal())).rejects.toThrow(
      /set NODE_NAME .* or both POD_NAME and POD_NAMESPACE/,
    );
  });

  it("exposes the node's stored backend data and node-public-ip(v6) annotations", async () => {
    const { server, mgr } = await setup();
    expect(await mgr.storedBackendData()).toEqual({});
    server.addNode(peerNode("n1", 1, { "weft.io/node-public-ip": "198.18.0.50", "weft.io/node-public-ipv6": "2001:2::50" }));
    expect(await mgr.storedBackendData()).toEqual({ v4: { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:01" }, v6: { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:11" } });
    const ips = await mgr.storedPublicIPs();
    expect([ips.v4?.toString(), ips.v6?.toString()]).toEqual(["198.18.0.50", "2001:2::50"]);
    server.patchNode("n1", { metadata: { annotations: { "weft.io/backend-data": "{oops", "weft.io/backend-v6-data": "null" } } });
    expect(await mgr.storedBackendData()).toEqual({});
  });
});

describe("getNetworkConfig", () => {
  it("waits for a missing net-conf file, then parses it without subnet-range checks", async () => {
    const { mgr, netConfPath, logger } = await setup(null);
    const p = mgr.getNetworkConfig(signal());
    setTimeout(() => writeFileSync(netConfPath, JSON.stringify({ Network: "198.19.0.0/16", SubnetMin: "10.0.0.0", Backend: { Type: "vxlan" } })), 60);
    const config = await p;
    expect(config.v4?.network.toString()).toBe("198.19.0.0/16");
    expect(logger.records.some((r) => r.level === "warn" && r.msg.includes(`waiting for ${netConfPath}`))).toBe(true);
  });
});

describe("watchLeases", () => {
  async function acquired(env: Env): Promise<Lease> {
    env.server.addNode(bareNode("n1", 1));
    return env.mgr.acquireLease(vxlanAttrs(1), signal());
  }

  it("yields a snapshot of the other nodes' leases, then added/updated/removed events; never this node", async () => {
    const env = await setup();
    const { server, mgr } = env;
    server.addNode(peerNode("n2", 2));
    server.addNode(bareNode("plain", 9)); // no kube-subnet-manager annotation: not a lease
    const local = await acquired(env);
    const { events } = collect(mgr, local);
    await waitFor("snapshot", () => events.length >= 1);
    expect(events[0]!.type).toBe("snapshot");
    const snap = events[0] as Extract<LeaseEvent, { type: "snapshot" }>;
    expect(snap.leases.map((l) => [l.nodeName, l.subnet?.toString(), l.ipv6Subnet?.toString(), l.attrs.publicIP?.toString()])).toEqual([
      ["n2", "198.19.2.0/24", "2001:2:0:2::/64", "198.18.0.2"],
    ]);

    server.addNode(peerNode("n3", 3));
    server.patchNode("n2", { metadata: { annotations: { "weft.io/public-ip": "198.18.0.22" } } });
    server.deleteNode("n3");
    await mgr.updateLease(local, { ...vxlanAttrs(1), backendData: { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:77" } }, signal()); // our own node: no event
    server.patchNode("plain", { metadata: { labels: { x: "y" } } });
    server.addNode(peerNode("n4", 4));
    await waitFor("n4 added", () => events.some((e) => e.type === "added" && e.lease.nodeName === "n4"));
    expect(events.map(describeEvent)).toEqual([
      "snapshot n2",
      "added n3 198.19.3.0/24",
      "added n2 198.19.2.0/24",
      "removed n3 198.19.3.0/24",
      "added n4 198.19.4.0/24",
    ]);
    const updated = events[2] as Extract<LeaseEvent, { type: "added" }>;
    expect(updated.lease.attrs.publicIP?.toString()).toBe("198.18.0.22");
  });

  it("ignores updates that do not change backend type, backend data or public IP of an enabled family", async () => {
    const env = await setup(V4);
    const { server, mgr } = env;
    server.addNode(peerNode("n2", 2));
    const local = await (async () => {
      server.addNode(bareNode("n1", 1, false));
      return mgr.acquireLease(vxlanAttrs(1), signal());
    })();
    const { events } = collect(mgr, local);
    await waitFor("snapshot", () => events.length >= 1);
    server.patchNode("n2", { status: { conditions: [{ type: "Ready", status: "True", lastHeartbeatTime: "2026-01-01T00:00:00Z" }] } }, { type: "strategic", subresource: "status" });
    server.patchNode("n2", { metadata: { labels: { zone: "a" }, annotations: { "other.io/x": "1" } } });
    server.patchNode("n2", { metadata: { annotations: { "weft.io/backend-v6-data": '{"VNI":9}', "weft.io/public-ipv6": "2001:2::99" } } }); // IPv6 is off
    server.patchNode("n2", { metadata: { annotations: { "weft.io/backend-data": '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:42"}' } } });
    await waitFor("relevant update", () => events.length >= 2);
    await new Promise((r) => setTimeout(r, 50));
    expect(events.map(describeEvent)).toEqual(["snapshot n2", "added n2 198.19.2.0/24"]);
    expect((events[1] as Extract<LeaseEvent, { type: "added" }>).lease.attrs.backendData).toEqual({ VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:42" });
  });

  it("skips malformed peers with a warning and a counter, without stopping the watch or other peers", async () => {
    const env = await setup();
    const { server, mgr, logger } = env;
    server.addNode(peerNode("bad-json", 5, { "weft.io/backend-data": "{VNI" }));
    server.addNode(peerNode("bad-ip", 6, { "weft.io/public-ip": "198.18.0.999" }));
    server.addNode({ ...peerNode("no-cidr", 7), spec: {} });
    server.addNode({ ...peerNode("v4-only", 8), spec: { podCIDRs: ["198.19.8.0/24"] } }); // missing IPv6 CIDR
    server.addNode(peerNode("wrong-family", 10, { "weft.io/public-ipv6": "198.18.0.10" }));
    server.addNode(peerNode("good", 2));
    const local = await acquired(env);
    const { events } = collect(mgr, local);
    await waitFor("snapshot", () => events.length >= 1);
    expect(events.map(describeEvent)).toEqual(["snapshot good"]);
    expect(mgr.stats.malformedPeers).toBe(5);
    const warned = logger.records.filter((r) => r.level === "warn" && r.msg.startsWith("skipping peer node")).map((r) => r.fields.node);
    expect(warned.sort()).toEqual(["bad-ip", "bad-json", "no-cidr", "v4-only", "wrong-family"]);

    server.addNode(peerNode("later-bad", 11, { "weft.io/backend-v6-data": "[" }));
    server.patchNode("bad-json", { metadata: { annotations: { "weft.io/backend-data": '{"VNI":1}' } } }); // fixed
    server.patchNode("good", { metadata: { annotations: { "weft.io/backend-data": "{broken" } } }); // breaks
    server.addNode(peerNode("n3", 3));
    await waitFor("n3", () => events.some((e) => e.type === "added" && e.lease.nodeName === "n3"));
    expect(events.map(describeEvent)).toEqual(["snapshot good", "added bad-json 198.19.5.0/24", "removed good 198.19.2.0/24", "added n3 198.19.3.0/24"]);
    expect(mgr.stats.malformedPeers).toBe(7);
  });

  for (const expiredWatch of ["event", "status"] as const) {
    it(`re-lists after 410 Gone (${expiredWatch === "event" ? "ERROR event" : "HTTP 410"}) and emits exactly the difference`, async () => {
      const env = await setup(DUAL, {}, { expiredWatch });
      const { server, mgr } = env;
      server.addNode(peerNode("n2", 2));
      server.addNode(peerNode("n3", 3));
      server.addNode(peerNode("n5", 5));
      const local = await acquired(env);
      const { events } = collect(mgr, local);
      await waitFor("snapshot", () => events.length >= 1);
      // Everything below happens in one tick: the agent's watch is gone and misses it all, and the history
      // it would resume from is compacted away.
      server.closeWatches();
      server.deleteNode("n2");
      server.addNode(peerNode("n4", 4));
      server.patchNode("n3", { metadata: { annotations: { "weft.io/public-ip": "198.18.0.33" } } });
      server.patchNode("n5", { metadata: { labels: { irrelevant: "yes" } } });
      server.compact();
      await waitFor("re-list diff", () => events.length >= 4);
      await new Promise((r) => setTimeout(r, 50));
      expect(mgr.stats.relists).toBe(2);
      expect(events.map(describeEvent)).toEqual(["snapshot n2,n3,n5", "added n3 198.19.3.0/24", "added n4 198.19.4.0/24", "removed n2 198.19.2.0/24"]);
      // and the stream goes on from the new list
      server.deleteNode("n4");
      await waitFor("n4 removed", () => events.some((e) => e.type === "removed" && e.lease.nodeName === "n4"));
    });
  }

  async function bookmarkScenario(sendBookmark: boolean) {
    const env = await setup();
    const { server, mgr } = env;
    server.addNode(peerNode("n2", 2));
    const local = await acquired(env);
    const { events } = collect(mgr, local);
    await waitFor("snapshot", () => events.length >= 1);
    const rvAtSnapshot = mgr.stats.resourceVersion;
    for (let i = 0; i < 3; i++) server.addPod({ metadata: { name: `p${i}`, namespace: "default" } }); // no Node events
    if (sendBookmark) {
      // The snapshot comes from the list; the watch opens after it. A bookmark sent before it opens reaches nobody.
      await waitFor("the node watch", () => server.watchCount > 0);
      server.sendBookmarks();
      await waitFor("bookmark", () => mgr.stats.resourceVersion === server.resourceVersion);
      expect(Number(mgr.stats.resourceVersion)).toBeGreaterThan(Number(rvAtSnapshot));
      expect(mgr.stats.bookmarks).toBe(1);
    }
    server.closeWatches();
    server.compact();
    server.addNode(peerNode("n3", 3));
    await waitFor("n3", () => events.some((e) => e.type === "added" && e.lease.nodeName === "n3"));
    return mgr.stats;
  }

  it("bookmarks advance the resourceVersion, so a reconnect after compaction resumes without a re-list", async () => {
    const stats = await bookmarkScenario(true);
    expect(stats.relists).toBe(1);
    expect(stats.watchRestarts).toBe(1);
    // A watch the server ended cleanly is not a failure (the metric weft_store_watch_reconnects_total counts these).
    expect(stats.watchFailures).toBe(0);
  });

  it("(control) without the bookmark the same reconnect needs a re-list", async () => {
    const stats = await bookmarkScenario(false);
    expect(stats.relists).toBe(2);
    expect(stats.watchFailures).toBe(1); // the 410 Gone
  });

  it("keeps watching through API server errors", async () => {
    const env = await setup();
    const { server, mgr } = env;
    const local = await acquired(env);
    const { events } = collect(mgr, local);
    await waitFor("snapshot", () => events.length >= 1);
    server.failNext(3, { method: "GET", path: "/api/v1/nodes", code: 503 });
    server.closeWatches();
    server.addNode(peerNode("n2", 2));
    await waitFor("n2", () => events.some((e) => e.type === "added" && e.lease.nodeName === "n2"));
    expect(server.requests.filter((r) => r.status === 503)).toHaveLength(3);
  });
});

describe("watchLeases: faults and hostile input (issue 15)", () => {
  async function acquired(env: Env): Promise<Lease> {
    env.server.addNode(bareNode("n1", 1));
    return env.mgr.acquireLease(vxlanAttrs(1), signal());
  }
  const lists = (s: FakeApiServer) => s.requests.filter((r) => r.method === "GET" && r.path === "/api/v1/nodes" && r.query.watch !== "true").length;

  for (const expiredWatch of ["event", "status"] as const) {
    it(`a 410 storm (${expiredWatch}) re-lists at a bounded rate, and converges once it ends`, async () => {
      const env = await setup(DUAL, {}, { expiredWatch }); // watchRetryDelayMs 20
      const { server, mgr } = env;
      server.addNode(peerNode("n2", 2));
      const local = await acquired(env);
      const { events } = collect(mgr, local);
      await waitFor("snapshot", () => events.length >= 1);
      const before = lists(server);
      const storm = server.fault({ expire: true });
      server.expireWatches();
      server.addNode(peerNode("n3", 3));
      await new Promise((r) => setTimeout(r, 1000));
      const during = lists(server) - before;
      // Doubling from 20 ms: about 6 lists in a second. Unbounded, it re-listed hundreds of times.
      expect(during).toBeGreaterThan(1);
      expect(during).toBeLessThanOrEqual(10);
      storm.clear();
      server.addNode(peerNode("n4", 4));
      await waitFor("n3 and n4", () => ["n3", "n4"].every((n) => events.some((e) => e.type === "added" && e.lease.nodeName === n)), 6000);
      expect(events.filter((e) => e.type === "added").map((e) => (e as { lease: Lease }).lease.nodeName)).toEqual(["n3", "n4"]);
    });
  }

  it("answers 500 for a while: keeps what it has, then picks up the changes made meanwhile", async () => {
    const env = await setup();
    const { server, mgr } = env;
    server.addNode(peerNode("n2", 2));
    server.addNode(peerNode("n3", 3));
    const local = await acquired(env);
    const { events } = collect(mgr, local);
    await waitFor("snapshot", () => events.length >= 1);
    const down = server.fault({ code: 500 });
    server.closeWatches();
    server.deleteNode("n3");
    server.addNode(peerNode("n4", 4));
    await new Promise((r) => setTimeout(r, 500));
    expect(events.map(describeEvent)).toEqual(["snapshot n2,n3"]); // nothing removed while the server fails
    expect(mgr.stats.watchConnected).toBe(false); // the agent reports itself not ready meanwhile
    down.clear();
    await waitFor("n4", () => events.some((e) => e.type === "added" && e.lease.nodeName === "n4"), 6000);
    expect(events.map(describeEvent).sort()).toEqual(["added n4 198.19.4.0/24", "removed n3 198.19.3.0/24", "snapshot n2,n3"]);
    expect(mgr.stats.watchConnected).toBe(true);
  });

  it("slow answers: one watch at a time, no duplicate events, and it converges", async () => {
    const env = await setup(DUAL, { requestTimeoutMs: 300 });
    const { server, mgr } = env;
    server.addNode(peerNode("n2", 2));
    const local = await acquired(env);
    const { events } = collect(mgr, local);
    await waitFor("snapshot", () => events.length >= 1);
    let maxWatches = 0;
    const sample = setInterval(() => (maxWatches = Math.max(maxWatches, server.watchCount)), 5);
    cleanups.push(() => clearInterval(sample));
    const slow = server.fault({ delayMs: 500 }); // longer than the request timeout
    server.closeWatches();
    server.addNode(peerNode("n3", 3));
    await new Promise((r) => setTimeout(r, 1200));
    slow.clear();
    server.addNode(peerNode("n4", 4));
    await waitFor("n3 and n4", () => ["n3", "n4"].every((n) => events.some((e) => e.type === "added" && e.lease.nodeName === n)), 6000);
    await new Promise((r) => setTimeout(r, 100));
    expect(events.map(describeEvent)).toEqual(["snapshot n2", "added n3 198.19.3.0/24", "added n4 198.19.4.0/24"]);
    expect(maxWatches).toBeLessThanOrEqual(1);
  });

  it("hostile annotations on many nodes: each skipped with one bounded line and a count, every valid peer kept", async () => {
    const env = await setup();
    const { server, mgr, logger } = env;
    const kinds: Record<string, string>[] = [
      { "weft.io/backend-data": JSON.stringify({ VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:01", pad: "x".repeat(200 * 1024) }) }, // near the API server's 256 KiB
      { "weft.io/backend-data": "[".repeat(20_000) + "]".repeat(20_000) },
      { "weft.io/backend-v6-data": '{"a":'.repeat(5_000) + "1" + "}".repeat(5_000) },
      { "weft.io/public-ip": "\u001b]0;pwned\u0007" + "1".repeat(100_000) },
      { "weft.io/backend-type": "v".repeat(1000) },
      { "weft.io/backend-data": "\u0000garbage" },
    ];
    const bad = 60;
    for (let i = 0; i < bad; i++) server.addNode(peerNode(`bad-${i}`, 10 + i, kinds[i % kinds.length]!));
    for (let i = 0; i < 5; i++) server.addNode(peerNode(`good-${i}`, 100 + i));
    const local = await acquired(env);
    const { events } = collect(mgr, local);
    await waitFor("snapshot", () => events.length >= 1);
    expect(events.map(describeEvent)).toEqual(["snapshot good-0,good-1,good-2,good-3,good-4"]);
    expect(mgr.stats.malformedPeers).toBe(bad);
    const lines = logger.records.filter((r) => r.level === "warn" && r.msg.startsWith("skipping peer node"));
    expect(lines).toHaveLength(bad);
    for (const l of lines) {
      expect(l.msg.length, l.msg.slice(0, 200)).toBeLessThan(400);
      expect(l.msg).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    }
    // Later peers still arrive.
    server.addNode(peerNode("n3", 3));
    await waitFor("n3", () => events.some((e) => e.type === "added" && e.lease.nodeName === "n3"));
  });

  it("memory stays bounded: large backend data on many nodes is not held by the watch", async () => {
    const gc = (() => {
      setFlagsFromString("--expose-gc");
      return runInNewContext("gc") as () => void;
    })();
    const env = await setup();
    const { server, mgr } = env;
    for (let i = 0; i < 60; i++) {
      server.addNode(peerNode(`big-${i}`, 10 + i, { "weft.io/backend-data": JSON.stringify({ VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:01", pad: "y".repeat(200 * 1024) }) }));
    }
    const local = await acquired(env);
    gc();
    const base = process.memoryUsage().heapUsed;
    const { events } = collect(mgr, local);
    await waitFor("snapshot", () => events.length >= 1);
    await new Promise((r) => setTimeout(r, 50));
    gc();
    const held = process.memoryUsage().heapUsed - base;
    // 60 nodes x 200 KiB = 12 MiB of data, held twice over (parsed + fingerprint) before the fix.
    expect(held).toBeLessThan(6 * 1024 * 1024);
  });
});

describe("markReady and completeLease", () => {
  it("completeLease ignores (and logs once) an event for another node on the own-node watch; its own deletion still ends it", async () => {
    // Issue 15: a DELETED event for another node on this node's watch made the agent conclude its node was gone.
    const { server, mgr, logger } = await setup();
    server.addNode(bareNode("n1", 1));
    server.addNode(bareNode("n2", 2));
    const lease = await mgr.acquireLease(vxlanAttrs(1), signal());
    let outcome: unknown = "running";
    const done = mgr.completeLease(lease, signal()).then(
      () => "resolved",
      (e: unknown) => e,
    );
    void done.then((v) => (outcome = v));
    await waitFor("the own-node watch", () => server.watchCount > 0);
    server.sendRawWatchEvent("DELETED", server.getNode("n2")!);
    server.sendRawWatchEvent("MODIFIED", server.getNode("n2")!);
    server.sendRawWatchEvent("DELETED", server.getNode("n2")!);
    await new Promise((r) => setTimeout(r, 200));
    expect(outcome).toBe("running");
    const lines = logger.records.filter((r) => r.msg.includes('"n2"') && r.level !== "debug");
    expect(lines.map((r) => r.level)).toEqual(["warn"]);
    server.deleteNode("n1");
    const err = await done;
    expect(isWeftError(err, "LEASE_LOST")).toBe(true);
    expect((err as Error).message).toMatch(/node "n1" was deleted/);
  });


  it("markReady sets NetworkUnavailable=False (WeftIsUp), keeping the other conditions; completeLease rejects LEASE_LOST when the node is deleted", async () => {
    const { server, mgr } = await setup();
    server.addNode(bareNode("n1", 1));
    server.patchNode(
      "n1",
      { status: { conditions: [{ type: "Ready", status: "True", reason: "KubeletReady" }, { type: "NetworkUnavailable", status: "True", reason: "NoRouteCreated" }] } },
      { type: "strategic", subresource: "status" },
    );
    const lease = await mgr.acquireLease(vxlanAttrs(1), signal());
    const done = mgr.completeLease(lease, signal());
    const cond = () => ((server.getNode("n1")!.status as JsonObject | undefined)?.conditions ?? []) as JsonObject[];
    // Holding the lease does not announce anything by itself.
    await new Promise((r) => setTimeout(r, 100));
    expect(cond().find((c) => c.type === "NetworkUnavailable")?.status).toBe("True");
    await mgr.markReady(lease, signal());
    expect(cond().map((c) => [c.type, c.status, c.reason])).toEqual([
      ["Ready", "True", "KubeletReady"],
      ["NetworkUnavailable", "False", "WeftIsUp"],
    ]);
    expect(cond()[1]!.message).toBe("Weft is running on this node");
    await new Promise((r) => setTimeout(r, 50));
    server.deleteNode("n1");
    const err = await done.catch((e: unknown) => e);
    expect(isWeftError(err, "LEASE_LOST")).toBe(true);
    expect((err as Error).message).toMatch(/node "n1" was deleted/);
  });

  it("leaves the condition alone when told to, and resolves when the signal aborts", async () => {
    const { server, make } = await setup();
    server.addNode(bareNode("n1", 1));
    const mgr = make({ setNodeNetworkUnavailable: false });
    const lease = await mgr.acquireLease(vxlanAttrs(1), signal());
    const ctl = new AbortController();
    const done = mgr.completeLease(lease, ctl.signal);
    await mgr.markReady(lease, ctl.signal);
    await new Promise((r) => setTimeout(r, 100));
    ctl.abort();
    await done;
    expect(server.getNode("n1")!.status).toBeUndefined();
  });
});

describe("KubeSubnetManager name", () => {
  it("names the node and how it reaches the API server", async () => {
    const { server } = await setup();
    const sm = new KubeSubnetManager({ kubeconfigFile: server.kubeconfigPath, nodeName: "n1", env: {} }, new MemoryLogger());
    expect(sm.name).toBe(`kube node n1 via kubeconfig ${server.kubeconfigPath}`);
  });
});
