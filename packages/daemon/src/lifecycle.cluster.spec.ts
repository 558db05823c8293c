/**
 * weftd's lifecycle on a real cluster (issue 15, #1): SIGTERM at any point of startup stops the agent like a
 * normal stop (exit 0, nothing left running, the datapath left for the next agent, which adopts it); and the
 * HTTP endpoints' exposure (#14): /status and /drift answer loopback clients only, whatever --healthz-ip is.
 */
import { existsSync, openSync, readSync, closeSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { HEALTH_PORT, WeftCluster, type WeftNode, labRunner } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "main.js");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Generous: a clean stop takes well under a second; this only detects a hang. */
const STOP_BOUND_MS = 10_000;

/** Reads what the log file gained since `from` (bytes). */
function logSince(file: string, from: number): string {
  if (!existsSync(file)) return "";
  const size = statSync(file).size;
  if (size <= from) return "";
  const fd = openSync(file, "r");
  try {
    const buf = Buffer.alloc(size - from);
    readSync(fd, buf, 0, buf.length, from);
    return buf.toString("utf8");
  } finally {
    closeSync(fd);
  }
}

const logSize = (file: string) => (existsSync(file) ? statSync(file).size : 0);

/** Resolves with the exit, or with "hung" after `ms`. */
async function exitWithin(p: { exited: Promise<{ code: number | null; signal: string | null }> }, ms: number) {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<"hung">((r) => (t = setTimeout(() => r("hung"), ms)));
  try {
    return await Promise.race([p.exited, timeout]);
  } finally {
    clearTimeout(t);
  }
}

describeReal(
  "weftd lifecycle (vxlan, 2 nodes, real etcd)",
  () => {
    let c: WeftCluster;
    beforeAll(async () => {
      c = await WeftCluster.start({ nodes: 2, weftd, backend: { Type: "vxlan" }, resyncInterval: 2, pods: false });
    }, 120_000);
    afterAll(async () => {
      await c?.destroy();
    });

    /** Restarts `n`'s agent and sends it SIGTERM as soon as `line` appears in its log; resolves with the exit. */
    async function termAt(n: WeftNode, line: string, opts: { after?: number; again?: number } = {}) {
      await c.stopAgent(n, "SIGTERM");
      const from = logSize(n.logFile);
      const proc = await c.startAgent(n);
      const deadline = Date.now() + 30_000;
      while (!logSince(n.logFile, from).includes(line)) {
        if (Date.now() > deadline) throw new Error(`no "${line}" in 30 s; log:\n${logSince(n.logFile, from).slice(-3000)}`);
        await sleep(2);
      }
      if (opts.after) await sleep(opts.after);
      const killedAt = Date.now();
      proc.kill("SIGTERM");
      if (opts.again !== undefined) {
        await sleep(opts.again);
        proc.kill("SIGTERM");
      }
      const exit = await exitWithin(proc, STOP_BOUND_MS);
      console.log(`SIGTERM ${opts.after ?? 0} ms after ${line}: ${exit === "hung" ? "still running" : `exited in ${Date.now() - killedAt} ms`}`);
      if (exit === "hung") {
        // Leave nothing behind: the hung agent is ours (by PID).
        proc.kill("SIGKILL");
        await proc.exited;
      }
      if (n.proc === proc) n.proc = undefined;
      return { exit, log: logSince(n.logFile, from) };
    }

    /** What is left in the node's namespace: processes (weftd, its ip coprocesses) and the CNI socket. */
    async function leftovers(n: WeftNode): Promise<{ pids: string; socket: boolean }> {
      const r = await labRunner.run("ip", ["netns", "pids", n.lab.netns.name], { reject: false });
      return { pids: r.stdout.trim(), socket: existsSync(join(dirname(n.subnetFile), "cni.sock")) };
    }

    // Each phase's line, and the window after "vxlan devices ready" (publishing, subnet.env, traffic rules, the
    // first reconcile) at several delays: the probe found the agent carrying on there.
    const points: [string, number][] = [
      ['"starting"', 0],
      ["configuration valid", 0],
      ["lease acquired", 0],
      ["vxlan devices ready", 0],
      ["vxlan devices ready", 50],
      ["vxlan devices ready", 100],
      ["datapath programmed", 0],
    ];
    for (const [line, after] of points) {
      it(`SIGTERM ${after} ms after ${line} is logged: exits 0 within the bound, leaves nothing running, and the next agent adopts`, async () => {
        const n = c.nodes[0]!;
        const { exit, log } = await termAt(n, line, { after });
        expect(exit, `weftd still running ${STOP_BOUND_MS} ms after SIGTERM; log:\n${log.slice(-3000)}`).toEqual({ code: 0, signal: null });
        expect(log).toContain("received SIGTERM");
        expect(log).toContain('"stopped"');
        expect(await leftovers(n)).toEqual({ pids: "", socket: false });
        await c.startAgent(n);
        await c.waitReady(n);
        // One lease per node: the interrupted agent's lease is the one its successor adopted.
        expect(Object.keys(await c.leases())).toHaveLength(2);
        expect((await c.health(c.nodes[1]!, "/readyz")).ok).toBe(true);
      }, 90_000);
    }

    it("a second SIGTERM during startup never leaves the agent running", async () => {
      const n = c.nodes[0]!;
      const { exit, log } = await termAt(n, "vxlan devices ready", { after: 50, again: 300 });
      expect(exit, `weftd still running after two SIGTERMs; log:\n${log.slice(-3000)}`).not.toBe("hung");
      expect(await leftovers(n)).toEqual({ pids: "", socket: false });
      await c.startAgent(n);
      await c.waitReady(n);
    }, 90_000);

    it("answers a burst of 200 concurrent /drift requests (shared kernel reads) and stays healthy meanwhile", async () => {
      const n = c.nodes[0]!;
      await c.waitReady(n);
      const url = `http://127.0.0.1:${HEALTH_PORT}`;
      const started = Date.now();
      const burst = n.lab.netns.run(
        "curl",
        ["-s", "-Z", "--parallel-immediate", "--parallel-max", "200", "-m", "60", "-w", "%{http_code}\\n", ...Array.from({ length: 200 }, () => ["-o", "/dev/null", `${url}/drift`]).flat()],
        { reject: false },
      );
      await sleep(50);
      const health = await c.health(n, "/healthz");
      const r = await burst;
      const took = Date.now() - started;
      const codes = r.stdout.trim().split("\n");
      expect(codes).toHaveLength(200);
      expect(codes.filter((x) => x !== "200"), r.stderr).toEqual([]);
      expect(health.ok).toBe(true);
      // A bound that detects a hang or one kernel read per request (the probe measured 18 s), not a speed target.
      expect(took).toBeLessThan(15_000);
      console.log(`200 concurrent /drift requests answered in ${took} ms`);
    }, 90_000);

    it("answers /status and /drift only to loopback clients, /healthz /readyz /metrics to anyone (--healthz-ip 0.0.0.0)", async () => {
      const [n1, n2] = c.nodes as [WeftNode, WeftNode];
      await c.stopAgent(n1, "SIGTERM");
      await c.startAgent(n1, ["--healthz-ip", "0.0.0.0"]);
      await c.waitReady(n1);
      const from = async (ns: WeftNode, host: string, path: string) => {
        const r = await ns.lab.netns.run("curl", ["-s", "-m", "5", "-w", "\n%{http_code}", `http://${host}:${HEALTH_PORT}${path}`], { reject: false });
        const lines = r.stdout.trimEnd().split("\n");
        return { code: lines.pop(), body: lines.join("\n") };
      };
      const addr = n1.lab.underlayIp;
      // From node 2 (another host on the underlay): the health endpoints, never the node's state.
      for (const p of ["/healthz", "/readyz", "/metrics"]) expect((await from(n2, addr, p)).code, p).toBe("200");
      for (const p of ["/status", "/drift"]) {
        const r = await from(n2, addr, p);
        expect(r.code, p).toBe("403");
        expect(r.body).toMatch(/weftctl/);
        expect(r.body).not.toMatch(/198\.19\./);
      }
      // On the node itself (loopback): all of them.
      for (const p of ["/status", "/drift", "/healthz"]) expect((await from(n1, "127.0.0.1", p)).code, p).toBe("200");
      await c.stopAgent(n1, "SIGTERM");
      await c.startAgent(n1);
      await c.waitReady(n1);
    }, 90_000);
  },
  { tools: ["etcd", "curl"] },
);
