/**
 * vxlan specifics beyond the conformance suite: the exact kernel objects, VTEP MAC persistence, DirectRouting,
 * device adoption and recreation (with every peer reprogrammed in the same pass), the checksum-offload kind,
 * and the reasons peers are skipped. All against the FakeKernel, asserting on its final state.
 */
import "reflect-metadata";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type FamilyMode,
  TEST_TOPOLOGY,
  type TestAgent,
  type TestInterface,
  diffSnapshots,
  peerLease,
  snapshotKernel,
  startTestAgent,
  testNetConf,
} from "@weft/backend-testkit";
import {
  BACKEND,
  BACKEND_CONFIG,
  ConfigError,
  DATAPATH,
  type ExternalInterface,
  IPAddress,
  IPNet,
  type Lease,
  LOGGER,
  MemoryLogger,
  STATE_DIR,
  isWeftError,
  parseNetworkConfig,
} from "@weft/core";
import { ETHTOOL, KERNEL, KERNEL_VIEW, kernelView } from "@weft/kernel";
import { FakeEthtool, FakeKernel } from "@weft/kernel-testing";
import { DatapathEngine, registerDatapath } from "@weft/reconcile";
import { container } from "tsyringe";
import { afterEach, describe, expect, it } from "vitest";
import vxlan, { VXLAN_OVERHEAD, vtepMacFile, vxlanConfigSchema } from "./index.js";

const T = TEST_TOPOLOGY;
const agents: TestAgent[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const a of agents.splice(0)) await a.close().catch(() => undefined);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "weft-vxlan-"));
  dirs.push(d);
  return d;
}

interface NodeOptions {
  backend?: Record<string, unknown>;
  mode?: FamilyMode;
  kernel?: FakeKernel;
  stateDir?: string;
  /** The agent's EthtoolPort (default: the Linux adapter over the test agent's runner, which has no programs). */
  ethtool?: FakeEthtool;
  iface?: Partial<TestInterface>;
  subnetOf?: number;
  logger?: MemoryLogger;
}

async function node(i: number, o: NodeOptions = {}): Promise<TestAgent> {
  const mode = o.mode ?? "v4";
  const me = T.node(i);
  const sub = T.node(o.subnetOf ?? i);
  const ethtool = o.ethtool;
  const agent = await startTestAgent({
    backends: [vxlan],
    config: testNetConf({ Type: "vxlan", ...o.backend }, mode),
    iface: {
      ...(mode !== "v6" ? { address: me.address } : {}),
      ...(mode !== "v4" ? { address6: me.address6 } : {}),
      ...o.iface,
    },
    leases: { subnet: sub.subnet, ipv6Subnet: sub.ipv6Subnet, nodeName: me.nodeName },
    ...(o.kernel ? { kernel: o.kernel } : {}),
    ...(o.stateDir ? { stateDir: o.stateDir } : {}),
    ...(ethtool ? { ports: (c) => void c.register(ETHTOOL, { useValue: ethtool }) } : {}),
    ...(o.logger ? { logger: o.logger } : {}),
  });
  agents.push(agent);
  return agent;
}

const lines = async (a: TestAgent, prefix: string) => (await snapshotKernel(a.kernel)).lines.filter((l) => l.startsWith(prefix));

describe("vxlan config schema", () => {
  it("applies Flannel's defaults", () => {
    expect(vxlanConfigSchema.parse({ Type: "vxlan" }, "Backend")).toEqual({
      vni: 1,
      port: 0,
      mtu: 0,
      gbp: false,
      learning: false,
      directRouting: false,
      disableTxChecksumOffload: false,
      warnings: [],
    });
  });

  it("matches keys case-insensitively, as Go does, and accepts Flannel's Windows-only keys", () => {
    const c = vxlanConfigSchema.parse({ type: "VXLAN", vni: 4096, port: 4789, directrouting: true, MacPrefix: "0E-2A", Name: "vxlan0" }, "Backend");
    expect(c).toMatchObject({ vni: 4096, port: 4789, directRouting: true, warnings: [] });
  });

  it("names the JSON path, the value, the backend and the rule", () => {
    const err = (() => {
      try {
        vxlanConfigSchema.parse({ Type: "vxlan", VNI: 0 }, "Backend");
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe("net-conf.json: Backend.VNI 0 is out of range for vxlan: must be 1..16777215");
    expect((err as ConfigError).path).toBe("Backend.VNI");
    expect((err as ConfigError).code).toBe("BACKEND_CONFIG_INVALID");
    expect(() => vxlanConfigSchema.parse({ Type: "vxlan", MTU: 1500.5 }, "etcd /weft.io/network/config: Backend")).toThrow(
      "etcd /weft.io/network/config: Backend.MTU 1500.5 must be an integer for vxlan",
    );
  });

  it("turns unknown keys into warnings that the agent logs once at start", async () => {
    expect(vxlanConfigSchema.parse({ Type: "vxlan", DirectRoute: true }, "Backend").warnings).toEqual([
      "net-conf.json: unknown key Backend.DirectRoute is ignored by vxlan (known keys: Type, VNI, Port, MTU, GBP, Learning, DirectRouting, DisableTxChecksumOffload)",
    ]);
    const logger = new MemoryLogger();
    await node(1, { backend: { DirectRoute: true }, logger });
    expect(logger.records.filter((r) => r.level === "warn").map((r) => r.msg)).toEqual([expect.stringContaining("unknown key Backend.DirectRoute")]);
  });

  it("declares the real encapsulation overhead: 50 over IPv4, 70 over IPv6 (Flannel uses 50 for both)", () => {
    const c = vxlanConfigSchema.parse({ Type: "vxlan" }, "Backend");
    expect([vxlan.mtuOverhead(c, "v4"), vxlan.mtuOverhead(c, "v6")]).toEqual([50, 70]);
    expect(VXLAN_OVERHEAD).toEqual({ v4: 50, v6: 70 });
    expect(vxlan.underlayMtu(vxlanConfigSchema.parse({ Type: "vxlan", MTU: 9000 }, "Backend"))).toBe(9000);
    expect(vxlan.underlayMtu(c)).toBeUndefined();
  });
});

describe("vxlan devices", () => {
  it("creates weft.<VNI> and weft-v6.<VNI> bound to the underlay, sourced from the public address, with /32 and /128", async () => {
    const a = await node(1, { mode: "dual", backend: { VNI: 7, Port: 4789, GBP: true }, iface: { mtu: 9000 } });
    const links = new Map((await a.kernel.listLinks()).map((l) => [l.name, l]));
    const v4 = links.get("weft.7")!;
    const v6 = links.get("weft-v6.7")!;
    expect(v4).toMatchObject({ kind: "vxlan", mtu: 8950, up: true, addrGenMode: "none" });
    expect(v4.vxlan).toEqual({ vni: 7, port: 4789, local: "198.18.0.1", dev: "eth0", learning: false, gbp: true });
    expect(v6).toMatchObject({ kind: "vxlan", mtu: 8930, up: true, addrGenMode: "none" });
    expect(v6.vxlan).toMatchObject({ vni: 7, local: "2001:2::1", dev: "eth0" });
    expect(await lines(a, "address weft")).toEqual(["address weft-v6.7 2001:2:0:101::/128", "address weft.7 198.19.1.0/32"]);
    expect(a.backendData).toEqual({ v4: { VNI: 7, VtepMAC: v4.address }, v6: { VNI: 7, VtepMAC: v6.address } });
  });

  it("uses Backend.MTU as the underlay MTU", async () => {
    const a = await node(1, { backend: { MTU: 1400 } });
    expect((await a.kernel.listLinks()).find((l) => l.name === "weft.1")!.mtu).toBe(1350);
  });

  it("sends from the advertised PublicIP, not the interface address", async () => {
    const a = await node(1, { iface: { publicIP: "198.18.1.1" } });
    expect((await a.kernel.listLinks()).find((l) => l.name === "weft.1")!.vxlan!.local).toBe("198.18.1.1");
    expect(a.lease.attrs.publicIP?.toString()).toBe("198.18.1.1");
  });

  it("refuses an IPv6 device MTU below 1280 and a VNI that makes weft-v6.<VNI> longer than 15 characters", async () => {
    await expect(node(1, { mode: "v6", backend: { MTU: 1300 } })).rejects.toThrow(/weft-v6.1 would get MTU 1230 \(underlay 1300 − 70\), below IPv6's minimum 1280/);
    await expect(node(1, { mode: "dual", backend: { VNI: 10_000_000 } })).rejects.toThrow(/device name weft-v6.10000000 longer than Linux's 15 characters/);
    // IPv4 alone is fine with the same VNI.
    await node(1, { backend: { VNI: 10_000_000 } });
  });

  it("keeps the VTEP MAC in <STATE_DIR>/vxlan-<VNI>[-v6].mac (0600) and reuses it on a new kernel", async () => {
    const stateDir = tempDir();
    const a = await node(1, { mode: "dual", stateDir });
    const mac4 = (a.backendData.v4 as { VtepMAC: string }).VtepMAC;
    const mac6 = (a.backendData.v6 as { VtepMAC: string }).VtepMAC;
    expect(readFileSync(vtepMacFile(stateDir, 1, "v4"), "utf8")).toBe(`${mac4}\n`);
    expect(readFileSync(join(stateDir, "vxlan-1-v6.mac"), "utf8")).toBe(`${mac6}\n`);
    expect(statSync(join(stateDir, "vxlan-1.mac")).mode & 0o777).toBe(0o600);
    // Locally administered unicast: bit 1 of the first byte set, bit 0 clear.
    expect(parseInt(mac4.slice(0, 2), 16) & 0b11).toBe(0b10);
    expect(mac4).not.toBe(mac6);
    // A reboot: the devices are gone, the state dir is not.
    const b = await node(1, { mode: "dual", stateDir });
    expect(b.backendData).toEqual(a.backendData);
  });

  it("replaces a corrupt MAC file, with a warning", async () => {
    const stateDir = tempDir();
    writeFileSync(join(stateDir, "vxlan-1.mac"), "not a mac\n");
    const logger = new MemoryLogger();
    const a = await node(1, { stateDir, logger });
    expect((a.backendData.v4 as { VtepMAC: string }).VtepMAC).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    expect(logger.records.some((r) => r.level === "warn" && r.msg.includes("not a unicast MAC"))).toBe(true);
  });

  it("adopts a compatible existing device: same ifindex, attributes repaired", async () => {
    const kernel = new FakeKernel();
    kernel.addExternalLink({ name: "eth0", kind: "bridge", mtu: 1500, up: true });
    kernel.addExternalAddress({ dev: "eth0", address: "198.18.0.1/24" });
    kernel.addExternalLink({ name: "weft.1", kind: "vxlan", mtu: 1300, vxlan: { vni: 1, local: "198.18.0.1", dev: "eth0" } });
    const index = (await kernel.listLinks()).find((l) => l.name === "weft.1")!.index;
    const a = await node(1, { kernel });
    const link = (await kernel.listLinks()).find((l) => l.name === "weft.1")!;
    expect(link.index).toBe(index);
    expect(link).toMatchObject({ mtu: 1450, up: true, address: (a.backendData.v4 as { VtepMAC: string }).VtepMAC });
  });

  it("recreates an incompatible existing device and says why", async () => {
    const kernel = new FakeKernel();
    kernel.addExternalLink({ name: "eth0", kind: "bridge", mtu: 1500, up: true });
    kernel.addExternalAddress({ dev: "eth0", address: "198.18.0.1/24" });
    kernel.addExternalLink({ name: "weft.1", kind: "vxlan", mtu: 1450, vxlan: { vni: 1, port: 4789, local: "198.18.0.1", dev: "eth0" } });
    const logger = new MemoryLogger();
    await node(1, { kernel, logger });
    expect((await kernel.listLinks()).find((l) => l.name === "weft.1")!.vxlan).toMatchObject({ port: 8472 });
    expect(logger.records.some((r) => r.msg === "updating kernel object" && String(r.fields.reason).includes("incompatible (port 4789 != 8472)"))).toBe(true);
  });
});

describe("vxlan preflight (before the agent takes a lease)", () => {
  const net = (mode: FamilyMode) => parseNetworkConfig(JSON.stringify(testNetConf({ Type: "vxlan" }, mode)));
  const cfg = (section: Record<string, unknown> = {}) => vxlanConfigSchema.parse({ Type: "vxlan", ...section }, "Backend");
  const v4 = IPAddress.parse("198.18.0.1");
  const v6 = IPAddress.parse("2001:2::1");
  const eth0 = (o: Partial<ExternalInterface> = {}): ExternalInterface => ({ name: "eth0", index: 2, mtu: 1500, ...o });
  const refusal = (f: () => void): unknown => {
    try {
      f();
    } catch (e) {
      return e;
    }
    return undefined;
  };

  it("refuses a VNI that makes a device name too long, naming Backend.VNI", () => {
    const err = refusal(() => vxlan.preflight!(cfg({ VNI: 10_000_000 }), net("dual"), eth0({ ifaceAddr: v4, ifaceV6Addr: v6 })));
    expect(isWeftError(err, "BACKEND_CONFIG_INVALID")).toBe(true);
    expect((err as Error).message).toBe(
      "net-conf.json: Backend.VNI 10000000 makes the IPv6 device name weft-v6.10000000 longer than Linux's 15 characters: use a VNI below 10000000",
    );
    // The config's real source is named (here the etcd key it came from).
    const fromEtcd = { ...net("dual"), source: "etcd /weft.io/network/config" };
    expect((refusal(() => vxlan.preflight!(cfg({ VNI: 10_000_000 }), fromEtcd, eth0({ ifaceAddr: v4, ifaceV6Addr: v6 }))) as Error).message).toMatch(/^etcd \/weft\.io\/network\/config: Backend\.VNI 10000000/);
    vxlan.preflight!(cfg({ VNI: 10_000_000 }), net("v4"), eth0({ ifaceAddr: v4 }));
  });

  it("refuses a device MTU below the family's minimum, from Backend.MTU or the interface's MTU", () => {
    expect(() => vxlan.preflight!(cfg({ MTU: 1300 }), net("v6"), eth0({ ifaceV6Addr: v6 }))).toThrow(
      "vxlan: weft-v6.1 would get MTU 1230 (underlay 1300 − 70), below IPv6's minimum 1280: raise Backend.MTU or the MTU of eth0",
    );
    expect(() => vxlan.preflight!(cfg(), net("v6"), eth0({ mtu: 1340, ifaceV6Addr: v6 }))).toThrow(/weft-v6.1 would get MTU 1270 \(underlay 1340 − 70\)/);
  });

  it("refuses an enabled family with no address to send from; a --public-ip alone is enough", () => {
    const err = refusal(() => vxlan.preflight!(cfg(), net("dual"), eth0({ ifaceAddr: v4 })));
    expect(isWeftError(err, "CONFIG_INVALID")).toBe(true);
    expect((err as Error).message).toBe("vxlan: EnableIPv6 is on but interface eth0 has no IPv6 address to send VXLAN from: give it one, set --public-ipv6, or turn EnableIPv6 off");
    expect(() => vxlan.preflight!(cfg(), net("v4"), eth0({}))).toThrow(/EnableIPv4 is on but interface eth0 has no IPv4 address/);
    vxlan.preflight!(cfg(), net("v4"), eth0({ extAddr: v4 }));
  });

  it("is registerSubnet's guard too: the same refusal when it is called without the agent", async () => {
    const a = await node(1);
    const noAddress = { name: a.iface.name, index: a.iface.index, mtu: a.iface.mtu };
    await expect(a.backend.registerSubnet({ lease: a.lease, config: a.config, iface: noAddress })).rejects.toThrow(/EnableIPv4 is on but interface eth0 has no IPv4 address/);
  });
});

describe("vxlan peers", () => {
  it("programs neighbour, self FDB entry and onlink route per peer and family", async () => {
    const a = await node(1, { mode: "dual" });
    const b = await node(2, { mode: "dual" });
    expect(await a.addPeer(b.lease)).toEqual({ state: "programmed" });
    const mac4 = (b.backendData.v4 as { VtepMAC: string }).VtepMAC;
    const mac6 = (b.backendData.v6 as { VtepMAC: string }).VtepMAC;
    expect(await lines(a, "neighbour weft")).toEqual([`neighbour weft-v6.1 2001:2:0:102:: ${mac6} permanent`, `neighbour weft.1 198.19.2.0 ${mac4} permanent`]);
    expect(await lines(a, "fdb weft")).toEqual([
      `fdb weft-v6.1 ${mac6} dst=2001:2::2 self=true permanent=true`,
      `fdb weft.1 ${mac4} dst=198.18.0.2 self=true permanent=true`,
    ]);
    const routes = await a.kernel.listRoutes({ family: "v4", protocol: 87 });
    expect(routes).toEqual([expect.objectContaining({ dst: "198.19.2.0/24", gateway: "198.19.2.0", dev: "weft.1", onlink: true })]);
    const routes6 = await a.kernel.listRoutes({ family: "v6", protocol: 87 });
    expect(routes6).toEqual([expect.objectContaining({ dst: "2001:2:0:102::/64", gateway: "2001:2:0:102::", dev: "weft-v6.1", onlink: true })]);
  });

  it("with DirectRouting, routes peers on the underlay segment via their PublicIP and tunnels the rest", async () => {
    const a = await node(1, { mode: "dual", backend: { DirectRouting: true } });
    const near = await node(2, { mode: "dual", backend: { DirectRouting: true } });
    const far = await node(3, {
      mode: "dual",
      backend: { DirectRouting: true },
      iface: { address: `${T.offSegment}/24`, address6: `${T.offSegment6}/64` },
    });
    await a.addPeer(near.lease);
    await a.addPeer(far.lease);
    const routes = [...(await a.kernel.listRoutes({ family: "v4", protocol: 87 })), ...(await a.kernel.listRoutes({ family: "v6", protocol: 87 }))];
    expect(routes.map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}${r.onlink ? " onlink" : ""}`).sort()).toEqual([
      "198.19.2.0/24 via 198.18.0.2 dev eth0",
      "198.19.3.0/24 via 198.19.3.0 dev weft.1 onlink",
      "2001:2:0:102::/64 via 2001:2::2 dev eth0",
      "2001:2:0:103::/64 via 2001:2:0:103:: dev weft-v6.1 onlink",
    ]);
    // Only the far peer has tunnel entries.
    expect((await lines(a, "fdb weft")).map((l) => l.split(" ")[3])).toEqual(["dst=2001:2:0:5::2", "dst=198.18.5.2"]);
    expect(await lines(a, "neighbour weft")).toHaveLength(2);
  });

  it("updates entries when a peer's VTEP MAC changes, leaving no stale FDB entry", async () => {
    const a = await node(1);
    const b = await node(2);
    await a.addPeer(b.lease);
    const moved: Lease = { ...b.lease, attrs: { ...b.lease.attrs, backendData: { VNI: 1, VtepMAC: "02:00:00:00:00:99" } } };
    expect(await a.addPeer(moved)).toEqual({ state: "programmed" });
    expect(await lines(a, "fdb weft")).toEqual(["fdb weft.1 02:00:00:00:00:99 dst=198.18.0.2 self=true permanent=true"]);
    expect(await lines(a, "neighbour weft")).toEqual(["neighbour weft.1 198.19.2.0 02:00:00:00:00:99 permanent"]);
    expect((await a.reconcile()).writes).toBe(0);
  });

  it("skips peers it cannot program, with a reason, and leaves the logging to the agent", async () => {
    const logger = new MemoryLogger();
    const a = await node(1, { logger });
    const b = await node(2);
    const { backendData: _unpublished, ...early } = b.lease.attrs;
    const cases: [Lease, RegExp][] = [
      // The lease of a node that is joining: it exists before the node has published its VTEP.
      [{ ...b.lease, attrs: early }, /^peer node-2 \(198\.19\.2\.0-24\) has not published its backend data yet \(no BackendData\); it is programmed when it does$/],
      [{ ...b.lease, attrs: { ...b.lease.attrs, backendType: "host-gw" } }, /peer node-2 \(198\.19\.2\.0-24\) uses backend "host-gw", this node vxlan/],
      [{ ...b.lease, attrs: { ...b.lease.attrs, backendData: { VNI: 2, VtepMAC: "02:00:00:00:00:01" } } }, /uses VNI 2, this node 1: set the same Backend.VNI on every node/],
      [{ ...b.lease, attrs: { ...b.lease.attrs, backendData: { VNI: 1, VtepMAC: "nope" } } }, /BackendData: VtepMAC "nope" is not a MAC address/],
      [{ ...b.lease, attrs: { backendType: "vxlan", backendData: b.lease.attrs.backendData! } }, /has the IPv4 subnet 198\.19\.2\.0\/24 but no PublicIP/],
      [peerLease({ subnet: "198.19.1.0/25", publicIP: "198.18.0.9", backendType: "vxlan", backendData: { VNI: 1, VtepMAC: "02:00:00:00:00:01" } }), /overlaps this node's own subnet 198\.19\.1\.0\/24/],
      [peerLease({ ipv6Subnet: "2001:2:0:105::/64", publicIPv6: "2001:2::5", backendType: "vxlan" }), /has no subnet in an address family this node routes \(IPv4\)/],
    ];
    for (const [i, [lease, reason]] of cases.entries()) {
      const s = await a.addPeer(lease);
      // The joining node is pending (normal, logged at info by the agent); the others are skipped.
      expect(s.state).toBe(i === 0 ? "pending" : "skipped");
      expect(s.state !== "programmed" && s.reason).toMatch(reason);
    }
    expect(await lines(a, "fdb")).toEqual([]);
    expect(await lines(a, "neighbour weft")).toEqual([]);
    // The agent's PeerSet logs each peer's state once per change; the backend adds no line of its own.
    expect(logger.records.filter((r) => r.level === "warn" || r.level === "error")).toEqual([]);
  });

  it("programs a joining peer as soon as it publishes its data", async () => {
    const a = await node(1, { mode: "dual" });
    const b = await node(2, { mode: "dual" });
    const { backendData: _v4, backendV6Data: _v6, ...early } = b.lease.attrs;
    expect((await a.addPeer({ ...b.lease, attrs: early })).state).toBe("pending");
    // Half published (the IPv4 device first): still waiting, nothing half-programmed.
    const { backendV6Data: _half, ...half } = b.lease.attrs;
    const s = await a.addPeer({ ...b.lease, attrs: half });
    expect(s.state === "pending" && s.reason).toMatch(/has not published its backend data yet \(no BackendV6Data\)/);
    expect(await lines(a, "fdb weft")).toEqual([]);
    expect(await a.addPeer(b.lease)).toEqual({ state: "programmed" });
    expect(await lines(a, "fdb weft")).toHaveLength(2);
  });
});

describe("vxlan self-healing", () => {
  async function cluster() {
    const a = await node(1, { mode: "dual" });
    for (const i of [2, 3, 4]) await a.addPeer((await node(i, { mode: "dual" })).lease);
    return a;
  }

  it("a deleted device comes back with every peer's entries in one full reconcile", async () => {
    const a = await cluster();
    const kernel = a.kernel as FakeKernel;
    const before = await snapshotKernel(kernel);
    // The kernel drops neighbours, FDB entries and routes with the device.
    expect((await kernel.apply([{ op: "link.del", name: "weft.1" }, { op: "link.del", name: "weft-v6.1" }])).every((r) => r.ok)).toBe(true);
    expect((await lines(a, "neighbour weft")).length).toBe(0);
    await a.reconcile();
    expect(diffSnapshots(before, await snapshotKernel(kernel))).toEqual([]);
    expect((await a.reconcile()).writes).toBe(0);
  });

  it("a device altered into an incompatible one is recreated and every peer reprogrammed in the same pass", async () => {
    const a = await cluster();
    const kernel = a.kernel as FakeKernel;
    const before = await snapshotKernel(kernel);
    const mac = (await kernel.listLinks()).find((l) => l.name === "weft.1")!.address!;
    // Someone recreates weft.1 by hand with another VNI (and so without any of Weft's entries).
    kernel.clearFaults();
    expect((await kernel.apply([{ op: "link.del", name: "weft.1" }])).every((r) => r.ok)).toBe(true);
    kernel.addExternalLink({ name: "weft.1", kind: "vxlan", mtu: 1450, address: mac, up: true, vxlan: { vni: 99, local: "198.18.0.1", dev: "eth0" } });
    const r = await a.reconcile();
    expect(r.kinds.find((k) => k.kind === "links")!.drifts).toEqual([{ key: "weft.1", reason: "incompatible (vni 99 != 1): recreate" }]);
    expect(diffSnapshots(before, await snapshotKernel(kernel))).toEqual([]);
    expect((await a.reconcile()).writes).toBe(0);
  });

  it("a device whose MTU drifted is repaired in place (same ifindex)", async () => {
    const a = await cluster();
    const index = (await a.kernel.listLinks()).find((l) => l.name === "weft.1")!.index;
    await a.kernel.apply([{ op: "link.set", name: "weft.1", mtu: 1400 }]);
    await a.reconcile();
    expect((await a.kernel.listLinks()).find((l) => l.name === "weft.1")).toMatchObject({ index, mtu: 1450 });
  });
});

/**
 * ethtool: the EthtoolPort's fake over the FakeKernel. Features live with the device's ifindex, so a recreated
 * device starts with offload on again, exactly what makes a one-shot workaround insufficient.
 */
function fakeEthtool(kernel: FakeKernel) {
  const port = new FakeEthtool({ kernel });
  return { port, state: (dev: string) => port.stateOf(dev, "tx-checksum-ip-generic") };
}

describe("vxlan DisableTxChecksumOffload (kind offload)", () => {
  it("turns tx-checksum-ip-generic off on the device and again after the device is recreated", async () => {
    const kernel = new FakeKernel();
    const eth = fakeEthtool(kernel);
    const a = await node(1, { mode: "dual", kernel, ethtool: eth.port, backend: { DisableTxChecksumOffload: true } });
    expect([await eth.state("weft.1"), await eth.state("weft-v6.1")]).toEqual(["off", "off"]);
    expect((await a.reconcile()).writes).toBe(0);
    await kernel.apply([{ op: "link.del", name: "weft.1" }]);
    await a.reconcile();
    expect(await eth.state("weft.1")).toBe("off");
    expect((await a.reconcile()).writes).toBe(0);
  });

  it("survives a restart without touching anything", async () => {
    const kernel = new FakeKernel();
    const eth = fakeEthtool(kernel);
    const a = await node(1, { kernel, ethtool: eth.port, backend: { DisableTxChecksumOffload: true } });
    const r = await a.restart();
    expect([r.writes, r.recreated]).toEqual([0, []]);
    expect(await eth.state("weft.1")).toBe("off");
  });

  it("starts no process when the option is off", async () => {
    // The default FakeProcessRunner has no scripts: any ethtool call would fail and be logged.
    const logger = new MemoryLogger();
    const a = await node(1, { logger });
    await a.reconcile();
    expect(logger.records.filter((r) => r.level === "warn" || r.level === "error")).toEqual([]);
  });

  it("refuses to start when the workaround cannot be applied (ethtool missing), saying what to do", async () => {
    const err = await node(1, { backend: { DisableTxChecksumOffload: true } }).catch((e: unknown) => e);
    expect(isWeftError(err, "KERNEL_FAILED")).toBe(true);
    expect((err as Error).message).toMatch(
      /^vxlan: DisableTxChecksumOffload is set but tx-checksum-ip-generic on weft\.1 is unreadable \(program "ethtool" not found on PATH.*\): install ethtool/,
    );
  });

  it("refuses to start when the agent built the engine before registering the module (the offload reconciler is missing)", async () => {
    const kernel = new FakeKernel();
    const eth = fakeEthtool(kernel);
    await kernel.apply([
      { op: "link.add", link: { name: "eth0", kind: "bridge", mtu: 1500 } },
      { op: "link.set", name: "eth0", up: true },
      { op: "addr.add", addr: { dev: "eth0", address: "198.18.0.1/24" } },
    ]);
    const config = parseNetworkConfig(JSON.stringify(testNetConf({ Type: "vxlan", DisableTxChecksumOffload: true }, "v4")));
    const c = container.createChildContainer();
    c.register(LOGGER, { useValue: new MemoryLogger() });
    c.register(BACKEND_CONFIG, { useValue: vxlan.configSchema.parse(config.backend, "Backend") });
    c.register(STATE_DIR, { useValue: tempDir() });
    c.register(KERNEL, { useValue: kernel });
    c.register(KERNEL_VIEW, { useValue: kernelView(kernel) });
    c.register(ETHTOOL, { useValue: eth.port });
    registerDatapath(c);
    c.register(DATAPATH, { useValue: c.resolve(DatapathEngine) }); // engine first: contributions come too late
    vxlan.register(c);
    const backend = c.resolve(BACKEND);
    const lease = { subnet: IPNet.parse("198.19.1.0/24"), attrs: { backendType: "vxlan" } };
    const iface = { name: "eth0", index: 2, mtu: 1500, ifaceAddr: IPAddress.parse("198.18.0.1"), extAddr: IPAddress.parse("198.18.0.1") };
    await expect(backend.registerSubnet({ lease, config, iface })).rejects.toThrow(/on weft\.1 is still on: .*registers the backend module before it creates the datapath engine/);
  });
});

describe("vxlan lifecycle", () => {
  it("close('restart') leaves devices and entries; close('teardown') removes them", async () => {
    const a = await node(1, { mode: "dual" });
    await a.addPeer((await node(2, { mode: "dual" })).lease);
    const before = await snapshotKernel(a.kernel);
    await a.backend.close("restart");
    expect(diffSnapshots(before, await snapshotKernel(a.kernel))).toEqual([]);
    await a.close("teardown");
    expect(await lines(a, "link weft")).toEqual([]);
    expect(await lines(a, "route v4 254 198.19")).toEqual([]);
  });

  it("fails clearly when the kernel cannot create the device", async () => {
    const kernel = new FakeKernel({ unsupportedKinds: ["vxlan"] });
    const err = await node(1, { kernel }).catch((e: unknown) => e);
    expect(isWeftError(err, "KERNEL_FAILED")).toBe(true);
    expect((err as Error).message).toMatch(/device weft\.1 could not be created .*vxlan kernel module/);
  });
});

// Conflicting peers (issue 15): two peers with one VtepMAC, a peer with this node's own MAC or a hostile PublicIP.
const withSubnet = (l: Lease, subnet: string, ip: string): Lease => ({ ...l, nodeName: undefined, subnet: IPNet.parse(subnet), attrs: { ...l.attrs, publicIP: IPAddress.parse(ip) } });

describe("vxlan peers that conflict", () => {
  it("programs one of two peers sharing a VtepMAC (the lower key) and does not repair drift at every pass", async () => {
    const a = await node(1);
    const p2 = (await node(2)).lease;
    const copy = withSubnet(p2, "198.19.9.0/24", "198.18.0.9");
    await a.addPeer(copy);
    await a.addPeer(p2);
    await a.reconcile();
    for (let i = 0; i < 3; i++) expect((await a.reconcile()).writes).toBe(0);
    const fdb = (await a.kernel.listFdb({ dev: "weft.1" })).map((f) => `${f.mac} ${f.dst}`);
    expect(fdb).toEqual([`${(p2.attrs.backendData as { VtepMAC: string }).VtepMAC} 198.18.0.2`]);
    expect(a.peers.status("198.19.9.0-24")).toMatchObject({ state: "skipped" });
  });

  it("skips a peer publishing this node's own VtepMAC or address", async () => {
    const a = await node(1);
    const own = withSubnet(a.lease, "198.19.9.0/24", "198.18.0.9");
    expect(await a.addPeer(own)).toMatchObject({ state: "skipped" });
    const p2 = (await node(2)).lease;
    expect(await a.addPeer(withSubnet(p2, "198.19.2.0/24", "198.18.0.1"))).toMatchObject({ state: "skipped" });
    expect(await a.addPeer(withSubnet(p2, "198.19.2.0/24", "255.255.255.255"))).toMatchObject({ state: "skipped" });
    expect(await a.kernel.listFdb({ dev: "weft.1" })).toEqual([]);
    expect(await a.kernel.listRoutes({ family: "v4", protocol: 87 })).toEqual([]);
  });
});
