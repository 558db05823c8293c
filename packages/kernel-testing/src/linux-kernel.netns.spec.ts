/**
 * The KernelPort contract against the real LinuxKernel, in a fresh network namespace per test (veth underlay
 * wu0/wu1, 198.18.1.1/24 + 2001:2:0:1::1/64 on wu0, both ends up). Needs root: fails under CI=true without it.
 * Plus a scale check: 5,000 routes, neighbours and FDB entries, one apply per kind.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type LinkKindDefinition, WEFT_ROUTE_PROTOCOL } from "@weft/core";
import { ExecaRunner, type KernelOp, LinuxKernel } from "@weft/kernel";
import { createNetns, type TestNetns } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { describeKernelPortContract, type KernelPortFixture } from "./contract.js";

const runner = new ExecaRunner();

async function underlayNetns(linkKinds: readonly LinkKindDefinition[] = []): Promise<{ ns: TestNetns; kernel: LinuxKernel }> {
  const ns = await createNetns("wk");
  try {
    await ns.ip(["link", "add", "wu0", "type", "veth", "peer", "name", "wu1"]);
    await ns.ip(["addr", "add", "198.18.1.1/24", "dev", "wu0"]);
    // nodad: no 1-2 s of tentative address, so IPv6 gateways on the underlay resolve at once.
    await ns.ip(["addr", "add", "2001:2:0:1::1/64", "dev", "wu0", "nodad"]);
    await ns.ip(["link", "set", "wu0", "up"]);
    await ns.ip(["link", "set", "wu1", "up"]);
  } catch (err) {
    await ns.destroy();
    throw err;
  }
  return { ns, kernel: new LinuxKernel({ runner, netns: ns.name, linkKinds }) };
}

describeReal(
  "LinuxKernel in a network namespace",
  () => {
    describeKernelPortContract("LinuxKernel", async ({ linkKinds }): Promise<KernelPortFixture> => {
      const { ns, kernel } = await underlayNetns(linkKinds);
      return { kernel, underlay: "wu0", cleanup: () => ns.destroy() };
    });

    describe("scale", () => {
      let ns: TestNetns | undefined;
      let kernel: LinuxKernel;
      beforeEach(async () => {
        ({ ns, kernel } = await underlayNetns());
      });
      afterEach(async () => {
        await ns?.destroy();
      });

      it("applies 5,000 routes, 5,000 neighbours and 5,000 FDB entries, one apply per kind, and reads them back", async () => {
        const P = WEFT_ROUTE_PROTOCOL;
        const setup = await kernel.apply([
          { op: "link.add", link: { name: "wvx0", kind: "vxlan", up: true, vxlan: { vni: 1, local: "198.18.1.1", dev: "wu0" } } },
        ]);
        expect(setup[0]!.ok).toBe(true);
        const routes: KernelOp[] = [];
        const neighs: KernelOp[] = [];
        const fdb: KernelOp[] = [];
        for (let i = 0; i < 5000; i++) {
          const ip = `198.19.${i >> 8}.${i & 255}`;
          const mac = `aa:bb:cc:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;
          routes.push({ op: "route.add", route: { family: "v4", dst: `${ip}/32`, gateway: "198.18.1.2", dev: "wu0", protocol: P } });
          neighs.push({ op: "neigh.replace", neigh: { dev: "wvx0", ip, lladdr: mac, state: "permanent" } });
          fdb.push({ op: "fdb.append", fdb: { dev: "wvx0", mac, dst: `198.18.1.${2 + (i % 200)}`, self: true, permanent: true } });
        }
        const timings: Record<string, number> = {};
        for (const [kind, ops] of [["routes", routes], ["neighbours", neighs], ["fdb", fdb]] as const) {
          const t0 = performance.now();
          const results = await kernel.apply(ops);
          timings[`apply ${kind}`] = Math.round(performance.now() - t0);
          expect(results.filter((r) => !r.ok)).toEqual([]);
        }
        let t0 = performance.now();
        expect((await kernel.listRoutes({ family: "v4", protocol: P })).length).toBe(5000);
        timings["list routes"] = Math.round(performance.now() - t0);
        t0 = performance.now();
        expect((await kernel.listNeighbours({ dev: "wvx0" })).filter((n) => n.state === "permanent").length).toBe(5000);
        timings["list neighbours"] = Math.round(performance.now() - t0);
        t0 = performance.now();
        expect((await kernel.listFdb({ dev: "wvx0" })).filter((f) => f.self && f.dst).length).toBe(5000);
        timings["list fdb"] = Math.round(performance.now() - t0);
        // Timing is for benchmarks, not assertions; printed for the record.
        console.info(`LinuxKernel 5k timings (ms): ${JSON.stringify(timings)}`);
      });
    });
  },
  { tools: ["ip", "bridge", "sysctl"] },
);
