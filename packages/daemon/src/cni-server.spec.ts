import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeCniRequest } from "@weft/cni";
import type { KernelPort } from "@weft/kernel";
import { afterAll, describe, expect, it } from "vitest";
import { cniSocketPath, startCniServer } from "./cni-server.js";
import { createLogger } from "./log.js";
import { AgentMetrics } from "./metrics.js";

const root = mkdtempSync(join(tmpdir(), "weftd-cni-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const noKernel = new Proxy({} as KernelPort, { get: (_t, p) => () => Promise.reject(new Error(`kernel.${String(p)} not expected`)) });
const deps = { runner: { run: () => Promise.reject(new Error("no processes")), spawn: () => { throw new Error("no processes"); } }, host: noKernel, container: () => noKernel };

function cni(socketPath: string, env: Record<string, string>, stdin: string): Promise<{ exit: string; body: string }> {
  return new Promise((resolve, reject) => {
    const body = encodeCniRequest({ env, stdin });
    const req = request({ socketPath, path: "/cni/v1", method: "POST", headers: { "content-length": body.length } }, (res) => {
      let text = "";
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ exit: String(res.headers["weft-cni-exit-code"]), body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("weftd's CNI server", () => {
  it("serves the shim on --cni-socket (0600), records ADD/DEL latency and errors by CNI code, and goes with the signal", async () => {
    const dir = join(root, "run");
    mkdirSync(dir, { mode: 0o755 });
    const socketPath = join(dir, "cni.sock");
    const metrics = new AgentMetrics();
    const ac = new AbortController();
    const server = await startCniServer({ socketPath, deps, metrics, logger: createLogger("error"), signal: ac.signal });
    expect(server).toBeDefined();
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);

    const conf = JSON.stringify({ cniVersion: "1.1.0", name: "cbr0", type: "weft", subnetFile: join(dir, "none.env"), ipam: { dataDir: join(dir, "ipam") } });
    expect(await cni(socketPath, { CNI_COMMAND: "DEL", CNI_CONTAINERID: "c1", CNI_IFNAME: "eth0" }, conf)).toEqual({ exit: "0", body: "" });
    const add = await cni(socketPath, { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c1", CNI_IFNAME: "eth0", CNI_NETNS: "/run/netns/none" }, conf);
    expect(add.exit).toBe("1");
    expect(JSON.parse(add.body)).toMatchObject({ code: 11, msg: expect.stringContaining("none.env") });

    const text = await metrics.registry.metrics();
    expect(text).toMatch(/weft_cni_request_duration_seconds_count\{command="DEL"\} 1/);
    expect(text).toMatch(/weft_cni_request_duration_seconds_count\{command="ADD"\} 1/);
    expect(text).toMatch(/weft_cni_errors_total\{command="ADD",code="11"\} 1/);
    expect(text).not.toMatch(/weft_cni_errors_total\{command="DEL"/);

    ac.abort();
    await new Promise((r) => setTimeout(r, 100));
    expect(existsSync(socketPath)).toBe(false);
  });

  it("defaults to cni.sock next to --subnet-file, is off with \"off\", and a socket it cannot serve is logged, not fatal", async () => {
    expect(cniSocketPath({ "cni-socket": "", "subnet-file": "/run/weft/subnet.env" })).toBe("/run/weft/cni.sock");
    expect(cniSocketPath({ "cni-socket": "", "subnet-file": "/tmp/lab/n1/subnet.env" })).toBe("/tmp/lab/n1/cni.sock");
    expect(cniSocketPath({ "cni-socket": "/run/x/c.sock", "subnet-file": "/run/weft/subnet.env" })).toBe("/run/x/c.sock");
    expect(cniSocketPath({ "cni-socket": "off", "subnet-file": "/run/weft/subnet.env" })).toBeUndefined();
    const logged: string[] = [];
    const logger = { ...createLogger("error"), error: (m: string) => void logged.push(m), info: () => undefined, warn: () => undefined, debug: () => undefined, child: () => logger };
    expect(await startCniServer({ socketPath: undefined, deps, metrics: new AgentMetrics(), logger })).toBeUndefined();
    const open = join(root, "open");
    mkdirSync(open, { mode: 0o777 });
    chmodSync(open, 0o777);
    expect(await startCniServer({ socketPath: join(open, "cni.sock"), deps, metrics: new AgentMetrics(), logger })).toBeUndefined();
    expect(logged).toEqual([expect.stringMatching(/^not serving the weft CNI shim: --cni-socket: directory .*open has mode 777.*chmod go-w .*; until then the shim runs the Node plugin/)]);
    expect(existsSync(join(open, "cni.sock"))).toBe(false);
  });
});
