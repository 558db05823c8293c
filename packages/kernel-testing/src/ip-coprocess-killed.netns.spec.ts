/**
 * Fault (issue 15): weftd's one long-lived `ip` — the warm `ip -force -batch -` coprocess its CNI server keeps
 * (IpCoprocessRunner; the agent's own passes start one batch per pass, see packages/reconcile's
 * ip-killed.netns.spec.ts) — SIGKILLed by its PID, as the runner reports it, in the middle of a batch. The batch
 * fails as a killed process would (a KernelError, never a hang), the next batch starts a new coprocess, and
 * running the work again leaves the kernel with every route exactly once.
 */
import { ExecaRunner, IpCoprocessRunner, KernelError, type KernelOp, LinuxKernel } from "@weft/kernel";
import { type TestNetns, createNetns } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterEach, beforeEach, expect, it } from "vitest";

const route = (i: number): KernelOp => ({ op: "route.replace", route: { family: "v4", dst: `198.19.${i >> 8}.${i & 255}/32`, dev: "wck0", protocol: 87, table: 254 } });

describeReal(
  "the CNI server's ip coprocess killed mid-batch",
  () => {
    let ns: TestNetns;
    let runner: IpCoprocessRunner;
    beforeEach(async () => {
      ns = await createNetns("wck");
      await ns.ip(["-batch", "-"], { input: "link add wck0 type veth peer name wck1\nlink set wck0 up\nlink set wck1 up\n" });
      runner = new IpCoprocessRunner(new ExecaRunner(), { netns: ns.name });
    });
    afterEach(async () => {
      runner?.close();
      await ns?.destroy();
    });

    const weftRoutes = async () => (JSON.parse((await ns.ip(["-j", "route", "show", "proto", "87"])).stdout || "[]") as { dst: string }[]).map((r) => r.dst);

    it("the killed batch fails, the next one runs in a new coprocess, and the retried work leaves each route once", async () => {
      const kernel = new LinuxKernel({ runner, netns: ns.name });
      const warm = await kernel.apply([route(0)]);
      expect(warm).toEqual([{ ok: true }]);
      const first = runner.pid;
      expect(first).toBeGreaterThan(0);

      const ops = Array.from({ length: 20_000 }, (_, i) => route(i));
      const pass = kernel.apply(ops).then(
        (results) => ({ results }),
        (err: unknown) => ({ err }),
      );
      // Let the batch start flowing, then kill the coprocess by the PID its runner reports.
      const before = Date.now();
      while ((await weftRoutes()).length < 100 && Date.now() - before < 30_000) await new Promise((r) => setTimeout(r, 2));
      process.kill(first!, "SIGKILL");
      const outcome = await pass;
      const applied = (await weftRoutes()).length;
      // Killed part-way: some routes in, not all; and the pass reports the failure (a KernelError, not a hang).
      expect(applied).toBeGreaterThan(0);
      expect(applied).toBeLessThan(ops.length);
      if ("err" in outcome) expect(outcome.err).toBeInstanceOf(KernelError);
      else expect(outcome.results.some((r) => !r.ok)).toBe(true);

      // The pass retried: a new coprocess, every op fine, each route exactly once.
      const again = await kernel.apply(ops);
      expect(again.every((r) => r.ok)).toBe(true);
      expect(runner.pid).toBeGreaterThan(0);
      expect(runner.pid).not.toBe(first);
      const routes = await weftRoutes();
      expect(routes).toHaveLength(ops.length);
      expect(new Set(routes).size).toBe(ops.length);
    }, 300_000);
  },
  { tools: ["ip"] },
);
