import { mkdirSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeKernel } from "@weft/kernel-testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "./cli.js";
import { NOT_READY_STATUS, READY_STATUS } from "./fixtures.js";
import type { WeftStatus } from "./status.js";

/** A stand-in for weftd's health server: fixed /status JSON and the matching /readyz. */
async function fakeWeftd(status: WeftStatus | string): Promise<{ server: Server; endpoint: string }> {
  const server = createServer((req, res) => {
    if (typeof status === "string") res.writeHead(200, { "Content-Type": "text/html" }).end(status);
    else if (req.url === "/status") res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(status));
    else if (req.url === "/readyz") res.writeHead(status.ready ? 200 : 503).end(status.ready ? "weftd is ready\n" : `weftd is not ready: ${status.reason}\n`);
    else res.writeHead(404).end("not found\n");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** A port nothing listens on: bind one, note it, close it. */
async function deadEndpoint(): Promise<string> {
  const { server, endpoint } = await fakeWeftd(READY_STATUS);
  await new Promise((r) => server.close(r));
  return endpoint;
}

async function run(argv: string[], kernel = new FakeKernel(), env: Record<string, string> = {}) {
  let stdout = "";
  let stderr = "";
  const code = await runCli(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), env, kernel: () => kernel, version: "0.1.0" });
  return { code, stdout, stderr };
}

const servers: Server[] = [];
let ready: string;
let notReady: string;
let html: string;
beforeAll(async () => {
  for (const [s, set] of [
    [READY_STATUS, (e: string) => (ready = e)],
    [NOT_READY_STATUS, (e: string) => (notReady = e)],
    ["<html>hello</html>", (e: string) => (html = e)],
  ] as const) {
    const w = await fakeWeftd(s);
    servers.push(w.server);
    set(w.endpoint);
  }
});
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

describe("weftctl status", () => {
  it("prints the summary of a ready weftd and exits 0", async () => {
    const r = await run(["status", "--endpoint", ready]);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toContain(`weftd at ${ready}\n  phase:      running\n  ready:      yes\n`);
    expect(r.stdout).toContain("  peers:      3 (2 programmed, 1 unreachable)\n");
  });

  it("exits 1 and says why when weftd is not ready; --json carries the same data", async () => {
    const r = await run(["status", `--endpoint=${notReady}`]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("  ready:      no: 1 peers failed to program\n");
    const j = await run(["status", "--endpoint", notReady, "--json"]);
    expect(JSON.parse(j.stdout)).toEqual({ endpoint: notReady, status: NOT_READY_STATUS, readyz: { ready: false, reason: "1 peers failed to program" } });
  });

  it("reads the endpoint from WEFTCTL_ENDPOINT", async () => {
    expect((await run(["status"], undefined, { WEFTCTL_ENDPOINT: ready })).code).toBe(0);
  });

  it("endpoint down: one line naming the endpoint, saying to check weftd and --healthz-port, exit 1", async () => {
    const dead = await deadEndpoint();
    const r = await run(["status", "--endpoint", dead]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr.split("\n")).toHaveLength(2);
    expect(r.stderr).toMatch(new RegExp(`^weftctl status: cannot reach weftd at ${dead} \\(.*ECONNREFUSED.*\\): check that weftd is running on this node with --healthz-port set`));
  });

  it("something that is not weftd: one line, exit 1", async () => {
    const r = await run(["status", "--endpoint", html]);
    expect(r).toMatchObject({ code: 1, stdout: "" });
    expect(r.stderr).toBe(`weftctl status: weftd at ${html} answered /status with something that is not JSON: is --endpoint pointing at weftd's --healthz-port?\n`);
  });
});

describe("weftctl peers", () => {
  it("prints the table, and JSON with --json", async () => {
    const r = await run(["peers", "--endpoint", ready]);
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n")[0]).toBe("SUBNET         PUBLIC IP   STATE        REASON");
    expect(r.stdout).toContain("198.19.4.0-24  198.18.0.4  unreachable  no route to 198.18.0.4 on the underlay\n");
    const j = await run(["peers", "--endpoint", ready, "--json"]);
    expect((JSON.parse(j.stdout) as { peer: string }[]).map((p) => p.peer)).toEqual(["198.19.4.0-24", "198.19.2.0-24", "198.19.3.0-24"]);
  });

  it("endpoint down: one line, exit 1", async () => {
    const r = await run(["peers", "--endpoint", await deadEndpoint()]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^weftctl peers: cannot reach weftd at .*--healthz-port.*\n$/);
  });
});

describe("weftctl doctor", () => {
  it("runs the checks against the kernel it is given and weftd, exit 1 on a FAIL, JSON with --json", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weftctl-cli-"));
    try {
      const bin = join(dir, "bin");
      const conf = join(dir, "net.d");
      mkdirSync(bin);
      mkdirSync(conf);
      writeFileSync(join(bin, "weft"), "#!/bin/true\n");
      chmodSync(join(bin, "weft"), 0o755);
      writeFileSync(join(conf, "10-weft.conflist"), JSON.stringify({ name: "cbr0", plugins: [{ type: "weft" }] }));
      writeFileSync(join(dir, "subnet.env"), "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n");
      const args = ["doctor", "--subnet-file", join(dir, "subnet.env"), "--cni-bin-dir", bin, "--cni-conf-dir", conf, "--cni-socket", join(dir, "cni.sock"), "--endpoint", ready];
      const kernel = new FakeKernel({ sysctls: { "net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1" } });
      const good = await run(args, kernel);
      expect(good.stdout).toContain("OK    weftd");
      // The fake node has no weft* device: a WARN, not a FAIL.
      expect(good.stdout).toMatch(/^WARN  devices/m);
      // weftd serves no CNI socket there: the shim would run the fallback (a WARN).
      expect(good.stdout).toContain(`WARN  cni socket           ${join(dir, "cni.sock")} (--cni-socket) does not exist`);
      expect(good.code).toBe(0);

      await kernel.setSysctl("net.ipv4.ip_forward", "0");
      const bad = await run([...args, "--json"], kernel);
      expect(bad.code).toBe(1);
      const j = JSON.parse(bad.stdout) as { ok: boolean; checks: { name: string; level: string }[] };
      expect(j.ok).toBe(false);
      expect(j.checks.find((c) => c.name === "ip_forward")?.level).toBe("fail");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("usage", () => {
  it("prints help for weftctl and for each command", async () => {
    const top = await run(["--help"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/^Usage: weftctl <command>/);
    for (const c of ["status", "peers", "doctor"]) expect(top.stdout).toContain(`  ${c}`);
    const d = await run(["doctor", "--help"]);
    expect(d.code).toBe(0);
    expect(d.stdout).toContain("--subnet-file <file>");
    expect(d.stdout).toContain("(default /run/weft/subnet.env)");
    expect(d.stdout).toContain("--cni-socket <path>");
    expect((await run(["help", "peers"])).stdout).toMatch(/^Usage: weftctl peers/);
    expect((await run(["--version"])).stdout).toBe("weftctl 0.1.0\n");
  });

  it("rejects bad input with one line and exit 2", async () => {
    expect(await run([])).toMatchObject({ code: 2 });
    expect(await run(["stauts"])).toMatchObject({ code: 2, stderr: 'weftctl: unknown command "stauts": use one of status, peers, drift, doctor (weftctl --help)\n' });
    expect(await run(["status", "--endpiont", "x"])).toMatchObject({ code: 2, stderr: "weftctl status: unknown flag --endpiont; see weftctl status --help\n" });
    expect(await run(["peers", "extra"])).toMatchObject({ code: 2, stderr: 'weftctl peers: unexpected argument "extra"; see weftctl peers --help\n' });
    expect(await run(["status", "--endpoint"])).toMatchObject({ code: 2, stderr: "weftctl status: flag --endpoint needs a value\n" });
    const r = await run(["status", "--endpoint", "https://x:1"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("weftd's health server speaks plain http");
  });
});
