/**
 * Properties of the health server's input handling (issue 15): the request routing never throws and routes every
 * endpoint whatever query follows it; the /status and /drift JSON rendering never throws and always yields valid
 * JSON for hostile peer data, keeping ordinary values as JSON.stringify would; and the real server answers every
 * hostile request target with a known status, never hanging.
 */
import { type Server, request } from "node:http";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { fc, fuzz, fuzzAsync, hostileJson, hostileString } from "@weft/fuzz";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_RENDERED_DEPTH, MAX_RENDERED_STRING, renderJson, routeRequest, startHealthServer } from "./http.js";
import { AgentMetrics } from "./metrics.js";

const ENDPOINTS = ["healthz", "readyz", "status", "drift", "metrics"] as const;
const KINDS = new Set<string>([...ENDPOINTS, "method-not-allowed", "not-found"]);

const method = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom("GET", "HEAD") },
  { weight: 1, arbitrary: fc.constantFrom("POST", "PUT", "DELETE", "OPTIONS", "get", "CONNECT", "") },
  { weight: 1, arbitrary: hostileString(16) },
);
/** Request targets: an endpoint with a hostile query, a hostile path, or a hostile string as it is. */
const target = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...ENDPOINTS), hostileString()).map(([e, q]) => `/${e}?${q}`) },
  { weight: 2, arbitrary: hostileString().map((p) => `/${p}`) },
  { weight: 1, arbitrary: hostileString() },
);

describe("HTTP routing (fuzz)", () => {
  it("never throws, gives a known route, and routes /<endpoint>?<anything> to the endpoint for GET and HEAD", () => {
    fuzz("daemon http routeRequest", fc.tuple(method, target), ([m, url]) => {
      const r = routeRequest(m, url);
      expect(KINDS.has(r.kind)).toBe(true);
      if (m !== "GET" && m !== "HEAD") expect(r.kind).toBe("method-not-allowed");
      const q = /^\/([a-z]+)\?[^#]*/.exec(url);
      if ((m === "GET" || m === "HEAD") && q && (ENDPOINTS as readonly string[]).includes(q[1]!) && url.indexOf("#") < 0) expect(r.kind).toBe(q[1]);
    });
  });
});

/** Peer statuses as an agent might hold them after hostile leases: odd names, huge values, bigints, nesting. */
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: hostileJson() },
  { weight: 2, arbitrary: hostileString(300) },
  { weight: 1, arbitrary: fc.bigInt() },
  { weight: 1, arbitrary: fc.constantFrom(NaN, Infinity, -Infinity, undefined, -0) },
);
const hostileStatus = fc.record({
  phase: hostileString(),
  peers: fc.array(fc.record({ name: hostileString(), subnet: hostileString(), reason: hostileString(300), data: hostileValue }), { maxLength: 4 }),
  backend: hostileValue,
});

/** True when the value is plain JSON data small enough that renderJson keeps it exactly. */
function keptExactly(v: unknown, depth = 0): boolean {
  if (depth >= MAX_RENDERED_DEPTH - 2) return false;
  if (typeof v === "string") return v.length <= MAX_RENDERED_STRING;
  if (typeof v === "number") return Number.isFinite(v);
  if (v === null || typeof v === "boolean") return true;
  if (Array.isArray(v)) return v.every((x) => keptExactly(x, depth + 1));
  if (typeof v === "object") return Object.values(v as object).every((x) => keptExactly(x, depth + 1));
  return false;
}

describe("/status and /drift rendering (fuzz)", () => {
  it("never throws and always yields valid JSON; plain data renders as JSON.stringify would", () => {
    let exact = 0;
    fuzz("daemon http renderJson", hostileStatus, (s) => {
      const text = renderJson(s);
      expect(text.endsWith("\n")).toBe(true);
      const back = JSON.parse(text) as unknown;
      // Terminal escapes never leave raw: JSON escapes every control character.
      expect(/[\u0000-\u001f]/.test(text.replace(/\n/g, ""))).toBe(false);
      if (keptExactly(s)) {
        exact++;
        expect(back).toEqual(JSON.parse(JSON.stringify(s)));
      }
    });
    // The round-trip property must have tested something.
    expect(exact).toBeGreaterThan(1000);
  });
});

describe("the health server with hostile requests (fuzz)", () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    server = await startHealthServer(
      "127.0.0.1",
      0,
      { ready: () => ({ ready: false, reason: "phase \u001b[31mstarting\n" }), status: () => ({ peers: [] }), drift: async () => [] },
      new AgentMetrics(),
    );
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => {
    server.close();
  });

  /** Sends a raw request line (whatever bytes it holds) and resolves with the status code, or 0 if none came. */
  function raw(m: string, t: string): Promise<number> {
    return new Promise((resolve) => {
      const sock = connect(port, "127.0.0.1");
      let got = "";
      sock.on("data", (d) => (got += d.toString("latin1")));
      sock.on("error", () => undefined);
      sock.on("close", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0)));
      sock.end(`${m} ${t} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    });
  }

  it("answers every request with a known status or closes it, never hangs (fewer cases: each is a TCP request)", async () => {
    // 1,000 real requests keep the unit tier under ~10 s; the routing itself is fuzzed 10,000 times above.
    await fuzzAsync(
      "daemon http server requests",
      fc.tuple(method, target),
      async ([m, t]) => {
        const code = await raw(m, t);
        // 0: Node's parser refused the bytes with a bare close; 400 or 431 (a request line over 16 KiB): refused
        // before weftd sees it. Never a crash or a hang.
        expect([0, 200, 400, 403, 404, 405, 431, 503].includes(code), `status ${code}`).toBe(true);
      },
      { numRuns: 1_000 },
    );
    // The server is still healthy afterwards.
    const ok = await new Promise<number>((resolve) => request({ port, host: "127.0.0.1", path: "/healthz" }, (r) => (r.resume(), resolve(r.statusCode ?? 0))).end());
    expect(ok).toBe(200);
  }, 60_000);
});
