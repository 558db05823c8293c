/**
 * weftctl against a hostile or huge weftd (issue 15 #14): what arrives over the network reaches the operator's
 * terminal with every control character escaped (C0, DEL, C1, bidi overrides), in every command and in --json,
 * and 200,000 peers print without overflowing the stack.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { FakeKernel } from "@weft/kernel-testing";
import { afterEach, describe, expect, it } from "vitest";
import { runCli } from "./cli.js";
import type { WeftStatus } from "./status.js";

/** Anything a terminal may act on: C0 but newline, DEL, C1, and the bidi controls (ALM, LRM, RLM, embeddings, overrides, isolates). */
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

const ESC_TITLE = "\u001b]0;owned\u0007";
const CLEAR = "\u001b[2J\u001b[H";
const CSI8 = "\u009b31m";
const RLO = "\u202egnp.exe";

const HOSTILE: WeftStatus = {
  phase: `running${ESC_TITLE}`,
  ready: false,
  reason: `peers failed${CLEAR}`,
  subnet: `198.19.1.0/24${CSI8}`,
  publicIP: "198.18.0.1\u007f",
  backendType: `vxlan${RLO}`,
  backend: { datapath: "kernel\u001b[5m", reason: "auto\r\nINJECTED LINE", gauges: { "sas\u001b[1m": 1 } },
  mtu: 1450,
  peers: [
    { peer: `198.19.2.0-24${CLEAR}`, publicIP: "198.18.0.2\u0000", state: `failed\u2066`, reason: `route add: ${ESC_TITLE}\nsecond line` },
    { peer: "198.19.3.0-24", publicIP: "198.18.0.3", state: "programmed" },
  ],
};

const HOSTILE_DRIFT = [
  { kind: `routes${CSI8}`, add: [`v4 254 198.19.2.0/24${ESC_TITLE}`], update: [{ key: "weft.1\u001b[8m", reason: `mtu${RLO}` }], remove: ["x\u0085y"], refused: [{ key: "k\u0007", reason: "r\u001b[31m" }] },
];

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** weftd's health server, serving `status` (JSON text) on /status, /readyz and `drift` on /drift. */
async function fakeWeftd(statusText: string, ready: boolean, readyzBody: string, drift = "[]"): Promise<string> {
  const server = createServer((req, res) => {
    if (req.url === "/status") res.writeHead(200, { "Content-Type": "application/json" }).end(statusText);
    else if (req.url === "/readyz") res.writeHead(ready ? 200 : 503).end(readyzBody);
    else if (req.url === "/drift") res.writeHead(200, { "Content-Type": "application/json" }).end(drift);
    else res.writeHead(404).end(`no ${ESC_TITLE}\n`);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function run(argv: string[]) {
  let stdout = "";
  let stderr = "";
  const kernel = new FakeKernel({ sysctls: { "net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1" } });
  // A device name the real kernel allows (only '/', ':' and whitespace are refused there) but the fake does not.
  const listLinks = kernel.listLinks.bind(kernel);
  kernel.listLinks = async () => [...(await listLinks()), { name: `weft.1${ESC_TITLE}`, kind: "dummy", index: 99, up: true, mtu: 1450 } as never];
  const code = await runCli(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), env: {}, kernel: () => kernel, version: "0.1.0" });
  return { code, stdout, stderr };
}

describe("weftctl escapes what weftd sends before it reaches the terminal", () => {
  it("status, peers, drift and doctor print no control character from /status, /readyz or /drift; they show them escaped", async () => {
    const ep = await fakeWeftd(JSON.stringify(HOSTILE), false, `weftd is not ready: ${CLEAR}boom\n`, JSON.stringify(HOSTILE_DRIFT));
    const outputs = [
      await run(["status", "--endpoint", ep]),
      await run(["peers", "--endpoint", ep]),
      await run(["drift", "--endpoint", ep]),
      await run(["doctor", "--endpoint", ep, "--subnet-file", "/nonexistent/weft/subnet.env", "--cni-bin-dir", "/nonexistent", "--cni-conf-dir", "/nonexistent", "--cni-socket", "/nonexistent/cni.sock"]),
    ];
    for (const r of outputs) {
      expect(r.stdout + r.stderr).not.toMatch(CONTROL);
    }
    const [status, peers, drift, doctor] = outputs;
    expect(status!.stdout).toContain("phase:      running\\x1b]0;owned\\x07\n");
    expect(status!.stdout).toContain("backend:    vxlan\\u{202e}gnp.exe\n");
    expect(status!.stdout).toContain("public IP:  198.18.0.1\\x7f\n");
    expect(status!.stdout).toContain("(auto\\r\\nINJECTED LINE)");
    expect(peers!.stdout).toContain("route add: \\x1b]0;owned\\x07\\nsecond line\n");
    // The table stays one line per peer: a newline inside a field is escaped too.
    expect(peers!.stdout.trimEnd().split("\n")).toHaveLength(3);
    expect(drift!.stdout).toContain("v4 254 198.19.2.0/24\\x1b]0;owned\\x07");
    expect(drift!.stdout).toContain("x\\x85y");
    expect(doctor!.stdout).toContain("weft.1\\x1b]0;owned\\x07");
    expect(doctor!.stdout).toContain("\\x1b[2J");
  });

  it("--json keeps the data exact (it parses back to what weftd sent) but escapes DEL, C1 and bidi controls too", async () => {
    const ep = await fakeWeftd(JSON.stringify(HOSTILE), false, "weftd is not ready: x\n", JSON.stringify(HOSTILE_DRIFT));
    const status = await run(["status", "--endpoint", ep, "--json"]);
    const peers = await run(["peers", "--endpoint", ep, "--json"]);
    const drift = await run(["drift", "--endpoint", ep, "--json"]);
    for (const r of [status, peers, drift]) expect(r.stdout).not.toMatch(CONTROL);
    expect((JSON.parse(status.stdout) as { status: WeftStatus }).status).toEqual(HOSTILE);
    expect(JSON.parse(peers.stdout)).toEqual([HOSTILE.peers[0], HOSTILE.peers[1]]);
    expect(JSON.parse(drift.stdout)).toEqual(HOSTILE_DRIFT);
  });

  it("error lines carry no control characters either, and a huge error body is cut", async () => {
    const server = createServer((_req, res) => res.writeHead(500).end(`${ESC_TITLE}${"A".repeat(1_000_000)}\n`));
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const ep = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const r = await run(["drift", "--endpoint", ep]);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(CONTROL);
    expect(r.stderr.split("\n")).toHaveLength(2);
    expect(r.stderr.length).toBeLessThan(400);
    expect(r.stderr).toContain("\\x1b]0;owned\\x07");
  });
});

describe("weftctl with 200,000 peers", () => {
  const N = 200_000;
  const many: WeftStatus = {
    phase: "running",
    ready: true,
    reason: "",
    subnet: "198.19.0.0/30",
    backendType: "vxlan",
    mtu: 1450,
    peers: Array.from({ length: N }, (_, i) => ({
      peer: `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}-32`,
      publicIP: `198.18.${(i >> 8) & 255}.${i & 255}`,
      state: i % 1000 === 0 ? "failed" : "programmed",
      ...(i % 1000 === 0 ? { reason: "route add: RTNETLINK answers: Invalid argument" } : {}),
    })),
  };

  it("peers prints one line per peer (not-programmed first) and status counts them, without overflowing the stack", async () => {
    const ep = await fakeWeftd(JSON.stringify(many), true, "weftd is ready\n");
    const r = await run(["peers", "--endpoint", ep]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(N + 1);
    expect(lines[1]).toMatch(/^198\.18\.0\.0-32 +198\.18\.0\.0 +failed +route add/);
    expect(lines[N / 1000 + 1]).toMatch(/programmed$/);
    const s = await run(["status", "--endpoint", ep]);
    expect({ code: s.code, stderr: s.stderr }).toEqual({ code: 0, stderr: "" });
    expect(s.stdout).toContain(`  peers:      ${N} (${N - N / 1000} programmed, ${N / 1000} failed)\n`);
    const j = await run(["peers", "--endpoint", ep, "--json"]);
    expect((JSON.parse(j.stdout) as unknown[]).length).toBe(N);
  }, 120_000);
});
