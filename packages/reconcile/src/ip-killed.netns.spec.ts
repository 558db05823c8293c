/**
 * Fault (issue 15): the `ip` process killed under the agent in the middle of a pass.
 *
 * weftd's agent path runs no long-lived `ip`: its LinuxKernel (over ExecaRunner) starts one `ip -force -batch -`
 * per run of ops in a pass (the warm coprocess, IpCoprocessRunner, serves only weftd's CNI server). So the fault
 * is that per-pass batch dying: a runner wrapper starts the batch itself through the ProcessRunner port (so the
 * test learns the PID from the port's ChildHandle), feeds it N lines through a FIFO, waits until `ip` has
 * answered them, and SIGKILLs it by that PID — a real `ip` killed mid-batch, its first lines applied, the rest
 * never read. The pass fails (a broken transport, not an op failure); the next pass — the agent's next flush or
 * its resync — must leave the kernel in exactly the declared state: every object present once, nothing retracted
 * left behind.
 */
import "reflect-metadata";
import { mkdtempSync, rmSync } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type KernelObjects, LOGGER, MemoryLogger, WEFT_ROUTE_PROTOCOL } from "@weft/core";
import { ExecaRunner, KERNEL, LinuxKernel, type ProcessRunner, type RunOptions, type RunResult } from "@weft/kernel";
import { type TestNetns, createNetns } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { container } from "tsyringe";
import { afterEach, beforeEach, expect, it } from "vitest";
import { DatapathEngine, registerDatapath } from "./datapath.js";

const N = 1000;
const hex = (n: number) => n.toString(16).padStart(2, "0");
const mac = (i: number) => `0e:57:01:${hex((i >> 16) & 255)}:${hex((i >> 8) & 255)}:${hex(i & 255)}`;
const subnet = (i: number) => {
  const v = ((198 << 24) | (19 << 16)) + i * 8;
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
};
/** A vxlan peer: permanent neighbour, self FDB entry, onlink route (what the vxlan backend declares). */
const peer = (i: number): KernelObjects => ({
  neighbours: [{ dev: "weft.1", ip: subnet(i), lladdr: mac(i), state: "permanent" }],
  fdb: [{ dev: "weft.1", mac: mac(i), dst: `198.18.${16 + (i >> 8)}.${i & 255}`, self: true, permanent: true }],
  routes: [{ family: "v4", dst: `${subnet(i)}/29`, gateway: subnet(i), dev: "weft.1", onlink: true }],
});

/**
 * A ProcessRunner that passes everything to `base`, except the next `ip ... -batch -` run after arm(n): that one it
 * runs as `ip ... -batch <fifo>` through base.spawn, writes the first `n` input lines, waits for `ip` to have
 * answered them, and kills it with SIGKILL by the PID the port gave. The result is what the agent's runner reports
 * for a killed process (exit code 128, what ip printed before it died).
 */
class KillingRunner implements ProcessRunner {
  private armed: number | undefined;
  /** PIDs killed so far. */
  readonly killed: number[] = [];

  constructor(
    private readonly base: ExecaRunner,
    private readonly dir: string,
  ) {}

  arm(lines: number): void {
    this.armed = lines;
  }

  spawn(...a: Parameters<ProcessRunner["spawn"]>) {
    return this.base.spawn(...a);
  }

  async run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const batch = file === "ip" && args.at(-1) === "-" && args.at(-2) === "-batch" && options.input !== undefined;
    if (!batch || this.armed === undefined) return this.base.run(file, args, options);
    const n = this.armed;
    this.armed = undefined;
    const fifo = join(this.dir, `batch-${this.killed.length}.fifo`);
    const errFile = join(this.dir, `batch-${this.killed.length}.stderr`);
    await this.base.run("mkfifo", ["-m", "0600", fifo]);
    const child = this.base.spawn("ip", [...args.slice(0, -1), fifo], { stderrFile: errFile, stdoutFile: join(this.dir, "stdout") });
    const w = await open(fifo, "w"); // returns once ip has opened its end
    try {
      const lines = options.input!.split("\n").filter((l) => l !== "");
      // The first n lines, then a marker line ip cannot parse: its complaint says ip has read and run all n.
      await w.write(`${lines.slice(0, n).join("\n")}\nweft-fault-marker\n`);
      const marker = new RegExp(`Command failed .*:${n + 1}\\s*$`, "m");
      const deadline = Date.now() + 30_000;
      while (!marker.test(await readFile(errFile, "utf8").catch(() => ""))) {
        if (Date.now() > deadline) throw new Error(`ip never answered the first ${n} lines`);
        await new Promise((r) => setTimeout(r, 5));
      }
      child.kill("SIGKILL");
      this.killed.push(child.pid);
      await child.exited;
    } finally {
      await w.close().catch(() => undefined);
    }
    // What the killed process printed for the n lines, without the marker's two lines.
    const text = await readFile(errFile, "utf8");
    const kept = text.split("\n").filter((l) => !/weft-fault-marker/.test(l) && !new RegExp(`^Command failed .*:${n + 1}\\s*$`).test(l));
    return { exitCode: 128, stdout: "", stderr: kept.join("\n") };
  }
}

describeReal(
  "the ip batch killed in the middle of a pass",
  () => {
    let ns: TestNetns;
    let dir: string;
    let runner: KillingRunner;
    let engine: DatapathEngine;
    beforeEach(async () => {
      ns = await createNetns("wik");
      dir = mkdtempSync(join(tmpdir(), "weft-ip-killed-"));
      await ns.ip(["-batch", "-"], {
        input: ["link add wik0 type veth peer name wik1", "addr add 198.18.0.1/24 dev wik0", "link set wik0 up", "link set wik1 up", ""].join("\n"),
      });
      runner = new KillingRunner(new ExecaRunner(), dir);
      const c = container.createChildContainer();
      c.register(KERNEL, { useValue: new LinuxKernel({ runner, netns: ns.name }) });
      c.register(LOGGER, { useValue: new MemoryLogger() });
      registerDatapath(c);
      engine = c.resolve(DatapathEngine);
      engine.declare("local", {
        links: [{ name: "weft.1", kind: "vxlan", vxlan: { vni: 1, local: "198.18.0.1", dev: "wik0", port: 8472, learning: false }, mtu: 1450, up: true, addrGenMode: "none" }],
        addresses: [{ dev: "weft.1", address: "198.19.255.248/32" }],
      });
      await engine.flush();
    });
    afterEach(async () => {
      await ns?.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    const json = async (tool: "ip" | "bridge", args: string[]) => JSON.parse((tool === "ip" ? await ns.ip(["-j", ...args]) : await ns.run("bridge", ["-j", ...args])).stdout || "[]") as Record<string, unknown>[];

    /** The kernel holds exactly peers `ids`: one route, one permanent neighbour and one FDB entry each, nothing else of Weft's. */
    async function expectExactly(ids: readonly number[]) {
      const routes = (await json("ip", ["route", "show", "proto", String(WEFT_ROUTE_PROTOCOL)])).map((r) => String(r.dst)).sort();
      const neigh = (await json("ip", ["neigh", "show", "dev", "weft.1", "nud", "permanent"])).map((n) => String(n.dst)).sort();
      const fdb = (await json("bridge", ["fdb", "show", "dev", "weft.1"])).filter((f) => f.dst !== undefined).map((f) => `${String(f.mac)} ${String(f.dst)}`).sort();
      expect(routes).toEqual(ids.map((i) => `${subnet(i)}/29`).sort());
      expect(neigh).toEqual(ids.map((i) => subnet(i)).sort());
      expect(fdb).toEqual(ids.map((i) => `${mac(i)} 198.18.${16 + (i >> 8)}.${i & 255}`).sort());
    }

    it(`${N} peers: the batch killed after 300 lines fails the pass; the next flush programs every peer exactly once`, async () => {
      for (let i = 0; i < N; i++) engine.declare(`peer ${i}`, peer(i));
      runner.arm(300);
      await expect(engine.flush()).rejects.toMatchObject({ code: "KERNEL_FAILED" });
      expect(runner.killed).toHaveLength(1);
      // Part of the batch reached the kernel before the kill, the rest did not.
      const partial = (await json("ip", ["neigh", "show", "dev", "weft.1", "nud", "permanent"])).length;
      expect(partial).toBeGreaterThan(0);
      expect(partial).toBeLessThan(N);
      await engine.flush();
      await expectExactly([...Array(N).keys()]);
      // The periodic resync finds nothing left to do.
      expect((await engine.reconcile({ prune: true })).writes).toBe(0);
    }, 300_000);

    it("peers retracted in the killed pass are removed by the next flush, not left behind until a prune", async () => {
      for (let i = 0; i < N; i++) engine.declare(`peer ${i}`, peer(i));
      await engine.flush();
      await expectExactly([...Array(N).keys()]);
      // 400 peers go, 400 new ones come; the pass that applies it is killed in its first batch.
      for (let i = 0; i < 400; i++) engine.retract(`peer ${i}`);
      for (let i = N; i < N + 400; i++) engine.declare(`peer ${i}`, peer(i));
      runner.arm(200);
      await expect(engine.flush()).rejects.toMatchObject({ code: "KERNEL_FAILED" });
      expect(runner.killed).toHaveLength(1);
      await engine.flush();
      await expectExactly([...Array(N + 400).keys()].filter((i) => i >= 400));
      expect((await engine.reconcile({ prune: true })).writes).toBe(0);
    }, 300_000);
  },
  { tools: ["ip", "bridge", "mkfifo"] },
);
