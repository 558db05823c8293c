/**
 * The reconcilers on the real kernel: 5,000 vxlan peers (route + permanent neighbour + self FDB entry each)
 * converge in a fresh namespace, a second pass writes nothing, and pruning removes only what Weft owns.
 * (Timings are for tools/bench, not assertions.)
 */
import "reflect-metadata";
import { type KernelObjects, LOGGER, MemoryLogger, WEFT_ROUTE_PROTOCOL } from "@weft/core";
import { ExecaRunner, KERNEL, LinuxKernel } from "@weft/kernel";
import { type TestNetns, createNetns } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { container } from "tsyringe";
import { afterEach, beforeEach, expect, it } from "vitest";
import { DatapathEngine, registerDatapath } from "./datapath.js";

const N = 5000;
const hex = (n: number) => n.toString(16).padStart(2, "0");
const mac = (i: number) => `0e:57:00:${hex((i >> 16) & 255)}:${hex((i >> 8) & 255)}:${hex(i & 255)}`;
const subnet = (i: number) => {
  const v = ((198 << 24) | (19 << 16)) + i * 8;
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
};
const peer = (i: number): KernelObjects => ({
  neighbours: [{ dev: "weft.1", ip: subnet(i), lladdr: mac(i), state: "permanent" }],
  fdb: [{ dev: "weft.1", mac: mac(i), dst: `198.18.${16 + (i >> 8)}.${i & 255}`, self: true, permanent: true }],
  routes: [{ family: "v4", dst: `${subnet(i)}/29`, gateway: subnet(i), dev: "weft.1", onlink: true }],
});

describeReal(
  "DatapathEngine on the real kernel",
  () => {
    let ns: TestNetns;
    let engine: DatapathEngine;
    beforeEach(async () => {
      ns = await createNetns("wrc");
      await ns.ip(["-batch", "-"], {
        input: ["link add wru0 type veth peer name wru1", "addr add 198.18.0.1/24 dev wru0", "link set wru0 up", "link set wru1 up", ""].join("\n"),
      });
      const c = container.createChildContainer();
      c.register(KERNEL, { useValue: new LinuxKernel({ runner: new ExecaRunner(), netns: ns.name }) });
      c.register(LOGGER, { useValue: new MemoryLogger() });
      registerDatapath(c);
      engine = c.resolve(DatapathEngine);
      engine.declare("local", {
        links: [{ name: "weft.1", kind: "vxlan", vxlan: { vni: 1, local: "198.18.0.1", dev: "wru0", port: 8472, learning: false }, mtu: 1450, up: true, addrGenMode: "none" }],
        addresses: [{ dev: "weft.1", address: "198.19.255.248/32" }],
      });
    });
    afterEach(async () => {
      await ns?.destroy();
    });

    const count = async (args: string[]) => (JSON.parse((await ns.ip(["-j", ...args])).stdout || "[]") as unknown[]).length;

    it(`converges ${N} peers, then a second pass writes nothing`, async () => {
      for (let i = 0; i < N; i++) engine.declare(`peer ${i}`, peer(i));
      const first = await engine.reconcile({ prune: true });
      expect(first.failures).toBe(0);
      expect(await count(["route", "show", "proto", String(WEFT_ROUTE_PROTOCOL)])).toBe(N);
      expect(await count(["neigh", "show", "dev", "weft.1", "nud", "permanent"])).toBe(N);
      const fdb = JSON.parse((await ns.run("bridge", ["-j", "fdb", "show", "dev", "weft.1"])).stdout) as { mac: string }[];
      expect(fdb.filter((f) => f.mac.startsWith("0e:57:00:")).length).toBe(N);
      const second = await engine.reconcile({ prune: true });
      expect(second.writes).toBe(0);
      expect(second.failures).toBe(0);
    });

    it("prunes only owned objects: planted unowned routes and neighbours survive", async () => {
      for (let i = 0; i < 100; i++) engine.declare(`peer ${i}`, peer(i));
      await engine.reconcile({ prune: true });
      // Unowned: routes without Weft's protocol (one to a pod-network destination), a permanent neighbour on the underlay.
      await ns.ip(["-batch", "-"], {
        input: ["route add 198.18.50.0/24 via 198.18.0.254 dev wru0", "route add 198.19.250.0/24 via 198.18.0.250 dev wru0 proto static", "neigh replace 198.18.0.77 lladdr 0e:00:00:00:00:77 dev wru0 nud permanent", ""].join("\n"),
      });
      // Owned but no longer desired: half the peers go away, and a stale owned route is planted.
      for (let i = 50; i < 100; i++) engine.retract(`peer ${i}`);
      await ns.ip(["route", "add", "198.19.240.0/24", "via", "198.18.0.240", "dev", "wru0", "proto", String(WEFT_ROUTE_PROTOCOL)]);
      // Owned routes in a policy table are found too: one left over, one declared until a peer leaves.
      await ns.ip(["route", "add", "198.19.241.0/24", "via", "198.18.0.241", "dev", "wru0", "table", "100", "proto", String(WEFT_ROUTE_PROTOCOL)]);
      engine.declare("peer t", { routes: [{ family: "v4", dst: "198.19.242.0/24", gateway: "198.18.0.242", dev: "wru0", table: 101 }] });
      await engine.flush();
      expect(await count(["route", "show", "table", "101"])).toBe(1);
      engine.retract("peer t");
      await ns.ip(["route", "add", "198.19.243.0/24", "via", "198.18.0.243", "dev", "wru0", "table", "101", "proto", String(WEFT_ROUTE_PROTOCOL)]);
      const r = await engine.reconcile({ prune: true });
      expect(r.failures).toBe(0);
      expect(await count(["route", "show", "proto", String(WEFT_ROUTE_PROTOCOL)])).toBe(50);
      expect(await count(["route", "show", "table", "all", "proto", String(WEFT_ROUTE_PROTOCOL)])).toBe(50);
      expect(await count(["route", "show", "198.18.50.0/24"])).toBe(1);
      expect(await count(["route", "show", "198.19.250.0/24"])).toBe(1);
      expect(await count(["neigh", "show", "dev", "wru0", "nud", "permanent"])).toBe(1);
      expect(await count(["neigh", "show", "dev", "weft.1", "nud", "permanent"])).toBe(50);
      // Teardown: everything owned goes, the unowned objects and the underlay stay.
      await engine.teardown();
      expect(await count(["link", "show", "weft.1"]).catch(() => 0)).toBe(0);
      expect(await count(["route", "show", "proto", String(WEFT_ROUTE_PROTOCOL)])).toBe(0);
      expect(await count(["route", "show", "198.19.250.0/24"])).toBe(1);
      expect(await count(["link", "show", "wru0"])).toBe(1);
    });
  },
  { tools: ["bridge"] },
);
