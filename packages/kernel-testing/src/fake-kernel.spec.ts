import { describe, expect, it } from "vitest";
import { type LinkKindDefinition, WEFT_ROUTE_PROTOCOL, isWeftError } from "@weft/core";
import type { KernelOp } from "@weft/kernel";
import { describeKernelPortContract } from "./contract.js";
import { FakeClock } from "./fake-clock.js";
import { FakeKernel } from "./fake-kernel.js";
import { FakeProcessRunner } from "./fake-process-runner.js";

/** A fake with the same underlay the netns tier builds: an up veth `eth0` with a v4 /24 and a v6 /64. */
function fakeWithUnderlay(linkKinds: readonly LinkKindDefinition[] = []): FakeKernel {
  const k = new FakeKernel({ linkKinds });
  k.addExternalLink({ name: "eth0", kind: "veth", veth: { peer: "eth0-peer" }, up: true, mtu: 1500 });
  k.addExternalAddress({ dev: "eth0", address: "198.18.1.1/24" });
  k.addExternalAddress({ dev: "eth0", address: "2001:2:0:1::1/64" });
  return k;
}

describeKernelPortContract("FakeKernel", async ({ linkKinds }) => ({ kernel: fakeWithUnderlay(linkKinds), underlay: "eth0", cleanup: async () => undefined }));

const P = WEFT_ROUTE_PROTOCOL;
const route = (n: number): KernelOp => ({ op: "route.add", route: { family: "v4", dst: `198.19.${n}.0/24`, gateway: "198.18.1.2", protocol: P } });

describe("FakeKernel fault injection", () => {
  it("failNext fails only the next matching op, which is not applied", async () => {
    const k = fakeWithUnderlay();
    k.failNext((op) => op.op === "route.add", "KERNEL_TRANSIENT");
    const r = await k.apply([route(1), route(2)]);
    expect(r.map((x) => (x.ok ? "ok" : x.error.code))).toEqual(["KERNEL_TRANSIENT", "ok"]);
    expect((await k.listRoutes({ family: "v4", protocol: P })).map((x) => x.dst)).toEqual(["198.19.2.0/24"]);
  });

  it("failAlways fails until removed; transientFailures counts down", async () => {
    const k = fakeWithUnderlay();
    const stop = k.failAlways((op) => op.op === "route.add", "KERNEL_PERMISSION");
    expect((await k.apply([route(1), route(2)])).every((x) => !x.ok && x.error.code === "KERNEL_PERMISSION")).toBe(true);
    stop();
    k.transientFailures(2);
    const r = await k.apply([route(1), route(2), route(3)]);
    expect(r.map((x) => (x.ok ? "ok" : x.error.code))).toEqual(["KERNEL_TRANSIENT", "KERNEL_TRANSIENT", "ok"]);
    expect(r[0]!.ok ? undefined : r[0]!.error.transient).toBe(true);
  });

  it("breakTransport makes the next call throw, then recovers", async () => {
    const k = fakeWithUnderlay();
    k.breakTransport();
    await expect(k.apply([route(1)])).rejects.toMatchObject({ code: "KERNEL_FAILED" });
    expect((await k.apply([route(1)]))[0]!.ok).toBe(true);
  });

  it("planting refuses what the kernel refuses", () => {
    const k = fakeWithUnderlay();
    expect(() => k.addExternalRoute({ family: "v4", dst: "198.19.0.0/16", dev: "nosuch" })).toThrow(/Cannot find device/);
    k.addExternalLink({ name: "dummy0", kind: "dummy", up: true });
    expect(k.snapshot().links.find((l) => l.name === "dummy0")).toMatchObject({ kind: "dummy", rawKind: "dummy", up: true });
  });

  it("can be told that wireguard links work", async () => {
    const k = new FakeKernel({ unsupportedKinds: [] });
    expect((await k.apply([{ op: "link.add", link: { name: "weft-wg0", kind: "wireguard" } }]))[0]!.ok).toBe(true);
  });

  it("snapshot holds all tables", async () => {
    const k = fakeWithUnderlay();
    await k.apply([
      { op: "link.add", link: { name: "weft.1", kind: "vxlan", up: true, vxlan: { vni: 1, local: "198.18.1.1", dev: "eth0" } } },
      { op: "neigh.replace", neigh: { dev: "weft.1", ip: "198.19.2.0", lladdr: "aa:bb:cc:00:00:02", state: "permanent" } },
      { op: "fdb.append", fdb: { dev: "weft.1", mac: "aa:bb:cc:00:00:02", dst: "198.18.1.2", self: true, permanent: true } },
      { op: "route.add", route: { family: "v4", dst: "198.19.2.0/24", gateway: "198.19.2.0", dev: "weft.1", onlink: true, protocol: P } },
    ]);
    const s = k.snapshot();
    expect(s.links.map((l) => l.name)).toEqual(["lo", "eth0", "eth0-peer", "weft.1"]);
    expect(s.neighbours).toEqual([{ dev: "weft.1", ip: "198.19.2.0", lladdr: "aa:bb:cc:00:00:02", state: "permanent" }]);
    expect(s.fdb).toEqual([{ dev: "weft.1", mac: "aa:bb:cc:00:00:02", dst: "198.18.1.2", self: true, permanent: true }]);
    expect(s.routes.filter((r) => r.protocol === P).length).toBe(1);
    expect(s.addresses.filter((a) => a.dev === "eth0").map((a) => a.address)).toEqual(["198.18.1.1/24", "2001:2:0:1::1/64"]);
  });

  it("holds 5,000 peers' routes, neighbours and FDB entries quickly", async () => {
    const k = fakeWithUnderlay();
    await k.apply([{ op: "link.add", link: { name: "weft.1", kind: "vxlan", up: true, vxlan: { vni: 1, local: "198.18.1.1", dev: "eth0" } } }]);
    const ops: KernelOp[] = [];
    for (let i = 0; i < 5000; i++) {
      const ip = `198.19.${i >> 8}.${i & 255}`;
      const mac = `aa:bb:cc:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;
      ops.push({ op: "route.add", route: { family: "v4", dst: `${ip}/32`, gateway: "198.18.1.2", protocol: P } });
      ops.push({ op: "neigh.replace", neigh: { dev: "weft.1", ip, lladdr: mac, state: "permanent" } });
      ops.push({ op: "fdb.append", fdb: { dev: "weft.1", mac, dst: "198.18.1.2", self: true, permanent: true } });
    }
    const r = await k.apply(ops);
    expect(r.filter((x) => !x.ok)).toEqual([]);
    expect((await k.listRoutes({ family: "v4", protocol: P })).length).toBe(5000);
    expect((await k.listNeighbours({ dev: "weft.1" })).length).toBe(5000);
    expect((await k.listFdb({ dev: "weft.1" })).length).toBe(5000);
  });
});

describe("FakeClock", () => {
  it("resolves sleeps in deadline order as time advances, including sleeps started inside the window", async () => {
    const clock = new FakeClock(1000);
    const seen: string[] = [];
    void clock.sleep(300).then(() => seen.push(`b@${clock.now()}`));
    void clock.sleep(100).then(() => seen.push(`a@${clock.now()}`));
    const loop = (async () => {
      for (let i = 0; i < 3; i++) {
        await clock.sleep(200);
        seen.push(`loop${i}@${clock.now()}`);
      }
    })();
    await clock.advance(250);
    expect(seen).toEqual(["a@1100", "loop0@1200"]);
    expect(clock.now()).toBe(1250);
    await clock.advance(1000);
    await loop;
    expect(seen).toEqual(["a@1100", "loop0@1200", "b@1300", "loop1@1400", "loop2@1600"]);
    expect(clock.pending).toBe(0);
  });
});

describe("FakeProcessRunner", () => {
  it("answers from its script, throws PROCESS_FAILED on a non-zero exit unless reject is false, and PROCESS_MISSING for unknown programs", async () => {
    const runner = new FakeProcessRunner({ wg: { stdout: "interface: weft-wg0\n" } }).on("nft", (args) => ({ exitCode: args.includes("bad") ? 1 : 0, stderr: "Error: syntax error" }));
    expect((await runner.run("wg", ["show"])).stdout).toBe("interface: weft-wg0\n");
    expect((await runner.run("nft", ["-f", "-"])).exitCode).toBe(0);
    await expect(runner.run("nft", ["bad"])).rejects.toMatchObject({ code: "PROCESS_FAILED" });
    expect((await runner.run("nft", ["bad"], { reject: false })).exitCode).toBe(1);
    await expect(runner.run("swanctl", [])).rejects.toSatisfy((e) => isWeftError(e, "PROCESS_MISSING"));
  });

  it("spawns long-lived fakes that end when killed", async () => {
    const runner = new FakeProcessRunner().onSpawn("wireguard-go").onSpawn("false", () => ({ exitCode: 1 }));
    const child = runner.spawn("wireguard-go", ["-f", "weft-wg0"]);
    child.kill("SIGTERM");
    expect(await child.exited).toEqual({ code: null, signal: "SIGTERM" });
    expect(await runner.spawn("false", []).exited).toEqual({ code: 1, signal: null });
    expect(() => runner.spawn("charon", [])).toThrow(/not found/);
  });
});

/** A GRE-style kind as a backend package would contribute it (this machine's kernel has no gre: fake only). */
const GRE: LinkKindDefinition = {
  kind: "gre",
  createArgs: (l, check) => {
    const a = l.attrs ?? {};
    if (a.remote === undefined) throw new Error("attrs.remote is required: the far end of the tunnel");
    return ["remote", check.address("link.attrs.remote", String(a.remote), "v4"), ...(a.ttl !== undefined ? ["ttl", check.integer("link.attrs.ttl", Number(a.ttl), 1, 255)] : [])];
  },
  read: (info, _e, ctx) => ({ attrs: { remote: ctx.ip(info.remote) ?? "", ...(typeof info.ttl === "number" ? { ttl: info.ttl } : {}) } }),
  incompatibility: (d, a) => (d.attrs?.remote !== a.attrs?.remote ? `remote ${String(a.attrs?.remote)} != ${String(d.attrs?.remote)}` : undefined),
  fake: {
    create: (l, links) =>
      links.some((o) => o.kind === "gre" && o.attrs?.remote === l.attrs?.remote)
        ? { refuse: { code: "KERNEL_EXISTS", message: "RTNETLINK answers: File exists" } }
        : { fields: { attrs: { remote: String(l.attrs?.remote), ttl: Number(l.attrs?.ttl ?? 0) } }, mtu: 1476 },
  },
};

describe("FakeKernel: contributed link kinds", () => {
  it("models a contributed kind as its definition says, and reads its attributes back", async () => {
    const k = fakeWithUnderlay([GRE]);
    const r = await k.apply([
      { op: "link.add", link: { name: "weft-g0", kind: "gre", attrs: { remote: "198.18.1.2", ttl: 64 }, up: true } },
      { op: "link.add", link: { name: "weft-g1", kind: "gre", attrs: { remote: "198.18.1.2" } } },
      { op: "link.add", link: { name: "weft-g2", kind: "gre", attrs: { remote: "2001:2::1" } } },
    ]);
    expect(r.map((x) => (x.ok ? "ok" : x.error.code))).toEqual(["ok", "KERNEL_EXISTS", "KERNEL_INVALID"]);
    expect((await k.listLinks()).find((l) => l.name === "weft-g0")).toMatchObject({ kind: "gre", mtu: 1476, up: true, attrs: { remote: "198.18.1.2", ttl: 64 } });
    expect(k.snapshot().links.map((l) => l.name)).not.toContain("weft-g1");
  });

  it("without a fake model keeps attrs as given; a kind nobody contributed is refused; a kind defined twice is an error", async () => {
    const plain: LinkKindDefinition = { kind: "ipip", createArgs: () => [], read: () => ({}), incompatibility: () => undefined };
    const k = fakeWithUnderlay([plain]);
    await k.apply([{ op: "link.add", link: { name: "weft-i0", kind: "ipip", attrs: { remote: "198.18.1.3" } } }]);
    expect((await k.listLinks()).find((l) => l.name === "weft-i0")).toMatchObject({ kind: "ipip", attrs: { remote: "198.18.1.3" } });
    const [r] = await new FakeKernel().apply([{ op: "link.add", link: { name: "weft-i0", kind: "ipip" } }]);
    expect(r).toMatchObject({ ok: false, error: { code: "KERNEL_INVALID" } });
    expect(() => new FakeKernel({ linkKinds: [plain, plain] })).toThrow(/link kind "ipip" is defined twice/);
    expect(() => new FakeKernel({ linkKinds: [{ ...plain, kind: "vxlan" }] })).toThrow(/"vxlan" is defined twice \(Weft defines it already\)/);
  });
});
