/**
 * The health server (issue 15, #14): /status and /drift only for clients on the node, concurrent reads shared,
 * work bounded so a burst never starves the agent, health endpoints answering throughout.
 */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type HealthServerOptions, type HealthSource, SharedRead, isLoopbackAddress, isNodeLocalClient, renderJson, routeRequest, startHealthServer } from "./http.js";
import { AgentMetrics } from "./metrics.js";

let servers: Server[] = [];
afterEach(() => {
  for (const s of servers) s.close();
  servers = [];
});

async function serve(source: HealthSource, options?: HealthServerOptions): Promise<string> {
  // Options are passed only when given: the server's defaults are what weftd runs with.
  const s = options ? await startHealthServer("127.0.0.1", 0, source, new AgentMetrics(), options) : await startHealthServer("127.0.0.1", 0, source, new AgentMetrics());
  servers.push(s);
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

const get = async (url: string) => {
  const r = await fetch(url);
  return { status: r.status, body: await r.text(), retryAfter: r.headers.get("retry-after") };
};

/** A gate a read waits on until the test opens it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

const PEERS = { phase: "running", peers: [{ subnet: "198.19.2.0/24", publicIP: "198.18.0.2", state: "programmed" }] };

describe("routeRequest", () => {
  it("routes by path, ignoring a query or fragment, and allows only GET and HEAD", () => {
    expect(routeRequest("GET", "/status")).toEqual({ kind: "status" });
    expect(routeRequest("HEAD", "/readyz?verbose=1")).toEqual({ kind: "readyz" });
    expect(routeRequest("GET", "/drift#x")).toEqual({ kind: "drift" });
    expect(routeRequest("GET", "/status/")).toEqual({ kind: "not-found" });
    expect(routeRequest("GET", "//status")).toEqual({ kind: "not-found" });
    expect(routeRequest("GET", "/../status")).toEqual({ kind: "not-found" });
    expect(routeRequest("GET", "http://x/status")).toEqual({ kind: "not-found" });
    expect(routeRequest("GET", "/constructor")).toEqual({ kind: "not-found" });
    expect(routeRequest("GET", undefined)).toEqual({ kind: "not-found" });
    expect(routeRequest("POST", "/status")).toEqual({ kind: "method-not-allowed" });
    expect(routeRequest(undefined, "/status")).toEqual({ kind: "method-not-allowed" });
  });
});

describe("who may read /status and /drift", () => {
  it("loopback clients, and the node connecting to its own address; nobody else", () => {
    for (const a of ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"]) expect(isLoopbackAddress(a), a).toBe(true);
    for (const a of ["198.18.0.2", "::ffff:198.18.0.2", "1270.0.0.1", "::2", "", undefined, "fe80::1"]) expect(isLoopbackAddress(a), String(a)).toBe(false);
    expect(isNodeLocalClient("198.18.0.1", "198.18.0.1")).toBe(true);
    expect(isNodeLocalClient("198.18.0.2", "198.18.0.1")).toBe(false);
    expect(isNodeLocalClient(undefined, undefined)).toBe(false);
    expect(isNodeLocalClient("", "")).toBe(false);
  });

  it("a client that is not on the node gets 403 with one line naming weftctl for /status and /drift; health endpoints answer", async () => {
    const base = await serve(
      { ready: () => ({ ready: true, reason: "" }), status: () => PEERS, drift: async () => [{ kind: "routes", missing: ["198.19.2.0/24"] }] },
      { trustedClient: () => false },
    );
    for (const p of ["/status", "/drift"]) {
      const r = await get(`${base}${p}`);
      expect(r.status, p).toBe(403);
      expect(r.body).toMatch(new RegExp(`^forbidden: ${p} .*weftctl ${p.slice(1)}.*\\n$`));
      expect(r.body.split("\n")).toHaveLength(2);
      expect(r.body).not.toContain("198.1");
    }
    expect((await get(`${base}/healthz`)).status).toBe(200);
    expect((await get(`${base}/readyz`)).status).toBe(200);
    expect((await get(`${base}/metrics`)).status).toBe(200);
  });

  it("a loopback client reads /status and /drift (the defaults)", async () => {
    const base = await serve({ ready: () => ({ ready: true, reason: "" }), status: () => PEERS, drift: async () => [] });
    expect(JSON.parse((await get(`${base}/status`)).body)).toEqual(PEERS);
    expect(JSON.parse((await get(`${base}/drift`)).body)).toEqual([]);
  });
});

describe("load", () => {
  it("200 concurrent /drift requests share one kernel read, and /healthz answers while it runs", async () => {
    let reads = 0;
    const g = gate();
    const base = await serve({
      ready: () => ({ ready: true, reason: "" }),
      drift: async () => {
        const n = ++reads;
        await g.opened;
        return [{ kind: "routes", read: n }];
      },
    });
    const all = Promise.all(Array.from({ length: 200 }, () => get(`${base}/drift`)));
    // The agent stays responsive: the health endpoints answer while the burst waits for the read.
    await new Promise((r) => setTimeout(r, 200));
    expect((await get(`${base}/healthz`)).status).toBe(200);
    expect((await get(`${base}/readyz`)).status).toBe(200);
    g.open();
    const results = await all;
    expect(new Set(results.map((r) => r.status))).toEqual(new Set([200]));
    // Every answer comes from the same read.
    expect(new Set(results.map((r) => JSON.parse(r.body)[0].read))).toEqual(new Set([1]));
  });

  it("a result is reused only briefly: a later request reads again", async () => {
    let reads = 0;
    const base = await serve({ ready: () => ({ ready: true, reason: "" }), status: () => ({ read: ++reads }) }, { reuseMs: 50 });
    const first = JSON.parse((await get(`${base}/status`)).body).read;
    await new Promise((r) => setTimeout(r, 120));
    expect(JSON.parse((await get(`${base}/status`)).body).read).toBe(first + 1);
  });

  it("work beyond the bound is refused with 503 and Retry-After, never queued without limit; health endpoints still answer", async () => {
    const g = gate();
    const base = await serve(
      {
        ready: () => ({ ready: true, reason: "" }),
        status: async () => {
          await g.opened;
          return { phase: "running" };
        },
        drift: async () => [],
        refreshMetrics: () => g.opened,
      },
      { maxConcurrent: 1, maxQueued: 1 },
    );
    const first = get(`${base}/status`);
    const second = get(`${base}/metrics`);
    await new Promise((r) => setTimeout(r, 200));
    // Joining the status read in flight costs nothing: it is answered with the others.
    const joined = get(`${base}/status`);
    // A new read with one running and one waiting: refused.
    const third = await get(`${base}/drift`);
    expect(third.status).toBe(503);
    expect(third.retryAfter).toBe("1");
    expect(third.body).toMatch(/^weftd is busy/);
    expect((await get(`${base}/healthz`)).status).toBe(200);
    g.open();
    expect((await first).status).toBe(200);
    expect((await second).status).toBe(200);
    expect((await joined).status).toBe(200);
    expect((await get(`${base}/drift`)).status).toBe(200);
  });

  it("SharedRead: one read in flight for every caller; a failed read is not reused", async () => {
    let now = 0;
    let reads = 0;
    let fail = true;
    const r = new SharedRead(
      async () => {
        reads++;
        if (fail) throw new Error("boom");
        return reads;
      },
      100,
      () => now,
    );
    const a = r.get();
    const b = r.get();
    await expect(a).rejects.toThrow("boom");
    await expect(b).rejects.toThrow("boom");
    fail = false;
    expect(await r.get()).toBe(2);
    now = 99;
    expect(await r.get()).toBe(2);
    now = 100;
    expect(await r.get()).toBe(3);
  });
});

describe("renderJson", () => {
  it("renders hostile values as valid JSON: escapes, bigints, cycles, deep nesting, throwing getters, huge strings", () => {
    const cyclic: Record<string, unknown> = { name: "a" };
    cyclic.self = cyclic;
    let deep: unknown = "bottom";
    for (let i = 0; i < 100_000; i++) deep = [deep];
    const throwing = Object.defineProperty({}, "x", { enumerable: true, get: () => { throw new Error("nope"); } });
    const badToJson = { toJSON: () => { throw new Error("no json"); } };
    const value = { esc: "\u001b[31mred\u0000\n\"", big: 10n ** 30n, cyclic, deep, throwing, badToJson, huge: "x".repeat(1_000_000), nan: NaN, fn: () => 1, undef: undefined, arr: [undefined, () => 1] };
    const text = renderJson(value);
    const back = JSON.parse(text);
    expect(back.esc).toBe("\u001b[31mred\u0000\n\"");
    expect(text).not.toContain("\u001b");
    expect(back.big).toBe("1000000000000000000000000000000");
    expect(back.cyclic).toEqual({ name: "a", self: "[circular]" });
    expect(JSON.stringify(back.deep)).toContain("[nested too deep]");
    expect(back.throwing).toEqual({ x: "[unreadable: nope]" });
    expect(back.badToJson).toBe("[unreadable: no json]");
    expect(back.huge.length).toBeLessThan(5000);
    expect(back.huge).toMatch(/… \(995904 more characters\)$/);
    expect(back.nan).toBeNull();
    expect("fn" in back || "undef" in back).toBe(false);
    expect(back.arr).toEqual([null, null]);
  });

  it("keeps ordinary status values as JSON.stringify would (Dates, toJSON, nested objects)", () => {
    const v = { at: new Date(0), ip: { toJSON: () => "198.19.2.0/24" }, peers: [{ state: "programmed", n: 1.5 }], __proto__x: 1 };
    expect(renderJson(v)).toBe(JSON.stringify(v, null, 2) + "\n");
    const proto = JSON.parse('{"__proto__": {"polluted": 1}}');
    expect(JSON.parse(renderJson(proto))).toEqual(proto);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("/status with a hostile value in it is still a 200 with valid JSON", async () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.me = cyclic;
    const base = await serve({ ready: () => ({ ready: true, reason: "" }), status: () => ({ peers: [{ name: "\u001b]0;pwned\u0007", big: 1n, cyclic }] }) });
    const r = await get(`${base}/status`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).peers[0]).toEqual({ name: "\u001b]0;pwned\u0007", big: "1", cyclic: { me: "[circular]" } });
  });
});
