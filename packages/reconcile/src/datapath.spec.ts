import "reflect-metadata";
import { type KernelObjects, LOGGER, type LinkKindDefinition, MemoryLogger, WEFT_ROUTE_PROTOCOL } from "@weft/core";
import { KERNEL, LINK_KINDS } from "@weft/kernel";
import { FakeKernel } from "@weft/kernel-testing";
import { container } from "tsyringe";
import { describe, expect, it } from "vitest";
import { DatapathEngine, RECONCILER_CONTRIBUTION, orderKinds, registerDatapath } from "./datapath.js";
import type { ObjectReconciler } from "./reconciler.js";

function setup(kernel = underlay()) {
  const c = container.createChildContainer();
  c.register(KERNEL, { useValue: kernel });
  const log = new MemoryLogger();
  c.register(LOGGER, { useValue: log });
  registerDatapath(c);
  return { kernel, engine: c.resolve(DatapathEngine), log, c };
}

function underlay(): FakeKernel {
  const k = new FakeKernel();
  k.addExternalLink({ name: "eth0", kind: "veth", veth: { peer: "eth0-peer" }, up: true, mtu: 1500 });
  k.addExternalAddress({ dev: "eth0", address: "198.18.0.1/24" });
  return k;
}

const local: KernelObjects = {
  links: [{ name: "weft.1", kind: "vxlan", vxlan: { vni: 1, local: "198.18.0.1", dev: "eth0", port: 8472, learning: false }, mtu: 1450, up: true, address: "0e:57:00:00:00:01" }],
  addresses: [{ dev: "weft.1", address: "198.19.1.0/32" }],
};
const peer = (i: number): KernelObjects => {
  const mac = `0e:57:00:00:01:${i.toString(16).padStart(2, "0")}`;
  return {
    neighbours: [{ dev: "weft.1", ip: `198.19.${i}.0`, lladdr: mac, state: "permanent" }],
    fdb: [{ dev: "weft.1", mac, dst: `198.18.0.${i}`, self: true, permanent: true }],
    routes: [{ family: "v4", dst: `198.19.${i}.0/24`, gateway: `198.19.${i}.0`, dev: "weft.1", onlink: true }],
  };
};

/** Counts the kernel reads made from now on (every list* call); call the result to read the count. */
function countReads(k: FakeKernel): () => number {
  let n = 0;
  for (const m of ["listLinks", "listAddresses", "listRoutes", "listNeighbours", "listFdb"] as const) {
    const real = k[m].bind(k) as (...a: unknown[]) => Promise<unknown>;
    (k as unknown as Record<string, unknown>)[m] = (...a: unknown[]) => {
      n++;
      return real(...a);
    };
  }
  return () => n;
}

/** The kernel state that matters here, without volatile fields. */
function state(k: FakeKernel) {
  const s = k.snapshot();
  return {
    links: s.links.map((l) => `${l.name} ${l.kind} mtu ${l.mtu} ${l.up ? "up" : "down"}`).sort(),
    addresses: s.addresses.map((a) => `${a.dev} ${a.address}`).sort(),
    routes: s.routes.map((r) => `${r.dst} via ${r.gateway ?? "-"} dev ${r.dev} proto ${r.protocol}`).sort(),
    neighbours: s.neighbours.map((n) => `${n.dev} ${n.ip} ${n.lladdr} ${n.state}`).sort(),
    fdb: s.fdb.map((f) => `${f.dev} ${f.mac} ${f.dst}`).sort(),
  };
}

/**
 * An engine with a "tun-maker" kind ordered before links: like wireguard-go, "starting" a device creates its TUN
 * behind the links kind's back. `started` lists the devices it made.
 */
function withTunMaker(kernel: FakeKernel): { engine: DatapathEngine; started: string[] } {
  const started: string[] = [];
  const tunMaker: ObjectReconciler<{ dev: string }, string> = {
    kind: "tun-maker",
    before: ["links"],
    key: (o) => o.dev,
    listOwned: async () => (await kernel.listLinks()).filter((l) => l.kind === "tun").map((l) => ({ dev: l.name })),
    drift: () => undefined,
    addOps: (o) => [o.dev],
    updateOps: (o) => [o.dev],
    removeOps: () => [],
    apply: async (ops) => {
      for (const dev of ops) {
        started.push(dev);
        kernel.addExternalLink({ name: dev, kind: "tun", tun: { mode: "tun" }, mtu: 1420, up: true });
      }
      return ops.map(() => ({ ok: true as const }));
    },
  };
  const c = container.createChildContainer();
  c.register(RECONCILER_CONTRIBUTION, { useValue: tunMaker });
  c.register(KERNEL, { useValue: kernel });
  c.register(LOGGER, { useValue: new MemoryLogger() });
  registerDatapath(c);
  return { engine: c.resolve(DatapathEngine), started };
}

describe("DatapathEngine", () => {
  it("converges declared objects, marks routes as Weft's, and a second pass writes nothing", async () => {
    const { kernel, engine } = setup();
    engine.declare("local", local);
    for (const i of [2, 3]) engine.declare(`peer ${i}`, peer(i));
    const first = await engine.reconcile({ prune: true });
    expect(first.failures).toBe(0);
    const s = state(kernel);
    expect(s.links).toContain("weft.1 vxlan mtu 1450 up");
    expect(s.routes).toContain(`198.19.2.0/24 via 198.19.2.0 dev weft.1 proto ${WEFT_ROUTE_PROTOCOL}`);
    expect(s.neighbours).toContain("weft.1 198.19.3.0 0e:57:00:00:01:03 permanent");
    expect(s.fdb).toContain("weft.1 0e:57:00:00:01:02 198.18.0.2");
    const second = await engine.reconcile({ prune: true });
    expect(second.writes).toBe(0);
    expect(state(kernel)).toEqual(s);
  });

  it("flush works from its picture of the kernel (no re-read); the periodic reconcile is what finds changes made behind its back", async () => {
    const { kernel, engine } = setup();
    engine.declare("local", local);
    engine.declare("peer 2", peer(2));
    await engine.reconcile({ prune: true });
    // Someone deletes a route; then a new peer arrives.
    await kernel.apply([{ op: "route.del", route: { family: "v4", dst: "198.19.2.0/24", table: 254, protocol: WEFT_ROUTE_PROTOCOL } }]);
    engine.declare("peer 3", peer(3));
    await engine.flush();
    const s = state(kernel);
    expect(s.routes.some((r) => r.startsWith("198.19.3.0/24"))).toBe(true);
    expect(s.routes.some((r) => r.startsWith("198.19.2.0/24"))).toBe(false);
    await engine.reconcile({ prune: true });
    expect(state(kernel).routes.some((r) => r.startsWith("198.19.2.0/24"))).toBe(true);
  });

  it("stops trusting its picture after a failure: the next flush reads the kernel", async () => {
    const { kernel, engine } = setup();
    engine.declare("local", local);
    await engine.reconcile({ prune: true });
    kernel.failNext((op) => op.op === "route.add", "KERNEL_TRANSIENT");
    engine.declare("peer 2", peer(2));
    expect((await engine.reconcile({ prune: false })).failures).toBe(1);
    // The neighbour was programmed; someone removes it. A flush after a failed pass re-reads and restores it.
    await kernel.apply([{ op: "neigh.del", neigh: { dev: "weft.1", ip: "198.19.2.0", lladdr: "0e:57:00:00:01:02", state: "permanent" } }]);
    await engine.flush();
    const s = state(kernel);
    expect(s.routes.some((r) => r.startsWith("198.19.2.0/24"))).toBe(true);
    expect(s.neighbours).toContain("weft.1 198.19.2.0 0e:57:00:00:01:02 permanent");
  });

  it("plan() tells what a full reconcile would change, and changes nothing", async () => {
    const { kernel, engine } = setup();
    engine.declare("local", local);
    engine.declare("peer 2", peer(2));
    await engine.reconcile({ prune: true });
    expect((await engine.plan()).every((p) => p.add.length + p.update.length + p.remove.length === 0)).toBe(true);
    await kernel.apply([{ op: "route.del", route: { family: "v4", dst: "198.19.2.0/24", table: 254, protocol: WEFT_ROUTE_PROTOCOL } }]);
    kernel.addExternalRoute({ family: "v4", dst: "198.19.9.0/24", gateway: "198.18.0.9", dev: "eth0", protocol: WEFT_ROUTE_PROTOCOL });
    await kernel.apply([{ op: "link.set", name: "weft.1", mtu: 1400 }]);
    const before = state(kernel);
    const plan = await engine.plan();
    expect(state(kernel)).toEqual(before);
    const byKind = Object.fromEntries(plan.map((p) => [p.kind, p]));
    expect(byKind.routes!.add).toEqual(["v4 254 198.19.2.0/24 0"]);
    expect(byKind.routes!.remove).toEqual(["v4 254 198.19.9.0/24 0"]);
    expect(byKind.links!.update).toEqual([{ key: "weft.1", reason: "mtu 1400 != 1450" }]);
  });

  it("retracting a peer removes exactly what it declared", async () => {
    const { kernel, engine } = setup();
    engine.declare("local", local);
    engine.declare("peer 2", peer(2));
    await engine.flush();
    const before = state(kernel);
    engine.declare("peer 3", peer(3));
    await engine.flush();
    engine.retract("peer 3");
    await engine.flush();
    expect(state(kernel)).toEqual(before);
  });

  it("flush never removes owned objects nobody retracted (an agent restarting must not tear the datapath down)", async () => {
    const { kernel, engine } = setup();
    engine.declare("local", local);
    engine.declare("peer 2", peer(2));
    await engine.flush();
    const before = state(kernel);
    // A new engine (the next agent) that has declared only its local objects so far.
    const next = setup(kernel).engine;
    next.declare("local", local);
    const r = await next.reconcile({ prune: false });
    expect(r.writes).toBe(0);
    expect(state(kernel)).toEqual(before);
    // Once it has the full set, prune removes what no one declares any more.
    await next.reconcile({ prune: true });
    expect(state(kernel).routes.some((r) => r.startsWith("198.19.2.0/24"))).toBe(false);
  });

  it("prune removes owned objects that are no longer desired and never touches unowned ones", async () => {
    const { kernel, engine } = setup();
    // Unowned: a foreign route (proto boot), a route to a pod subnet on eth0, a permanent neighbour on eth0,
    // a bridge named cni0, an address on eth0.
    kernel.addExternalRoute({ family: "v4", dst: "198.18.100.0/24", gateway: "198.18.0.254", dev: "eth0" });
    kernel.addExternalRoute({ family: "v4", dst: "198.19.200.0/24", gateway: "198.18.0.200", dev: "eth0", protocol: 4 });
    kernel.addExternalNeighbour({ dev: "eth0", ip: "198.18.0.77", lladdr: "0e:00:00:00:00:77", state: "permanent" });
    kernel.addExternalLink({ name: "cni0", kind: "bridge", up: true });
    engine.declare("local", local);
    engine.declare("peer 2", peer(2));
    await engine.flush();
    // Owned leftovers from an earlier agent: a stale peer route/neighbour/fdb, and a device of a backend no longer used.
    kernel.addExternalLink({ name: "weft-old", kind: "bridge", up: true });
    kernel.addExternalRoute({ family: "v4", dst: "198.19.9.0/24", gateway: "198.18.0.9", dev: "eth0", protocol: WEFT_ROUTE_PROTOCOL });
    // ... and one in a policy table that nothing declares any more.
    kernel.addExternalRoute({ family: "v4", dst: "198.19.8.0/24", gateway: "198.18.0.8", dev: "eth0", table: 100, protocol: WEFT_ROUTE_PROTOCOL });
    kernel.addExternalNeighbour({ dev: "weft.1", ip: "198.19.9.0", lladdr: "0e:57:00:00:01:09", state: "permanent" });
    kernel.addExternalFdb({ dev: "weft.1", mac: "0e:57:00:00:01:09", dst: "198.18.0.9", self: true, permanent: true });
    const unownedBefore = state(kernel);
    await engine.reconcile({ prune: true });
    const after = state(kernel);
    expect(after.links).not.toContain("weft-old bridge mtu 1500 up");
    expect(after.routes.some((r) => r.startsWith("198.19.9.0/24"))).toBe(false);
    expect(await kernel.listRoutes({ family: "v4", table: 100 })).toEqual([]);
    expect(after.neighbours.some((n) => n.includes("198.19.9.0"))).toBe(false);
    expect(after.fdb.some((f) => f.includes("198.18.0.9"))).toBe(false);
    for (const keep of unownedBefore.routes.filter((r) => !r.includes(`proto ${WEFT_ROUTE_PROTOCOL}`))) expect(after.routes).toContain(keep);
    expect(after.neighbours).toContain("eth0 198.18.0.77 0e:00:00:00:00:77 permanent");
    expect(after.links.some((l) => l.startsWith("cni0 "))).toBe(true);
    expect(after.routes).toContain(`198.19.2.0/24 via 198.19.2.0 dev weft.1 proto ${WEFT_ROUTE_PROTOCOL}`);
  });

  it("reports, and does not overwrite, a route to the same destination that Weft does not own", async () => {
    const { kernel, engine } = setup();
    engine.declare("local", local);
    await engine.flush();
    kernel.addExternalRoute({ family: "v4", dst: "198.19.2.0/24", gateway: "198.18.0.50", dev: "eth0" });
    engine.declare("peer 2", peer(2));
    const r = await engine.reconcile({ prune: true });
    const routes = r.kinds.find((k) => k.kind === "routes")!;
    expect(routes.failures.map((f) => f.error.code)).toEqual(["KERNEL_EXISTS"]);
    expect(state(kernel).routes).toContain("198.19.2.0/24 via 198.18.0.50 dev eth0 proto 3");
  });

  it("recreates an incompatible device and re-adds everything that hung off it in the same pass", async () => {
    const { kernel, engine, log } = setup();
    kernel.addExternalLink({ name: "weft.1", kind: "vxlan", vxlan: { vni: 7, local: "198.18.0.1", dev: "eth0" }, up: true, mtu: 1450 });
    engine.declare("local", local);
    engine.declare("peer 2", peer(2));
    const r = await engine.reconcile({ prune: true });
    expect(r.failures).toBe(0);
    expect(r.kinds[0]!.drifts[0]!.reason).toMatch(/incompatible \(vni 7 != 1\)/);
    expect(kernel.snapshot().links.find((l) => l.name === "weft.1")?.vxlan?.vni).toBe(1);
    expect(state(kernel).routes).toContain(`198.19.2.0/24 via 198.19.2.0 dev weft.1 proto ${WEFT_ROUTE_PROTOCOL}`);
    expect(log.records.some((x) => x.msg === "updating kernel object" && String(x.fields.reason).includes("recreate"))).toBe(true);
    // Someone deletes the device: the next pass brings it and every peer entry back.
    await kernel.apply([{ op: "link.del", name: "weft.1" }]);
    expect(state(kernel).routes.some((x) => x.startsWith("198.19.2.0/24"))).toBe(false);
    await engine.reconcile({ prune: true });
    const s = state(kernel);
    expect(s.routes).toContain(`198.19.2.0/24 via 198.19.2.0 dev weft.1 proto ${WEFT_ROUTE_PROTOCOL}`);
    expect(s.neighbours).toContain("weft.1 198.19.2.0 0e:57:00:00:01:02 permanent");
    expect(s.fdb).toContain("weft.1 0e:57:00:00:01:02 198.18.0.2");
  });

  it("never recreates an incompatible device it does not own: reports it and leaves it alone", async () => {
    const { kernel, engine } = setup();
    kernel.addExternalLink({ name: "cni0", kind: "veth", veth: { peer: "cni0-peer" }, up: true });
    const index = kernel.snapshot().links.find((l) => l.name === "cni0")!.index;
    engine.declare("local", { links: [{ name: "cni0", kind: "bridge", up: true }] });
    const r = await engine.reconcile({ prune: true });
    expect(r.kinds[0]!.failures[0]!.error.message).toMatch(/cni0 exists but is incompatible \(kind veth != bridge\) and is not Weft's to recreate/);
    expect(kernel.snapshot().links.find((l) => l.name === "cni0")).toMatchObject({ kind: "veth", index });
  });

  it("repairs a changed addrgenmode on its device (vxlan asks for none: no IPv6 link-local on the overlay)", async () => {
    const { kernel, engine } = setup();
    const l = local.links![0]!;
    engine.declare("local", { ...local, links: [{ ...l, addrGenMode: "none" }] });
    await engine.reconcile({ prune: true });
    await kernel.apply([{ op: "link.set", name: "weft.1", addrGenMode: "eui64" }]);
    const r = await engine.reconcile({ prune: true });
    expect(r.kinds[0]!.drifts).toEqual([{ key: "weft.1", reason: expect.stringContaining("addrgenmode") }]);
    expect((await kernel.listLinks()).find((x) => x.name === "weft.1")?.addrGenMode).toBe("none");
    expect((await engine.reconcile({ prune: true })).writes).toBe(0);
  });

  it("adopts a compatible device and only fixes what drifted", async () => {
    const { kernel, engine } = setup();
    kernel.addExternalLink({ name: "weft.1", kind: "vxlan", vxlan: { vni: 1, local: "198.18.0.1", dev: "eth0", port: 8472 }, up: false, mtu: 1400, address: "0e:57:00:00:00:01" });
    const index = kernel.snapshot().links.find((l) => l.name === "weft.1")!.index;
    engine.declare("local", local);
    const r = await engine.reconcile({ prune: true });
    expect(r.kinds[0]!.drifts[0]!.reason).toBe("mtu 1400 != 1450, up false != true");
    const l = kernel.snapshot().links.find((x) => x.name === "weft.1")!;
    expect(l.index).toBe(index);
    expect(l.mtu).toBe(1450);
    expect(l.up).toBe(true);
  });

  it("records a failed op against its object, programs the others, retries on the next pass, and logs it once", async () => {
    const { kernel, engine, log } = setup();
    engine.declare("local", local);
    await engine.flush();
    const stop = kernel.failAlways((op) => op.op === "route.add" && op.route.dst === "198.19.3.0/24", "KERNEL_TRANSIENT");
    for (const i of [2, 3, 4]) engine.declare(`peer ${i}`, peer(i));
    const r = await engine.reconcile({ prune: true });
    expect(r.failures).toBe(1);
    expect(r.kinds.find((k) => k.kind === "routes")!.failures[0]!.key).toBe("v4 254 198.19.3.0/24 0");
    expect(state(kernel).routes.filter((x) => x.startsWith("198.19.")).length).toBe(2);
    // Still failing on the next pass: counted again, not logged again.
    expect((await engine.reconcile({ prune: true })).failures).toBe(1);
    stop();
    const again = await engine.reconcile({ prune: true });
    expect(again.failures).toBe(0);
    expect(log.records.filter((x) => x.msg === "kernel object not programmed; will retry")).toHaveLength(1);
    expect(log.records.some((x) => x.msg === "kernel objects programmed after earlier failures")).toBe(true);
    expect(state(kernel).routes.filter((x) => x.startsWith("198.19.")).length).toBe(3);
  });

  it("does not treat a failed read as 'everything is missing'", async () => {
    const { kernel, engine } = setup();
    engine.declare("local", local);
    engine.declare("peer 2", peer(2));
    await engine.flush();
    const before = state(kernel);
    const realList = kernel.listRoutes.bind(kernel);
    kernel.listRoutes = async () => {
      throw new Error("ip -json route: killed");
    };
    engine.retract("peer 2");
    const r = await engine.reconcile({ prune: true });
    expect(r.kinds.find((k) => k.kind === "routes")!.failures[0]!.key).toBe("*");
    expect(state(kernel).routes).toEqual(before.routes);
    kernel.listRoutes = realList;
    await engine.flush();
    expect(state(kernel).routes.some((x) => x.startsWith("198.19.2.0/24"))).toBe(false);
  });

  it("runs reconcilers contributed for extra kinds, after the core kinds", async () => {
    const applied: string[] = [];
    const have = new Set<string>();
    const offload: ObjectReconciler<{ dev: string }, string> = {
      kind: "offload",
      key: (o) => o.dev,
      listOwned: async () => [...have].map((dev) => ({ dev })),
      drift: () => undefined,
      addOps: (o) => [`off ${o.dev}`],
      updateOps: (o) => [`off ${o.dev}`],
      removeOps: (o) => [`on ${o.dev}`],
      apply: async (ops) =>
        ops.map((op) => {
          applied.push(op);
          const [verb, dev] = op.split(" ") as [string, string];
          if (verb === "off") have.add(dev);
          else have.delete(dev);
          return { ok: true as const };
        }),
    };
    const { engine, c } = (() => {
      const c0 = container.createChildContainer();
      c0.register(RECONCILER_CONTRIBUTION, { useValue: offload });
      const k = underlay();
      c0.register(KERNEL, { useValue: k });
      c0.register(LOGGER, { useValue: new MemoryLogger() });
      registerDatapath(c0);
      return { engine: c0.resolve(DatapathEngine), c: c0 };
    })();
    void c;
    engine.declare("local", { ...local, extra: { offload: [{ dev: "weft.1" }] } });
    await engine.flush();
    expect(applied).toEqual(["off weft.1"]);
    expect((await engine.reconcile({ prune: true })).writes).toBe(0);
    engine.retract("local");
    await engine.flush();
    expect(applied).toEqual(["off weft.1", "on weft.1"]);
  });

  it("a kind ordered before links (a process that makes its own TUN) writes first, and the links kind then sees the device", async () => {
    const kernel = underlay();
    const { engine, started } = withTunMaker(kernel);
    await engine.reconcile({ prune: false });
    engine.declare("local", { extra: { "tun-maker": [{ dev: "weft-t0" }] } });
    await engine.flush();
    expect(started).toEqual(["weft-t0"]);
    // Now the links kind is told about the TUN: it must find it there (and only set its MTU), not try to create it.
    engine.declare("local", { links: [{ name: "weft-t0", kind: "tun", tun: { mode: "tun" }, mtu: 1400, up: true }], extra: { "tun-maker": [{ dev: "weft-t0" }] } });
    await engine.flush();
    const report = engine.lastReport!;
    expect(report.failures).toBe(0);
    expect(report.kinds.find((k) => k.kind === "links")).toMatchObject({ kind: "links", added: 0, updated: 1 });
    expect(state(kernel).links).toContain("weft-t0 tun mtu 1400 up");
  });
  it("a process-made device and the links kind in ONE pass: the kind before links writes, links reads again and adopts it", async () => {
    const kernel = underlay();
    const { engine } = withTunMaker(kernel);
    await engine.reconcile({ prune: false });
    engine.declare("local", {
      links: [{ name: "weft-t0", kind: "tun", tun: { mode: "tun" }, mtu: 1400, up: true }],
      addresses: [{ dev: "weft-t0", address: "198.19.7.0/32" }],
      routes: [{ family: "v4", dst: "198.19.8.0/24", dev: "weft-t0" }],
      extra: { "tun-maker": [{ dev: "weft-t0" }] },
    });
    await engine.flush();
    const report = engine.lastReport!;
    expect(report.failures).toBe(0);
    expect(report.kinds.find((k) => k.kind === "links")).toMatchObject({ added: 0, updated: 1 });
    expect(state(kernel).links).toContain("weft-t0 tun mtu 1400 up");
    expect(state(kernel).routes).toContain(`198.19.8.0/24 via - dev weft-t0 proto ${WEFT_ROUTE_PROTOCOL}`);
    // The picture it kept is the kernel's: the next flush reads nothing and writes nothing.
    const reads = countReads(kernel);
    await engine.flush();
    expect(engine.lastReport!.writes).toBe(0);
    expect(reads()).toBe(0);
    expect((await engine.reconcile({ prune: true })).writes).toBe(0);
  });

  it("a flush that adds a peer reads nothing from the kernel (the core kinds after links change only their own objects)", async () => {
    const { kernel, engine } = setup();
    engine.declare("local", local);
    engine.declare("10.0.2.0-24", peer(2));
    await engine.reconcile({ prune: false });
    const reads = countReads(kernel);
    engine.declare("10.0.3.0-24", peer(3));
    await engine.flush();
    expect(engine.lastReport!.writes).toBe(3);
    expect(reads()).toBe(0);
  });

  it("compares a contributed link kind through its definition: an incompatible one is recreated, a compatible one adopted", async () => {
    const gre: LinkKindDefinition = {
      kind: "gre",
      createArgs: (l, check) => ["remote", check.address("link.attrs.remote", String(l.attrs?.remote))],
      read: () => ({}),
      incompatibility: (d, a) => (d.attrs?.remote !== a.attrs?.remote ? `remote ${String(a.attrs?.remote)} != ${String(d.attrs?.remote)}` : undefined),
    };
    const kernel = new FakeKernel({ linkKinds: [gre] });
    const c = container.createChildContainer();
    c.register(KERNEL, { useValue: kernel });
    c.register(LOGGER, { useValue: new MemoryLogger() });
    c.register(LINK_KINDS, { useValue: [gre] });
    registerDatapath(c);
    const engine = c.resolve(DatapathEngine);
    engine.declare("local", { links: [{ name: "weft-gre0", kind: "gre", attrs: { remote: "198.18.0.2" }, up: true }] });
    await engine.flush();
    const index = (await kernel.listLinks()).find((l) => l.name === "weft-gre0")!.index;
    expect((await engine.reconcile({ prune: true })).writes).toBe(0);
    engine.declare("local", { links: [{ name: "weft-gre0", kind: "gre", attrs: { remote: "198.18.0.3" }, up: true }] });
    const r = await engine.reconcile({ prune: true });
    expect(r.kinds.find((k) => k.kind === "links")!.drifts).toEqual([{ key: "weft-gre0", reason: "incompatible (remote 198.18.0.2 != 198.18.0.3): recreate" }]);
    const after = (await kernel.listLinks()).find((l) => l.name === "weft-gre0")!;
    expect(after.index).not.toBe(index);
    expect(after).toMatchObject({ kind: "gre", up: true, attrs: { remote: "198.18.0.3" } });
    await engine.teardown();
    expect((await kernel.listLinks()).map((l) => l.name)).toEqual(["lo"]);
  });

  it("orders kinds by their after/before declarations; extra kinds default to after every core kind", () => {
    const core = [
      { kind: "links" },
      { kind: "addresses", after: ["links"] },
      { kind: "neighbours", after: ["links"] },
      { kind: "fdb", after: ["links"] },
      { kind: "routes", after: ["addresses", "neighbours", "fdb"] },
    ];
    expect(orderKinds(core).order).toEqual(["links", "addresses", "neighbours", "fdb", "routes"]);
    expect(orderKinds([...core, { kind: "peers" }, { kind: "daemon", before: ["links"] }]).order).toEqual(["daemon", "links", "addresses", "neighbours", "fdb", "routes", "peers"]);
    expect(orderKinds([...core, { kind: "sa", after: ["links"], before: ["routes"] }]).order).toEqual(["links", "addresses", "neighbours", "fdb", "sa", "routes"]);
    expect(orderKinds([...core, { kind: "b", after: ["a"] }, { kind: "a" }]).order.slice(5)).toEqual(["a", "b"]);
    const deps = orderKinds([...core, { kind: "daemon", before: ["links"] }]).dependents;
    expect([...deps.get("daemon")!].sort()).toEqual(["addresses", "fdb", "links", "neighbours", "routes"]);
    expect([...deps.get("routes")!]).toEqual([]);
  });

  it("refuses a cycle, an unknown kind name and a duplicate kind at registration, in one clear line", () => {
    const base = [{ kind: "links" }, { kind: "routes", after: ["links"] }];
    expect(() => orderKinds([...base, { kind: "x", before: ["links"], after: ["routes"] }])).toThrow(/cycle among kinds links, routes, x.*drop one of the declarations/);
    expect(() => orderKinds([...base, { kind: "x", after: ["linkz"] }])).toThrow(/reconciler "x": after names kind "linkz", which no reconciler handles \(known kinds: links, routes, x\)/);
    expect(() => orderKinds([...base, { kind: "links" }])).toThrow(/two reconcilers for kind "links"/);
    const c = container.createChildContainer();
    c.register(RECONCILER_CONTRIBUTION, { useValue: { kind: "x", before: ["nope"] } as never });
    c.register(KERNEL, { useValue: underlay() });
    c.register(LOGGER, { useValue: new MemoryLogger() });
    registerDatapath(c);
    expect(() => c.resolve(DatapathEngine)).toThrow(/before names kind "nope"/);
  });
});
