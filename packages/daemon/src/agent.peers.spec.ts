/**
 * The agent and peers it cannot or must not program (issue 15 #9 and the hostile leases): kube mode against
 * the in-repo API server, host-gw on the fake kernel. A peer whose route the kernel refuses is "failed" in
 * /status with the kernel's line and does not hold readiness; hostile PublicIPs are skipped, each counted once
 * in weft_peer_skips_total; every valid peer is programmed.
 */
import "reflect-metadata";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryLogger } from "@weft/core";
import { FakeProcessRunner } from "@weft/kernel-testing";
import { type FakeApiServer, startFakeApiServer } from "@weft/kube-testing";
import { KubeSubnetManager } from "@weft/subnet-kube";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Agent } from "./agent.js";
import { loadBackendModules } from "./backend-modules.js";
import { BUILTIN_BACKENDS } from "./builtins.js";
import { kubeAgentFlags, nodeKernel } from "./agent-fixture.spec-helper.js";
import { chooseExternalInterface } from "./iface/index.js";
import { AgentMetrics } from "./metrics.js";

describe("Agent with peers it cannot program", () => {
  let api: FakeApiServer;
  let dir: string;

  beforeEach(async () => {
    api = await startFakeApiServer();
    dir = mkdtempSync(join(tmpdir(), "weft-agent-peers-"));
  });
  afterEach(async () => {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const hostGwPeer = (name: string, n: number, publicIP: string) =>
    api.addNode({
      metadata: {
        name,
        annotations: {
          "weft.io/kube-subnet-manager": "true",
          "weft.io/backend-type": "host-gw",
          "weft.io/backend-data": "null",
          "weft.io/public-ip": publicIP,
        },
      },
      spec: { podCIDR: `198.19.${n}.0/24` },
    });

  it("reports a peer the kernel refuses as failed with the kernel's line, is ready all the same, and skips hostile addresses once each", async () => {
    api.addNode({ metadata: { name: "n1" }, spec: { podCIDR: "198.19.1.0/24" } });
    hostGwPeer("n2", 2, "198.18.0.2");
    hostGwPeer("n3", 3, "198.18.0.3");
    hostGwPeer("n4", 4, "127.0.0.1");
    hostGwPeer("n5", 5, "198.18.0.1");
    hostGwPeer("n6", 6, "255.255.255.255");
    const kernel = nodeKernel();
    kernel.failAlways((op) => op.op === "route.add" && op.route.dst === "198.19.3.0/24", "KERNEL_INVALID", "Error: Nexthop has invalid gateway.");
    mkdirSync(join(dir, "state"), { recursive: true });
    const flags = kubeAgentFlags(dir, { Network: "198.19.0.0/16", Backend: { Type: "host-gw" } });
    const log = new MemoryLogger();
    const metrics = new AgentMetrics();
    const agent = new Agent({
      flags,
      logger: log,
      kernel,
      runner: new FakeProcessRunner(),
      registry: await loadBackendModules({ builtins: BUILTIN_BACKENDS, thirdParty: [], cwd: dir }),
      metrics,
      subnetManager: new KubeSubnetManager({ netConfPath: join(dir, "net-conf.json"), kubeconfigFile: api.kubeconfigPath, nodeName: "n1", retryIntervalMs: 50, retryTimeoutMs: 500 }, log),
      chooseInterface: chooseExternalInterface,
      trafficRules: () => ({ rules: { ensure: async () => ({ changed: false }), cleanup: async () => undefined }, cleanupOther: async () => undefined }),
    });
    const ctl = new AbortController();
    const running = agent.run(ctl.signal);
    try {
      // Generous: detects "503 forever", does not measure speed.
      const deadline = Date.now() + 15_000;
      while (!agent.ready().ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      // Let a few resyncs pass: nothing may be logged or counted again.
      await new Promise((r) => setTimeout(r, 2_500));
      expect(agent.ready()).toEqual({ ready: true, reason: "" });
      const st = Object.fromEntries(agent.peerStatuses().map((s) => [s.peer, s]));
      expect(st["198.19.2.0-24"]?.state).toBe("programmed");
      expect(st["198.19.3.0-24"]).toMatchObject({ state: "failed", reason: expect.stringContaining("Nexthop has invalid gateway") });
      for (const k of ["198.19.4.0-24", "198.19.5.0-24", "198.19.6.0-24"]) expect(st[k]?.state, k).toBe("skipped");
      const routes = kernel.snapshot().routes.filter((r) => r.dst.startsWith("198.19.")).map((r) => `${r.dst} via ${r.gateway}`);
      expect(routes).toEqual(["198.19.2.0/24 via 198.18.0.2"]);
      const text = await metrics.registry.metrics();
      expect(text).toContain('weft_peer_skips_total{reason="address"} 2');
      expect(text).toContain('weft_peer_skips_total{reason="own-address"} 1');
      expect(log.records.filter((r) => r.level === "warn" && /peer 198\.19\.[456]\.0-24 not programmed/.test(r.msg))).toHaveLength(3);
    } finally {
      ctl.abort();
      await running.catch(() => undefined);
    }
  }, 40_000);
});
