import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { KernelPort } from "@weft/kernel";
import { afterEach, describe, expect, it } from "vitest";
import { runCli } from "./cli.js";
import { inSync, renderDrift } from "./drift.js";

const drifted = [
  { kind: "links", add: [], update: [{ key: "weft.1", reason: "mtu 1400 != 1450" }], remove: [], refused: [] },
  { kind: "routes", add: ["v4 254 198.19.2.0/24 0"], update: [], remove: ["v4 254 198.19.9.0/24 0"], refused: [] },
];
const clean = [{ kind: "links", add: [], update: [], remove: [], refused: [] }];

describe("weftctl drift", () => {
  let server: Server | undefined;
  afterEach(() => server?.close());
  const serve = async (status: number, body: string) => {
    server = createServer((_req, res) => res.writeHead(status).end(body));
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  };
  const run = async (endpoint: string, extra: string[] = []) => {
    let out = "";
    let err = "";
    const code = await runCli(["drift", "--endpoint", endpoint, ...extra], {
      stdout: (t) => (out += t),
      stderr: (t) => (err += t),
      env: {},
      kernel: () => ({}) as KernelPort,
    });
    return { code, out, err };
  };

  it("lists what the next reconcile would change, one line each, and exits 1", async () => {
    expect(inSync(drifted)).toBe(false);
    const r = await run(await serve(200, JSON.stringify(drifted)));
    expect(r.code).toBe(1);
    expect(r.out).toBe(
      "drift: the next reconcile (within --resync-interval) would make 3 change(s):\n" +
        "  links       differs   weft.1: mtu 1400 != 1450\n" +
        "  routes      missing   v4 254 198.19.2.0/24 0\n" +
        "  routes      stale     v4 254 198.19.9.0/24 0\n",
    );
  });

  it("says in sync and exits 0 when nothing would change; --json passes the plan through", async () => {
    expect(renderDrift(clean)).toMatch(/^in sync/);
    const endpoint = await serve(200, JSON.stringify(clean));
    expect((await run(endpoint)).code).toBe(0);
    expect(JSON.parse((await run(endpoint, ["--json"])).out)).toEqual(clean);
  });

  it("says what is wrong when the endpoint is not a weftd that knows /drift", async () => {
    const r = await run(await serve(404, "not found"));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/\/drift: not found: this weftd is older than weftctl drift/);
  });
});
