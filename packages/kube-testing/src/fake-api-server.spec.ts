import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type FakeApiServer, type FakeApiServerOptions, type JsonObject, startFakeApiServer } from "./index.js";

let server: FakeApiServer;
const servers: FakeApiServer[] = [];

async function start(o: FakeApiServerOptions = {}): Promise<FakeApiServer> {
  const s = await startFakeApiServer(o);
  servers.push(s);
  return s;
}

beforeEach(async () => {
  server = await start();
});
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

const SMP = "application/strategic-merge-patch+json";
const MERGE = "application/merge-patch+json";

async function http(method: string, path: string, body?: unknown, contentType = "application/json", s = server) {
  const res = await fetch(s.url + path, { method, headers: { "Content-Type": contentType }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as JsonObject) : undefined, headers: res.headers };
}

/** Reads a watch stream until `count` events arrived or the stream ended. */
async function watchEvents(path: string, count: number, s = server): Promise<{ status: number; events: JsonObject[] }> {
  const ctl = new AbortController();
  const res = await fetch(s.url + path, { signal: ctl.signal });
  const events: JsonObject[] = [];
  if (res.status !== 200) return { status: res.status, events: [(await res.json()) as JsonObject] };
  const reader = res.body!.getReader();
  let buf = "";
  const timer = setTimeout(() => ctl.abort(), 2000);
  try {
    while (events.length < count) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += Buffer.from(value).toString("utf8");
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        events.push(JSON.parse(buf.slice(0, i)) as JsonObject);
        buf = buf.slice(i + 1);
      }
    }
  } catch {
    // aborted by the timer: return what arrived
  } finally {
    clearTimeout(timer);
    ctl.abort();
  }
  return { status: 200, events };
}

const node = (name: string, extra: JsonObject = {}): JsonObject => ({ metadata: { name }, spec: { podCIDR: "198.19.1.0/24" }, ...extra });
const meta = (o: JsonObject | undefined) => o?.metadata as JsonObject;
const ann = (o: JsonObject | undefined) => meta(o).annotations as Record<string, string> | undefined;
const status = (o: JsonObject | undefined) => o?.status as JsonObject;

describe("FakeApiServer: objects and resourceVersions", () => {
  it("fills server fields, keeps podCIDR and podCIDRs in step, and lists with the current resourceVersion", async () => {
    const n = server.addNode(node("n1"));
    expect(meta(n).uid).toMatch(/^[0-9a-f-]{36}$/);
    expect((n.spec as JsonObject).podCIDRs).toEqual(["198.19.1.0/24"]);
    server.addNode({ metadata: { name: "n2" }, spec: { podCIDRs: ["198.19.2.0/24", "2001:2:0:2::/64"] } });
    expect((server.getNode("n2")!.spec as JsonObject).podCIDR).toBe("198.19.2.0/24");
    const list = await http("GET", "/api/v1/nodes");
    expect(list.status).toBe(200);
    expect(meta(list.body).resourceVersion).toBe(server.resourceVersion);
    expect((list.body!.items as JsonObject[]).map((i) => meta(i).name)).toEqual(["n1", "n2"]);
  });

  it("answers 404 with a NotFound Status for a missing node and a missing pod", async () => {
    const r = await http("GET", "/api/v1/nodes/nope");
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ kind: "Status", reason: "NotFound", code: 404, message: 'nodes "nope" not found' });
    expect((await http("GET", "/api/v1/namespaces/kube-system/pods/p")).status).toBe(404);
  });

  it("serves a stored pod", async () => {
    server.addPod({ metadata: { name: "weft-abc", namespace: "kube-system" }, spec: { nodeName: "n1" } });
    const r = await http("GET", "/api/v1/namespaces/kube-system/pods/weft-abc");
    expect(r.status).toBe(200);
    expect((r.body!.spec as JsonObject).nodeName).toBe("n1");
  });

  it("creating an existing node is 409 AlreadyExists", async () => {
    server.addNode(node("n1"));
    const r = await http("POST", "/api/v1/nodes", node("n1"));
    expect(r.status).toBe(409);
    expect(r.body!.reason).toBe("AlreadyExists");
  });

  it("a write that changes nothing keeps the resourceVersion", async () => {
    server.addNode(node("n1", { metadata: { name: "n1", annotations: { "a.io/x": "1" } } }));
    const before = server.resourceVersion;
    const r = await http("PATCH", "/api/v1/nodes/n1/status", { metadata: { annotations: { "a.io/x": "1" } } }, SMP);
    expect(r.status).toBe(200);
    expect(server.resourceVersion).toBe(before);
    expect(meta(server.getNode("n1")).resourceVersion).toBe(before);
  });
});

describe("FakeApiServer: optimistic concurrency (409)", () => {
  it("rejects a patch carrying a stale metadata.resourceVersion and accepts the current one", async () => {
    const n = server.addNode(node("n1"));
    const rv = meta(n).resourceVersion as string;
    server.patchNode("n1", { metadata: { labels: { a: "1" } } });
    const stale = await http("PATCH", "/api/v1/nodes/n1", { metadata: { resourceVersion: rv, labels: { a: "2" } } }, MERGE);
    expect(stale.status).toBe(409);
    expect(stale.body).toMatchObject({ reason: "Conflict", code: 409 });
    expect((meta(server.getNode("n1")).labels as JsonObject).a).toBe("1");
    const fresh = await http("PATCH", "/api/v1/nodes/n1", { metadata: { resourceVersion: server.resourceVersion, labels: { a: "2" } } }, MERGE);
    expect(fresh.status).toBe(200);
    expect((meta(server.getNode("n1")).labels as JsonObject).a).toBe("2");
  });

  it("rejects a PUT with a stale resourceVersion; a PUT without one is unconditional (nodes allow it)", async () => {
    const n = server.addNode(node("n1"));
    server.patchNode("n1", { metadata: { labels: { a: "1" } } });
    expect((await http("PUT", "/api/v1/nodes/n1", { ...n, metadata: { ...meta(n), labels: { b: "1" } } })).status).toBe(409);
    const body = server.getNode("n1")!;
    delete meta(body).resourceVersion;
    meta(body).labels = { b: "2" };
    expect((await http("PUT", "/api/v1/nodes/n1", body)).status).toBe(200);
    expect(meta(server.getNode("n1")).labels).toEqual({ b: "2" });
  });
});

describe("FakeApiServer: merge rules", () => {
  it("strategic merge on nodes/status merges conditions by type and annotations as a map; null deletes", async () => {
    server.addNode(node("n1", { metadata: { name: "n1", annotations: { "a.io/keep": "k", "a.io/drop": "d" } } }));
    server.patchNode(
      "n1",
      { status: { conditions: [{ type: "Ready", status: "True", reason: "KubeletReady" }, { type: "MemoryPressure", status: "False" }] } },
      { type: "strategic", subresource: "status" },
    );
    const r = await http(
      "PATCH",
      "/api/v1/nodes/n1/status",
      {
        metadata: { annotations: { "a.io/new": "n", "a.io/drop": null } },
        status: { conditions: [{ type: "NetworkUnavailable", status: "False", reason: "WeftIsUp" }, { type: "Ready", status: "False" }] },
      },
      SMP,
    );
    expect(r.status).toBe(200);
    const n = server.getNode("n1");
    expect(ann(n)).toEqual({ "a.io/keep": "k", "a.io/new": "n" });
    const conds = status(n).conditions as JsonObject[];
    expect(conds.map((c) => [c.type, c.status])).toEqual([
      ["Ready", "False"],
      ["MemoryPressure", "False"],
      ["NetworkUnavailable", "False"],
    ]);
    // merged, not replaced: the Ready condition keeps its reason
    expect(conds[0]!.reason).toBe("KubeletReady");
  });

  it("strategic merge supports $patch: delete in a merge-key list and unions spec.podCIDRs", async () => {
    server.addNode({ metadata: { name: "n1" } });
    server.patchNode("n1", { status: { conditions: [{ type: "A", status: "True" }, { type: "B", status: "True" }] } }, { type: "strategic", subresource: "status" });
    server.patchNode("n1", { status: { conditions: [{ type: "A", $patch: "delete" }] } }, { type: "strategic", subresource: "status" });
    expect((status(server.getNode("n1")).conditions as JsonObject[]).map((c) => c.type)).toEqual(["B"]);
    server.patchNode("n1", { spec: { podCIDRs: ["198.19.3.0/24"] } }, { type: "strategic" });
    server.patchNode("n1", { spec: { podCIDRs: ["198.19.3.0/24"] } }, { type: "strategic" });
    expect((server.getNode("n1")!.spec as JsonObject).podCIDRs).toEqual(["198.19.3.0/24"]);
  });

  it("JSON merge patch replaces lists whole", async () => {
    server.addNode({ metadata: { name: "n1" } });
    server.patchNode("n1", { status: { conditions: [{ type: "A", status: "True" }, { type: "B", status: "True" }] } }, { type: "merge", subresource: "status" });
    server.patchNode("n1", { status: { conditions: [{ type: "C", status: "True" }] } }, { type: "merge", subresource: "status" });
    expect((status(server.getNode("n1")).conditions as JsonObject[]).map((c) => c.type)).toEqual(["C"]);
  });

  it("a list element without the merge key is a 400", async () => {
    server.addNode({ metadata: { name: "n1" } });
    const r = await http("PATCH", "/api/v1/nodes/n1/status", { status: { conditions: [{ status: "True" }] } }, SMP);
    expect(r.status).toBe(400);
    expect(r.body!.message).toContain("merge key");
  });

  it("nodes/status cannot change spec; nodes cannot change status; both change metadata", async () => {
    server.addNode(node("n1"));
    server.patchNode("n1", { spec: { unschedulable: true }, metadata: { labels: { via: "status" } } }, { subresource: "status" });
    expect((server.getNode("n1")!.spec as JsonObject).unschedulable).toBeUndefined();
    expect(meta(server.getNode("n1")).labels).toEqual({ via: "status" });
    server.patchNode("n1", { status: { phase: "Running" }, metadata: { labels: { via: "main" } } });
    expect(server.getNode("n1")!.status).toBeUndefined();
    expect(meta(server.getNode("n1")).labels).toEqual({ via: "main" });
  });

  it("JSON patch works and is what the client sends without a Content-Type override (so a map body is a 400)", async () => {
    server.addNode(node("n1"));
    const ok = await http("PATCH", "/api/v1/nodes/n1", [{ op: "add", path: "/metadata/labels", value: { x: "y" } }], "application/json-patch+json");
    expect(ok.status).toBe(200);
    expect(meta(server.getNode("n1")).labels).toEqual({ x: "y" });
    const kc = new KubeConfig();
    kc.loadFromFile(server.kubeconfigPath);
    const api = kc.makeApiClient(CoreV1Api);
    await expect(api.patchNodeStatus({ name: "n1", body: { metadata: { labels: { x: "z" } } } })).rejects.toMatchObject({ code: 400 });
    const n = await api.patchNodeStatus({ name: "n1", body: { metadata: { labels: { x: "z" } } } }, setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch));
    expect(n.metadata?.labels).toEqual({ x: "z" });
    expect(server.requests.filter((r) => r.method === "PATCH").map((r) => [r.contentType, r.status])).toEqual([
      ["application/json-patch+json", 200],
      ["application/json-patch+json", 400],
      [SMP, 200],
    ]);
  });

  it("server-side apply is refused with 415", async () => {
    server.addNode(node("n1"));
    expect((await http("PATCH", "/api/v1/nodes/n1", {}, "application/apply-patch+yaml")).status).toBe(415);
  });
});

describe("FakeApiServer: schema and validation", () => {
  it("Strict (this fake's default): an unknown field is a 400 naming it", async () => {
    server.addNode(node("n1"));
    const r = await http("PATCH", "/api/v1/nodes/n1", { spec: { podCIRD: "x" } }, MERGE);
    expect(r.status).toBe(400);
    expect(r.body!.message).toContain('unknown field "spec.podCIRD"');
    expect(() => server.addNode({ metadata: { name: "n2" }, bogus: 1 })).toThrow(/unknown field "bogus"/);
  });

  it("fieldValidation=Warn drops the unknown field and sends a Warning header, like the real default", async () => {
    server.addNode(node("n1"));
    const r = await http("PATCH", "/api/v1/nodes/n1?fieldValidation=Warn", { spec: { podCIRD: "x" }, metadata: { labels: { a: "b" } } }, MERGE);
    expect(r.status).toBe(200);
    expect(r.headers.get("warning")).toContain('unknown field \\"spec.podCIRD\\"');
    expect((server.getNode("n1")!.spec as JsonObject).podCIRD).toBeUndefined();
    expect(meta(server.getNode("n1")).labels).toEqual({ a: "b" });
  });

  it("wrong JSON types are a 400; invalid annotation keys and podCIDR changes are a 422", async () => {
    server.addNode(node("n1"));
    expect((await http("PATCH", "/api/v1/nodes/n1", { metadata: { annotations: { "a.io/x": 1 } } }, MERGE)).status).toBe(400);
    expect((await http("PATCH", "/api/v1/nodes/n1", { spec: { unschedulable: "yes" } }, MERGE)).status).toBe(400);
    const badKey = await http("PATCH", "/api/v1/nodes/n1", { metadata: { annotations: { "Weft.IO/x": "1" } } }, MERGE);
    expect(badKey.status).toBe(422);
    expect(badKey.body!.reason).toBe("Invalid");
    const cidr = await http("PATCH", "/api/v1/nodes/n1", { spec: { podCIDR: "198.19.9.0/24", podCIDRs: ["198.19.9.0/24"] } }, MERGE);
    expect(cidr.status).toBe(422);
    expect(cidr.body!.message).toContain("may not change podCIDR");
    expect(() => server.addNode({ metadata: { name: "n2" }, spec: { podCIDRs: ["198.19.1.0/24", "198.19.2.0/24"] } })).toThrow(/one CIDR for each IP family/);
  });
});

describe("FakeApiServer: watch", () => {
  it("streams ADDED, MODIFIED and DELETED from a resourceVersion, each with its new resourceVersion", async () => {
    const rv = server.resourceVersion;
    server.addNode(node("n1"));
    server.patchNode("n1", { metadata: { labels: { a: "1" } } });
    server.deleteNode("n1");
    const { events } = await watchEvents(`/api/v1/nodes?watch=true&resourceVersion=${rv}`, 3);
    expect(events.map((e) => e.type)).toEqual(["ADDED", "MODIFIED", "DELETED"]);
    const rvs = events.map((e) => Number(meta(e.object as JsonObject).resourceVersion));
    expect(rvs).toEqual([Number(rv) + 1, Number(rv) + 2, Number(rv) + 3]);
  });

  it("without a resourceVersion starts with the current state as ADDED events", async () => {
    server.addNode(node("b"));
    server.addNode(node("a"));
    const { events } = await watchEvents("/api/v1/nodes?watch=1", 2);
    expect(events.map((e) => [e.type, meta(e.object as JsonObject).name])).toEqual([
      ["ADDED", "a"],
      ["ADDED", "b"],
    ]);
  });

  it("a resourceVersion older than the history gets an ERROR event with a 410 Status", async () => {
    const rv = server.resourceVersion;
    server.addNode(node("n1"));
    server.compact();
    const { status: code, events } = await watchEvents(`/api/v1/nodes?watch=true&resourceVersion=${rv}`, 5);
    expect(code).toBe(200);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: "ERROR", object: { kind: "Status", code: 410, reason: "Expired" } });
    // resuming from the compaction point is fine
    expect((await watchEvents(`/api/v1/nodes?watch=true&resourceVersion=${server.resourceVersion}&timeoutSeconds=1`, 1)).events).toEqual([]);
  });

  it("the history is bounded: with historyLimit 2, the third-oldest resourceVersion is gone (HTTP 410 mode)", async () => {
    const s = await start({ historyLimit: 2, expiredWatch: "status" });
    const rv0 = s.resourceVersion;
    s.addNode(node("n1"));
    const rv1 = s.resourceVersion;
    s.addNode(node("n2"));
    s.addNode(node("n3"));
    const gone = await watchEvents(`/api/v1/nodes?watch=true&resourceVersion=${rv0}`, 1, s);
    expect(gone.status).toBe(410);
    expect(gone.events[0]).toMatchObject({ kind: "Status", code: 410 });
    const ok = await watchEvents(`/api/v1/nodes?watch=true&resourceVersion=${rv1}`, 2, s);
    expect(ok.events.map((e) => meta(e.object as JsonObject).name)).toEqual(["n2", "n3"]);
  });

  it("sends BOOKMARK events only to watchers that allow them, carrying the current resourceVersion", async () => {
    const rv = server.resourceVersion;
    const withBm = watchEvents(`/api/v1/nodes?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`, 1);
    const without = watchEvents(`/api/v1/nodes?watch=true&resourceVersion=${rv}`, 1);
    await new Promise((r) => setTimeout(r, 100));
    server.addPod({ metadata: { name: "p", namespace: "default" } }); // moves the global resourceVersion, no node event
    server.sendBookmarks();
    setTimeout(() => server.closeWatches(), 200);
    const [a, b] = await Promise.all([withBm, without]);
    expect(a.events).toEqual([{ type: "BOOKMARK", object: { kind: "Node", apiVersion: "v1", metadata: { resourceVersion: server.resourceVersion } } }]);
    expect(b.events).toEqual([]);
  });

  it("a field selector turns changes into ADDED/DELETED as objects enter and leave it", async () => {
    server.addNode(node("n1"));
    const rv = server.resourceVersion;
    server.addNode(node("n2"));
    server.patchNode("n1", { metadata: { labels: { a: "1" } } });
    server.deleteNode("n1");
    const { events } = await watchEvents(`/api/v1/nodes?watch=true&resourceVersion=${rv}&fieldSelector=metadata.name%3Dn1`, 2);
    expect(events.map((e) => e.type)).toEqual(["MODIFIED", "DELETED"]);
    const label = await watchEvents(`/api/v1/nodes?watch=true&resourceVersion=${rv}&labelSelector=a%3D1`, 2);
    expect(label.events.map((e) => e.type)).toEqual(["ADDED", "DELETED"]);
  });

  it("ends streams on timeoutSeconds and on closeWatches()", async () => {
    const t0 = Date.now();
    const r = await watchEvents(`/api/v1/nodes?watch=true&resourceVersion=${server.resourceVersion}&timeoutSeconds=1`, 1);
    expect(r.events).toEqual([]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(server.watchCount).toBe(0);
  });
});

describe("FakeApiServer: harness", () => {
  it("failNext injects faults for matching requests only, then recovers", async () => {
    server.addNode(node("n1"));
    server.failNext(1, { method: "PATCH", code: 503 });
    expect((await http("GET", "/api/v1/nodes/n1")).status).toBe(200);
    expect((await http("PATCH", "/api/v1/nodes/n1", { metadata: { labels: { a: "b" } } }, MERGE)).status).toBe(503);
    expect((await http("PATCH", "/api/v1/nodes/n1", { metadata: { labels: { a: "b" } } }, MERGE)).status).toBe(200);
  });

  it("injected errors carry the Status kube-apiserver sends for the code", async () => {
    server.addNode(node("n1"));
    server.failNext(1, { code: 500, message: "etcdserver: request timed out" });
    const r500 = await http("GET", "/api/v1/nodes/n1");
    expect(r500.status).toBe(500);
    expect(r500.body).toMatchObject({
      kind: "Status",
      status: "Failure",
      reason: "InternalError",
      code: 500,
      message: "Internal error occurred: etcdserver: request timed out",
      details: { causes: [{ message: "etcdserver: request timed out" }] },
    });
    server.failNext(1, { code: 503 });
    expect((await http("GET", "/api/v1/nodes/n1")).body).toMatchObject({ reason: "ServiceUnavailable", code: 503 });
    server.failNext(1, { code: 429 });
    const r429 = await http("GET", "/api/v1/nodes/n1");
    expect([r429.status, r429.body?.reason, r429.headers.get("retry-after"), (r429.body?.details as JsonObject).retryAfterSeconds]).toEqual([429, "TooManyRequests", "1", 1]);
    expect((await http("GET", "/api/v1/nodes/n1")).status).toBe(200);
  });

  it("fault() lasts until cleared, counts its hits, and can target watches only", async () => {
    server.addNode(node("n1"));
    const f = server.fault({ code: 503, watch: true });
    expect((await http("GET", "/api/v1/nodes")).status).toBe(200);
    expect((await watchEvents("/api/v1/nodes?watch=true", 1)).status).toBe(503);
    expect((await watchEvents("/api/v1/nodes?watch=true", 1)).status).toBe(503);
    expect(f.hits).toBe(2);
    f.clear();
    expect((await watchEvents("/api/v1/nodes?watch=true", 1)).events.map((e) => e.type)).toEqual(["ADDED"]);
  });

  it("a delay fault answers late (normally, or with its code); a drop fault resets the connection", async () => {
    server.addNode(node("n1"));
    const slow = server.fault({ method: "GET", delayMs: 300 }, 1);
    const t0 = Date.now();
    expect((await http("GET", "/api/v1/nodes/n1")).status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(slow.hits).toBe(1);
    server.fault({ delayMs: 50, code: 504 }, 1);
    expect((await http("GET", "/api/v1/nodes/n1")).body).toMatchObject({ reason: "Timeout", code: 504 });
    server.fault({ drop: true }, 1);
    await expect(http("GET", "/api/v1/nodes/n1")).rejects.toThrow();
    expect(server.requests.at(-1)!.status).toBe(-1);
    expect((await http("GET", "/api/v1/nodes/n1")).status).toBe(200);
  });

  for (const expiredWatch of ["event", "status"] as const) {
    it(`an expire fault answers every watch from a resourceVersion with 410 Gone (${expiredWatch}), and nothing else`, async () => {
      const s = await start({ expiredWatch });
      s.addNode(node("n1"));
      const rv = s.resourceVersion;
      const storm = s.fault({ expire: true });
      const r = await watchEvents(`/api/v1/nodes?watch=true&resourceVersion=${rv}`, 1, s);
      if (expiredWatch === "event") {
        expect(r.status).toBe(200);
        expect(r.events).toEqual([{ type: "ERROR", object: expect.objectContaining({ kind: "Status", code: 410, reason: "Expired" }) }]);
      } else {
        expect(r.status).toBe(410);
        expect(r.events[0]).toMatchObject({ kind: "Status", code: 410, reason: "Expired" });
      }
      // A list, and a watch without a resourceVersion (which cannot be too old), are served.
      expect((await http("GET", "/api/v1/nodes", undefined, "application/json", s)).status).toBe(200);
      expect((await watchEvents("/api/v1/nodes?watch=true", 1, s)).events.map((e) => e.type)).toEqual(["ADDED"]);
      expect(storm.hits).toBe(1);
      storm.clear();
      s.addNode(node("n2", { spec: { podCIDR: "198.19.2.0/24" } }));
      expect((await watchEvents(`/api/v1/nodes?watch=true&resourceVersion=${rv}`, 1, s)).events.map((e) => e.type)).toEqual(["ADDED"]);
    });
  }

  it("expireWatches ends every open watch with an ERROR event carrying 410 Expired", async () => {
    server.addNode(node("n1"));
    const w = watchEvents(`/api/v1/nodes?watch=true&resourceVersion=${server.resourceVersion}`, 5);
    while (server.watchCount === 0) await new Promise((r) => setTimeout(r, 5));
    server.expireWatches();
    const r = await w;
    expect(r.events).toEqual([{ type: "ERROR", object: expect.objectContaining({ code: 410, reason: "Expired" }) }]);
    expect(server.watchCount).toBe(0);
  });

  it("sendRawWatchEvent ignores the watch's selector (a wrong event, for testing a client's defences)", async () => {
    server.addNode(node("n1"));
    server.addNode(node("n2", { spec: { podCIDR: "198.19.2.0/24" } }));
    const w = watchEvents(`/api/v1/nodes?watch=true&fieldSelector=metadata.name%3Dn1&resourceVersion=${server.resourceVersion}`, 1);
    while (server.watchCount === 0) await new Promise((r) => setTimeout(r, 5));
    server.sendRawWatchEvent("DELETED", server.getNode("n2")!);
    expect((await w).events.map((e) => [e.type, meta(e.object as JsonObject).name])).toEqual([["DELETED", "n2"]]);
  });

  it("writes a kubeconfig the real client loads, and removes it on close", async () => {
    const s = await start();
    const kc = new KubeConfig();
    kc.loadFromFile(s.kubeconfigPath);
    expect(kc.getCurrentCluster()?.server).toBe(s.url);
    s.addNode(node("n1"));
    const list = await kc.makeApiClient(CoreV1Api).listNode();
    expect(list.items.map((i) => i.metadata?.name)).toEqual(["n1"]);
    await s.close();
    const { existsSync } = await import("node:fs");
    expect(existsSync(s.kubeconfigPath)).toBe(false);
  });
});
