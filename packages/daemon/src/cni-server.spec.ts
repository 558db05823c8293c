import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requestCniSocket } from "@weft/cni";
import type { KernelPort } from "@weft/kernel";
import { afterAll, describe, expect, it } from "vitest";
import { cniSocketPath, startCniServer } from "./cni-server.js";
import { createLogger } from "./log.js";
import { AgentMetrics } from "./metrics.js";

const root = mkdtempSync(join(tmpdir(), "weftd-cni-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const noKernel = new Proxy({} as KernelPort, { get: (_t, p) => () => Promise.reject(new Error(`kernel.${String(p)} not expected`)) });
const deps = { runner: { run: () => Promise.reject(new Error("no processes")), spawn: () => { throw new Error("no processes"); } }, host: noKernel, container: () => noKernel };

/** Speaks for the shim, through the client weftctl doctor uses too. */
async function cni(socketPath: string, env: Record<string, string>, stdin: string): Promise<{ exit: string; body: string }> {
  const a = await requestCniSocket(socketPath, { env, stdin });
  return { exit: String(a.exitCode), body: a.body };
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

  it("on SIGTERM stops accepting at once, lets an ADD in flight complete, then removes the socket", async () => {
    const dir = join(root, "drain");
    mkdirSync(join(dir, "bin"), { recursive: true, mode: 0o755 });
    const socketPath = join(dir, "cni.sock");
    const subnetFile = join(dir, "subnet.env");
    writeFileSync(subnetFile, "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
    // Delegate mode, so the whole ADD runs in process: the delegate must be an executable in CNI_PATH, and the
    // test's runner plays it, holding the ADD until the test lets it go.
    writeFileSync(join(dir, "bin", "slowbr"), "#!/bin/false\n", { mode: 0o755 });
    let entered!: () => void;
    const inDelegate = new Promise<void>((r) => (entered = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const result = '{"cniVersion":"1.0.0","ips":[{"address":"198.19.1.2/24"}]}';
    const runner = {
      run: async () => {
        entered();
        await gate;
        return { exitCode: 0, stdout: result, stderr: "" };
      },
      spawn: () => {
        throw new Error("no processes");
      },
    };
    const metrics = new AgentMetrics();
    const ac = new AbortController();
    const server = await startCniServer({ socketPath, deps: { runner, host: noKernel, container: () => noKernel }, metrics, logger: createLogger("error"), signal: ac.signal });
    const conf = JSON.stringify({ cniVersion: "1.0.0", name: "cbr0", type: "weft", subnetFile, dataDir: join(dir, "data"), delegate: { type: "slowbr" } });
    const add = cni(socketPath, { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c1", CNI_IFNAME: "eth0", CNI_NETNS: "/run/netns/c1", CNI_PATH: join(dir, "bin") }, conf);
    await inDelegate;

    ac.abort(); // weftd's SIGTERM handler
    const closed = server!.close(); // what weftd's main awaits in its finally before it exits
    let done = false;
    void closed.then(() => (done = true));
    await new Promise((r) => setTimeout(r, 150));
    // New requests find no socket (their shims run the fallback); the ADD in flight holds the exit.
    expect(existsSync(socketPath)).toBe(false);
    await expect(cni(socketPath, { CNI_COMMAND: "VERSION" }, "{}")).rejects.toMatchObject({ code: "ENOENT" });
    expect(done).toBe(false);

    release();
    expect(await add).toEqual({ exit: "0", body: `${result}\n` });
    await closed;
    expect(existsSync(socketPath)).toBe(false);
    expect(await metrics.registry.metrics()).toMatch(/weft_cni_request_duration_seconds_count\{command="ADD"\} 1/);
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
