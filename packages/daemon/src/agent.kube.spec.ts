/**
 * The agent in kube mode, with the real Kubernetes client over real HTTP against the in-repo Node API server,
 * the real backends and reconcilers, and the fake kernel (so it runs without privileges).
 */
import "reflect-metadata";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryLogger } from "@weft/core";
import type { KernelOp, OpResult } from "@weft/kernel";
import { FakeKernel, FakeProcessRunner } from "@weft/kernel-testing";
import { type FakeApiServer, startFakeApiServer } from "@weft/kube-testing";
import { KubeSubnetManager } from "@weft/subnet-kube";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Agent, type TrafficPlan } from "./agent.js";
import { loadBackendModules } from "./backend-modules.js";
import { BUILTIN_BACKENDS } from "./builtins.js";
import { kubeAgentFlags, withUnderlay } from "./agent-fixture.spec-helper.js";
import { chooseExternalInterface } from "./iface/index.js";
import { AgentMetrics } from "./metrics.js";

const PEER_MAC = "0e:57:00:00:00:02";

/** A FakeKernel that also keeps every op it was asked to apply (to see a delete, however brief). */
class RecordingKernel extends FakeKernel {
  readonly ops: KernelOp[] = [];
  override async apply(ops: readonly KernelOp[]): Promise<OpResult[]> {
    this.ops.push(...ops);
    return super.apply(ops);
  }
}

function nodeKernel(address = "198.18.0.1"): RecordingKernel {
  return withUnderlay(new RecordingKernel({ sysctls: { "net.ipv4.ip_forward": "0" } }), address);
}

describe("Agent in kube mode", () => {
  let api: FakeApiServer;
  let dir: string;
  let kernel: RecordingKernel;
  let plans: TrafficPlan[];
  let log: MemoryLogger;

  beforeEach(async () => {
    api = await startFakeApiServer();
    dir = mkdtempSync(join(tmpdir(), "weft-agent-kube-"));
    kernel = nodeKernel();
    plans = [];
    log = new MemoryLogger();
  });
  afterEach(async () => {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Node n2, already running vxlan (its annotations published), at 198.18.0.2 with 198.19.2.0/24. */
  function addVxlanPeer(): void {
    api.addNode({
      metadata: {
        name: "n2",
        annotations: {
          "weft.io/kube-subnet-manager": "true",
          "weft.io/backend-type": "vxlan",
          "weft.io/backend-data": JSON.stringify({ VNI: 1, VtepMAC: PEER_MAC }),
          "weft.io/public-ip": "198.18.0.2",
        },
      },
      spec: { podCIDR: "198.19.2.0/24" },
    });
  }

  async function makeAgent(netConf: unknown, node: { name: string; kernel: FakeKernel; dir: string } = { name: "n1", kernel, dir }, readyGraceMs?: number) {
    const d = node.dir;
    mkdirSync(d, { recursive: true });
    const flags = kubeAgentFlags(d, netConf);
    const manager = new KubeSubnetManager(
      { netConfPath: join(d, "net-conf.json"), kubeconfigFile: api.kubeconfigPath, nodeName: node.name, retryIntervalMs: 50, retryTimeoutMs: 500 },
      log,
    );
    const registry = await loadBackendModules({ builtins: BUILTIN_BACKENDS, thirdParty: [], cwd: d });
    return new Agent({
      ...(readyGraceMs !== undefined ? { readyGraceMs } : {}),
      flags,
      logger: log,
      kernel: node.kernel,
      runner: new FakeProcessRunner(),
      registry,
      metrics: new AgentMetrics(),
      subnetManager: manager,
      chooseInterface: chooseExternalInterface,
      trafficRules: () => ({
        rules: {
          ensure: async (p) => {
            plans.push(p);
            return { changed: plans.length === 1 };
          },
          cleanup: async () => undefined,
        },
        cleanupOther: async () => undefined,
      }),
    });
  }

  it("refuses a podCIDR outside Network with one error naming both, and changes nothing on the node", async () => {
    api.addNode({ metadata: { name: "n1" }, spec: { podCIDR: "198.18.9.0/24" } });
    const before = JSON.stringify(kernel.snapshot());
    const agent = await makeAgent({ Network: "198.19.0.0/16", Backend: { Type: "vxlan" } });
    const err = await agent.run(new AbortController().signal).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/198\.18\.9\.0\/24/);
    expect(err?.message).toMatch(/198\.19\.0\.0\/16/);
    expect(JSON.stringify(kernel.snapshot())).toBe(before);
    expect(await kernel.getSysctl("net.ipv4.ip_forward")).toBe("0");
    expect(plans).toEqual([]);
  });

  it("names the fix when the node has no podCIDR", async () => {
    api.addNode({ metadata: { name: "n1" }, spec: {} });
    const before = JSON.stringify(kernel.snapshot());
    const agent = await makeAgent({ Network: "198.19.0.0/16", Backend: { Type: "vxlan", DirectRoute: true } });
    await expect(agent.run(new AbortController().signal)).rejects.toThrow(/node "n1" has no spec\.podCIDR: start kube-controller-manager with --allocate-node-cidrs/);
    expect(JSON.stringify(kernel.snapshot())).toBe(before);
    // The backend config's own warnings are logged by the agent, once, as soon as it is parsed.
    expect(log.records.filter((r) => r.level === "warn" && r.msg.includes("unknown key"))).toEqual([
      expect.objectContaining({ msg: expect.stringContaining("net-conf.json: unknown key Backend.DirectRoute is ignored by vxlan") }),
    ]);
  });

  it("issue 15 #12: 50,000 unknown keys make one bounded warning per section, each logged once", async () => {
    api.addNode({ metadata: { name: "n1" }, spec: {} });
    const netConf: Record<string, unknown> = { Network: "198.19.0.0/16", Backend: { Type: "vxlan", DirectRoute: true, Extra: 1 } };
    for (let i = 0; i < 50_000; i++) netConf[`junk${i}`] = i;
    const agent = await makeAgent(netConf);
    await expect(agent.run(new AbortController().signal)).rejects.toThrow(/has no spec\.podCIDR/);
    const warnings = log.records.filter((r) => r.level === "warn" && r.msg.includes("unknown key"));
    expect(warnings.map((r) => r.msg.replace(/^.*net-conf.json: /, "").slice(0, 50))).toEqual([expect.stringMatching(/^unknown keys "junk0"/), expect.stringMatching(/^unknown keys Backend.DirectRoute, Backend.Extra/)]);
    for (const w of warnings) expect(w.msg.length).toBeLessThan(600);
  });

  it("programs peers from node annotations, publishes its own, and reports the network available only once programmed", async () => {
    api.addNode({ metadata: { name: "n1" }, spec: { podCIDR: "198.19.1.0/24" } });
    addVxlanPeer();
    const agent = await makeAgent({ Network: "198.19.0.0/16", Backend: { Type: "vxlan" } });
    // The route to the peer cannot be programmed at first: the node must not be reported network-available.
    const stop = kernel.failAlways((op) => op.op === "route.add" && op.route.dst === "198.19.2.0/24", "KERNEL_TRANSIENT");
    const ctl = new AbortController();
    const running = agent.run(ctl.signal);
    try {
      await new Promise((r) => setTimeout(r, 1500));
      expect(agent.ready().ready).toBe(false);
      expect(agent.ready().reason).toMatch(/kernel objects not programmed/);
      const early = api.getNode("n1") as { status?: { conditions?: { type: string }[] } };
      expect(early.status?.conditions?.some((c) => c.type === "NetworkUnavailable") ?? false).toBe(false);
      stop();
      const deadline = Date.now() + 10_000;
      while (!agent.ready().ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(agent.ready()).toEqual({ ready: true, reason: "" });
      const snap = kernel.snapshot();
      expect(snap.links.find((l) => l.name === "weft.1")).toMatchObject({ kind: "vxlan", mtu: 1450, up: true });
      expect(snap.routes.find((r) => r.dst === "198.19.2.0/24")).toMatchObject({ gateway: "198.19.2.0", dev: "weft.1", onlink: true });
      expect(snap.neighbours.find((n) => n.ip === "198.19.2.0")?.lladdr).toBe(PEER_MAC);
      expect(snap.fdb.find((f) => f.mac === PEER_MAC)?.dst).toBe("198.18.0.2");
      expect(await kernel.getSysctl("net.ipv4.ip_forward")).toBe("1");
      // This fake node has no br_netfilter: said once, with the fix, and the agent carries on.
      expect(log.records.filter((r) => r.level === "warn" && r.msg.includes("br_netfilter"))).toHaveLength(1);
      expect(log.records.find((r) => r.msg.includes("br_netfilter"))!.msg).toContain("modprobe br_netfilter");
      expect(readFileSync(join(dir, "subnet.env"), "utf8")).toBe("FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n");
      expect(plans[0]?.v4?.subnet.toString()).toBe("198.19.1.0/24");
      const n1 = api.getNode("n1") as { metadata: { annotations: Record<string, string> }; status?: { conditions?: { type: string; status: string; reason?: string }[] } };
      expect(n1.metadata.annotations["weft.io/public-ip"]).toBe("198.18.0.1");
      expect(n1.metadata.annotations["weft.io/backend-type"]).toBe("vxlan");
      expect(JSON.parse(n1.metadata.annotations["weft.io/backend-data"]!).VtepMAC).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      const waitCond = Date.now() + 5_000;
      const cond = () => (api.getNode("n1") as typeof n1).status?.conditions?.find((c) => c.type === "NetworkUnavailable");
      while (!cond() && Date.now() < waitCond) await new Promise((r) => setTimeout(r, 20));
      expect(cond()).toMatchObject({ status: "False" });
      // The peer leaves the cluster: its objects go.
      api.deleteNode("n2");
      const gone = Date.now() + 5_000;
      while (kernel.snapshot().routes.some((r) => r.dst === "198.19.2.0/24") && Date.now() < gone) await new Promise((r) => setTimeout(r, 20));
      expect(kernel.snapshot().routes.some((r) => r.dst === "198.19.2.0/24")).toBe(false);
      expect(kernel.snapshot().fdb.some((f) => f.mac === PEER_MAC)).toBe(false);
    } finally {
      ctl.abort();
      await running;
    }
    // Stopping keeps the datapath (the device stays for the next agent).
    expect(kernel.snapshot().links.some((l) => l.name === "weft.1")).toBe(true);
  });

  it("a peer's restart never takes its route, neighbour or FDB entry away on the other nodes", async () => {
    api.addNode({ metadata: { name: "n1" }, spec: { podCIDR: "198.19.1.0/24" } });
    api.addNode({ metadata: { name: "n2" }, spec: { podCIDR: "198.19.2.0/24" } });
    const conf = { Network: "198.19.0.0/16", Backend: { Type: "vxlan" } };
    const k2 = nodeKernel("198.18.0.2");
    const n2 = { name: "n2", kernel: k2, dir: join(dir, "n2") };
    const until = async (what: string, ok: () => boolean) => {
      const deadline = Date.now() + 10_000;
      while (!ok()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const c1 = new AbortController();
    const a1 = await makeAgent(conf);
    const r1 = a1.run(c1.signal);
    let c2 = new AbortController();
    let a2 = await makeAgent(conf, n2);
    let r2 = a2.run(c2.signal);
    try {
      await until("both agents ready", () => a1.ready().ready && a2.ready().ready);
      const mac2 = () => JSON.parse((api.getNode("n2") as { metadata: { annotations: Record<string, string> } }).metadata.annotations["weft.io/backend-data"]!)?.VtepMAC as string | undefined;
      await until("n1 programs n2", () => kernel.snapshot().fdb.some((f) => f.mac === mac2()));
      const mac = mac2()!;
      const opsBefore = kernel.ops.length;
      // n2's agent restarts (SIGTERM: devices stay), and a new one starts on the same node and state.
      c2.abort();
      await r2;
      c2 = new AbortController();
      a2 = await makeAgent(conf, n2);
      r2 = a2.run(c2.signal);
      await until("the new n2 agent ready", () => a2.ready().ready);
      await new Promise((r) => setTimeout(r, 300)); // any late event from n2 reaches n1
      expect(mac2()).toBe(mac); // the VTEP MAC is stable across the restart
      const removed = kernel.ops.slice(opsBefore).filter((op) => op.op.endsWith(".del"));
      expect(removed).toEqual([]);
      const snap = kernel.snapshot();
      expect(snap.routes.find((r) => r.dst === "198.19.2.0/24")).toMatchObject({ dev: "weft.1" });
      expect(snap.fdb.find((f) => f.mac === mac)?.dst).toBe("198.18.0.2");
    } finally {
      c1.abort();
      c2.abort();
      await Promise.allSettled([r1, r2]);
    }
  });

  it("holds the lease from the start, and announces the node ready after the grace period when a peer never programs", async () => {
    api.addNode({ metadata: { name: "n1" }, spec: { podCIDR: "198.19.1.0/24" } });
    addVxlanPeer();
    kernel.failAlways((op) => op.op === "route.add" && op.route.dst === "198.19.2.0/24", "KERNEL_TRANSIENT");
    const agent = await makeAgent({ Network: "198.19.0.0/16", Backend: { Type: "vxlan" } }, { name: "n1", kernel, dir }, 1500);
    const ctl = new AbortController();
    const running = agent.run(ctl.signal);
    const cond = () => ((api.getNode("n1") as { status?: { conditions?: { type: string; status: string }[] } }).status?.conditions ?? []).find((c) => c.type === "NetworkUnavailable");
    try {
      const deadline = Date.now() + 1000;
      const watchingOwnNode = () => api.requests.some((r) => r.query.watch === "true" && r.query.fieldSelector === "metadata.name=n1");
      while (!watchingOwnNode() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(watchingOwnNode()).toBe(true); // the lease keeper runs before the node is ready
      expect(agent.ready().ready).toBe(false);
      expect(cond()).toBeUndefined();
      const after = Date.now() + 5000;
      while (!cond() && Date.now() < after) await new Promise((r) => setTimeout(r, 20));
      expect(cond()).toMatchObject({ status: "False" });
      expect(agent.ready().ready).toBe(false);
      expect(log.records.filter((r) => r.level === "warn" && r.msg.includes("announcing the node ready anyway"))).toHaveLength(1);
    } finally {
      ctl.abort();
      await running;
    }
  });
});
