/**
 * The agent's lifecycle (issue 15): a stop requested at any point of startup ends the run like a normal stop
 * (#1), and readiness (/readyz, weft_ready) says when the agent is not following its store. The kube store over
 * real HTTP against the in-repo API server, the real vxlan backend and reconcilers, the fake kernel.
 */
import "reflect-metadata";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Lease, type LogFields, MemoryLogger, type SubnetManager, WeftError } from "@weft/core";
import { FakeKernel, FakeProcessRunner } from "@weft/kernel-testing";
import { type FakeApiServer, startFakeApiServer } from "@weft/kube-testing";
import { KubeSubnetManager } from "@weft/subnet-kube";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Agent } from "./agent.js";
import { loadBackendModules } from "./backend-modules.js";
import { BUILTIN_BACKENDS } from "./builtins.js";
import { kubeAgentFlags, nodeKernel } from "./agent-fixture.spec-helper.js";
import { chooseExternalInterface } from "./iface/index.js";
import { AgentMetrics } from "./metrics.js";

/** Generous: a stop takes milliseconds here; this only detects a hang. */
const HANG_MS = 10_000;

/** A MemoryLogger that runs a hook on every line (to act right after a given line, as an operator's SIGTERM would). */
class HookLogger extends MemoryLogger {
  onLine: (msg: string) => void = () => undefined;
  override info(msg: string, f?: LogFields) {
    super.info(msg, f);
    this.onLine(msg);
  }
  override child(): HookLogger {
    return this;
  }
}

/** The store as is, except that its peer watch can be broken (it fails with a transient error until mended). */
function breakableWatch(sm: SubnetManager) {
  const state = { broken: false, cut: new AbortController() };
  const stats: { watchConnected?: boolean } = {};
  const store: SubnetManager & { stats: typeof stats } = {
    name: sm.name,
    stats,
    getNetworkConfig: (s) => sm.getNetworkConfig(s),
    acquireLease: (a, s) => sm.acquireLease(a, s),
    updateLease: (l, a, s) => sm.updateLease(l, a, s),
    completeLease: (l, s) => sm.completeLease(l, s),
    ...(sm.markReady ? { markReady: (l: Lease, s: AbortSignal) => sm.markReady!(l, s) } : {}),
    ...(sm.setIPv6BackendTypes ? { setIPv6BackendTypes: (t: readonly string[]) => sm.setIPv6BackendTypes!(t) } : {}),
    ...(sm.close ? { close: () => sm.close!() } : {}),
    async *watchLeases(local, signal) {
      if (state.broken) throw new WeftError("STORE_UNAVAILABLE", "watch nodes failed: connection refused");
      const both = AbortSignal.any([signal, state.cut.signal]);
      yield* sm.watchLeases(local, both);
      if (!signal.aborted) throw new WeftError("STORE_UNAVAILABLE", "watch nodes failed: connection reset");
    },
  };
  return {
    store,
    /** What an etcd store reports while its watch stream reconnects (EtcdSubnetManagerStats.watchConnected). */
    setConnected(v: boolean) {
      stats.watchConnected = v;
    },
    breakIt() {
      state.broken = true;
      state.cut.abort();
    },
    mend() {
      state.broken = false;
      state.cut = new AbortController();
    },
  };
}

async function within<T>(p: Promise<T>, ms: number): Promise<T | "hung"> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<"hung">((r) => (t = setTimeout(() => r("hung"), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

describe("Agent lifecycle", () => {
  let api: FakeApiServer;
  let dir: string;
  let kernel: FakeKernel;
  let log: HookLogger;
  let metrics: AgentMetrics;

  beforeEach(async () => {
    api = await startFakeApiServer();
    dir = mkdtempSync(join(tmpdir(), "weft-agent-life-"));
    kernel = nodeKernel();
    log = new HookLogger();
    metrics = new AgentMetrics();
    api.addNode({ metadata: { name: "n1" }, spec: { podCIDR: "198.19.1.0/24" } });
    api.addNode({
      metadata: {
        name: "n2",
        annotations: {
          "weft.io/kube-subnet-manager": "true",
          "weft.io/backend-type": "vxlan",
          "weft.io/backend-data": JSON.stringify({ VNI: 1, VtepMAC: "0e:57:00:00:00:02" }),
          "weft.io/public-ip": "198.18.0.2",
        },
      },
      spec: { podCIDR: "198.19.2.0/24" },
    });
  });
  afterEach(async () => {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function makeAgent(opts: { onTrafficRules?: () => void; wrap?: (sm: SubnetManager) => SubnetManager } = {}) {
    const flags = kubeAgentFlags(dir, { Network: "198.19.0.0/16", Backend: { Type: "vxlan" } });
    const manager = new KubeSubnetManager(
      { netConfPath: join(dir, "net-conf.json"), kubeconfigFile: api.kubeconfigPath, nodeName: "n1", retryIntervalMs: 50, retryTimeoutMs: 500 },
      log,
    );
    const registry = await loadBackendModules({ builtins: BUILTIN_BACKENDS, thirdParty: [], cwd: dir });
    return new Agent({
      flags,
      logger: log,
      kernel,
      runner: new FakeProcessRunner(),
      registry,
      metrics,
      subnetManager: opts.wrap ? opts.wrap(manager) : manager,
      chooseInterface: chooseExternalInterface,
      trafficRules: () => ({
        rules: {
          ensure: async () => {
            opts.onTrafficRules?.();
            return { changed: false };
          },
          cleanup: async () => undefined,
        },
        cleanupOther: async () => undefined,
      }),
    });
  }

  const networkAvailable = () =>
    ((api.getNode("n1") as { status?: { conditions?: { type: string; status: string }[] } }).status?.conditions ?? []).some(
      (c) => c.type === "NetworkUnavailable" && c.status === "False",
    );

  // Each startup phase's line, and the step after the lease is published (traffic rules): the window where the
  // probe found the agent carrying on after SIGTERM.
  const points: [string, string][] = [
    ["configuration valid", "line"],
    ["lease acquired", "line"],
    ["vxlan devices ready", "line"],
    ["the traffic rules' first pass", "rules"],
  ];
  for (const [point, how] of points) {
    it(`a stop requested at ${point} ends the run like a normal stop: never running, never announced, not ready`, async () => {
      const ctl = new AbortController();
      if (how === "line") log.onLine = (msg) => msg === point && ctl.abort();
      const agent = await makeAgent(how === "rules" ? { onTrafficRules: () => ctl.abort() } : {});
      const outcome = await within(
        agent.run(ctl.signal).then(
          () => "resolved",
          (err: unknown) => err,
        ),
        HANG_MS,
      );
      expect(outcome, "agent.run did not end like a normal stop (\"hung\": still running)").toBe("resolved");
      expect(ctl.signal.aborted).toBe(true);
      const s = await agent.status();
      expect(s.phase).toBe("stopped");
      expect(agent.ready().ready).toBe(false);
      expect(log.records.map((r) => r.msg)).not.toContain("datapath programmed for every known peer");
      expect(networkAvailable()).toBe(false);
      expect((await metrics.registry.getSingleMetricAsString("weft_ready")).trim().split("\n").pop()).toBe("weft_ready 0");
      // Stopped before node setup: no subnet.env announces a subnet whose node never came up.
      if (point !== "the traffic rules' first pass") expect(existsSync(join(dir, "subnet.env"))).toBe(false);
    }, 20_000);
  }

  it("is not ready (and weft_ready 0) while its peer watch is failing, and ready again once the watch is back", async () => {
    let w: ReturnType<typeof breakableWatch> | undefined;
    const agent = await makeAgent({ wrap: (sm) => (w = breakableWatch(sm)).store });
    const ctl = new AbortController();
    const running = agent.run(ctl.signal);
    const weftReady = async () => {
      await agent.refreshMetrics();
      return (await metrics.registry.getSingleMetricAsString("weft_ready")).trim().split("\n").pop();
    };
    const until = async (what: string, cond: () => boolean | Promise<boolean>) => {
      const deadline = Date.now() + HANG_MS;
      while (!(await cond())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; ready: ${JSON.stringify(agent.ready())}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    try {
      await until("ready", () => agent.ready().ready);
      expect(await weftReady()).toBe("weft_ready 1");
      w!.breakIt();
      await until("the failed watch to show", () => !agent.ready().ready);
      expect(agent.ready().reason).toMatch(/peer watch failed .*connection/);
      expect(await weftReady()).toBe("weft_ready 0");
      // Still failing after several retries: still not ready.
      await new Promise((r) => setTimeout(r, 500));
      expect(agent.ready().ready).toBe(false);
      expect(await weftReady()).toBe("weft_ready 0");
      w!.mend();
      await until("ready again", () => agent.ready().ready);
      expect(await weftReady()).toBe("weft_ready 1");
      // A store that says its watch stream is down (reconnecting inside the store): not ready either.
      w!.setConnected(false);
      expect(agent.ready()).toEqual({ ready: false, reason: expect.stringMatching(/peer watch is disconnected/) });
      expect(await weftReady()).toBe("weft_ready 0");
      w!.setConnected(true);
      expect(await weftReady()).toBe("weft_ready 1");
    } finally {
      ctl.abort();
      await running.catch(() => undefined);
    }
  }, 30_000);
});
