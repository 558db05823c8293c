/**
 * The backend's own status (Backend.status) through weftd: the contract's rules applied, the metrics rendered
 * (weft_backend_info and one gauge per reported count), the HTTP endpoints reading it live, and the Agent (kube
 * mode, fake API server, fake kernel) putting it into /status for a backend that reports one and not for one
 * that does not.
 */
import "reflect-metadata";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BACKEND, type Backend, type BackendModule, type BackendStatus, MemoryLogger } from "@weft/core";
import { FakeKernel, FakeProcessRunner } from "@weft/kernel-testing";
import { type FakeApiServer, startFakeApiServer } from "@weft/kube-testing";
import { KubeSubnetManager } from "@weft/subnet-kube";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Agent } from "./agent.js";
import { loadBackendModules } from "./backend-modules.js";
import { checkBackendStatus } from "./backend-status.js";
import { BUILTIN_BACKENDS } from "./builtins.js";
import { parseFlags } from "./flags.js";
import { startHealthServer } from "./http.js";
import { chooseExternalInterface } from "./iface/index.js";
import { AgentMetrics } from "./metrics.js";

/** The exposition lines of `name` (no HELP/TYPE). */
const series = (text: string, name: string) => text.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));

describe("checkBackendStatus", () => {
  it("keeps a well-formed status as it is", () => {
    const warnings: string[] = [];
    const s = { datapath: "libipsec", reason: "auto: kernel lacks ESP", gauges: { connections_loaded: 2, sas_up: 1 } };
    expect(checkBackendStatus("ipsec", s, (w) => warnings.push(w))).toEqual(s);
    expect(warnings).toEqual([]);
  });

  it("drops what breaks the rules, one line each, never echoing a dropped value", () => {
    const warnings: string[] = [];
    const raw = {
      datapath: "lib ipsec; key=s3cret",
      reason: "line one\n  line two",
      gauges: { sas_up: 1, "Bad-Name": 2, info: 1, loaded: Number.NaN, up: "3", [`x${"y".repeat(60)}`]: 1 },
    };
    expect(checkBackendStatus("ipsec", raw, (w) => warnings.push(w))).toEqual({ reason: "line one line two", gauges: { sas_up: 1 } });
    expect(warnings).toEqual([
      'backend ipsec: status datapath dropped: it must be 1-64 letters, digits, ".", "_" or "-"',
      expect.stringMatching(/^backend ipsec: status gauge "Bad-Name" dropped: names are snake_case/),
      expect.stringMatching(/^backend ipsec: status gauge "info" dropped/),
      "backend ipsec: status gauge loaded dropped: its value must be a finite number",
      "backend ipsec: status gauge up dropped: its value must be a finite number",
      expect.stringMatching(/^backend ipsec: status gauge "xyyy.*" dropped/),
    ]);
    expect(warnings.join("\n")).not.toContain("s3cret");
  });

  it("cuts a long reason to one short line and accepts a status that is not an object as empty", () => {
    expect(checkBackendStatus("x", { reason: "r".repeat(500) }, () => undefined).reason).toHaveLength(200);
    expect(checkBackendStatus("x", undefined, () => undefined)).toEqual({ gauges: {} });
  });
});

describe("BackendStatusMetrics", () => {
  it("renders weft_backend_info{type,datapath} 1 and one gauge per count; a count no longer reported goes", async () => {
    const m = new AgentMetrics();
    m.backend.set("ipsec", { datapath: "libipsec", gauges: { connections_loaded: 2, sas_up: 1 } });
    let text = await m.registry.metrics();
    expect(series(text, "weft_backend_info")).toEqual(['weft_backend_info{type="ipsec",datapath="libipsec"} 1']);
    expect(series(text, "weft_backend_connections_loaded")).toEqual(['weft_backend_connections_loaded{type="ipsec"} 2']);
    expect(series(text, "weft_backend_sas_up")).toEqual(['weft_backend_sas_up{type="ipsec"} 1']);
    expect(text).toContain("# TYPE weft_backend_sas_up gauge");

    m.backend.set("ipsec", { datapath: "kernel", gauges: { sas_up: 0 } });
    text = await m.registry.metrics();
    expect(series(text, "weft_backend_info")).toEqual(['weft_backend_info{type="ipsec",datapath="kernel"} 1']);
    expect(series(text, "weft_backend_connections_loaded")).toEqual([]);
    expect(series(text, "weft_backend_sas_up")).toEqual(['weft_backend_sas_up{type="ipsec"} 0']);
  });

  it("a backend without a status still has its info series, with an empty datapath", async () => {
    const m = new AgentMetrics();
    m.backend.set("vxlan", undefined);
    expect(series(await m.registry.metrics(), "weft_backend_info")).toEqual(['weft_backend_info{type="vxlan",datapath=""} 1']);
  });
});

describe("HTTP: /status and /metrics read the backend's status when asked", () => {
  it("awaits an asynchronous /status and refreshes the gauges before /metrics", async () => {
    const m = new AgentMetrics();
    let sas = 0;
    const server = await startHealthServer(
      "127.0.0.1",
      0,
      {
        ready: () => ({ ready: true, reason: "" }),
        status: async () => ({ phase: "running", backend: { datapath: "libipsec", gauges: { sas_up: sas } } }),
        refreshMetrics: async () => m.backend.set("ipsec", { datapath: "libipsec", gauges: { sas_up: sas } }),
      },
      m,
    );
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      sas = 2;
      expect(await (await fetch(`${base}/status`)).json()).toEqual({ phase: "running", backend: { datapath: "libipsec", gauges: { sas_up: 2 } } });
      sas = 3;
      expect(series(await (await fetch(`${base}/metrics`)).text(), "weft_backend_sas_up")).toEqual(['weft_backend_sas_up{type="ipsec"} 3']);
    } finally {
      server.close();
    }
  });

  it("a failing status is a 500 with the reason, not a crash", async () => {
    const server = await startHealthServer("127.0.0.1", 0, { ready: () => ({ ready: true, reason: "" }), status: async () => Promise.reject(new Error("boom")) }, new AgentMetrics());
    try {
      const r = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/status`);
      expect(r.status).toBe(500);
      expect(await r.text()).toBe("reading the status failed: Error: boom\n");
    } finally {
      server.close();
    }
  });
});

describe("Agent: the backend's status in /status and /metrics", () => {
  let api: FakeApiServer;
  let dir: string;

  beforeEach(async () => {
    api = await startFakeApiServer();
    dir = mkdtempSync(join(tmpdir(), "weft-backend-status-"));
  });
  afterEach(async () => {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A backend with no devices that reports a status (or throws once `fail` is set). */
  function probeModule(report: { status?: BackendStatus; fail?: boolean }): BackendModule {
    const backend: Backend = {
      registerSubnet: async () => ({}),
      addPeer: async () => ({ state: "programmed" }),
      removePeer: async () => undefined,
      close: async () => undefined,
      ...(report.status
        ? {
            status: async () => {
              if (report.fail) throw new Error("charon is not answering");
              return report.status!;
            },
          }
        : {}),
    };
    return {
      type: "probe",
      configSchema: { parse: (x) => x },
      mtuOverhead: () => 0,
      register: (c) => void c.register(BACKEND, { useValue: backend }),
    };
  }

  async function runAgent(module: BackendModule, check: (agent: Agent, metrics: AgentMetrics, log: MemoryLogger) => Promise<void>) {
    api.addNode({ metadata: { name: "n1" }, spec: { podCIDR: "198.19.1.0/24" } });
    writeFileSync(join(dir, "net-conf.json"), JSON.stringify({ Network: "198.19.0.0/16", Backend: { Type: module.type } }));
    const kernel = new FakeKernel({ sysctls: { "net.ipv4.ip_forward": "1" } });
    kernel.addExternalLink({ name: "eth0", kind: "veth", veth: { peer: "eth0-peer" }, up: true, mtu: 1500 });
    kernel.addExternalAddress({ dev: "eth0", address: "198.18.0.1/24" });
    kernel.addExternalRoute({ family: "v4", dst: "0.0.0.0/0", gateway: "198.18.0.254", dev: "eth0" });
    const log = new MemoryLogger();
    const flags = parseFlags([
      "--kube-subnet-mgr",
      "--net-config-path", join(dir, "net-conf.json"),
      "--subnet-file", join(dir, "subnet.env"),
      "--state-dir", join(dir, "state"),
      "--iface", "eth0",
      "--resync-interval", "1",
    ]);
    const manager = new KubeSubnetManager({ netConfPath: join(dir, "net-conf.json"), kubeconfigFile: api.kubeconfigPath, nodeName: "n1", retryIntervalMs: 50, retryTimeoutMs: 500 }, log);
    const metrics = new AgentMetrics();
    const agent = new Agent({
      flags,
      logger: log,
      kernel,
      runner: new FakeProcessRunner(),
      registry: await loadBackendModules({ builtins: [...BUILTIN_BACKENDS, module], thirdParty: [], cwd: dir }),
      metrics,
      subnetManager: manager,
      chooseInterface: chooseExternalInterface,
      trafficRules: () => ({ rules: { ensure: async () => ({ changed: false }), cleanup: async () => undefined }, cleanupOther: async () => undefined }),
    });
    const ctl = new AbortController();
    const running = agent.run(ctl.signal);
    try {
      const deadline = Date.now() + 10_000;
      while (!agent.ready().ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(agent.ready()).toEqual({ ready: true, reason: "" });
      await check(agent, metrics, log);
    } finally {
      ctl.abort();
      await running;
    }
  }

  it("a backend with a status: `backend` in /status, weft_backend_info with its datapath, its gauges; a failure keeps the last", async () => {
    const report: { status: BackendStatus; fail?: boolean } = { status: { datapath: "libipsec", reason: "auto: kernel lacks ESP", gauges: { sas_up: 2 } } };
    await runAgent(probeModule(report), async (agent, metrics, log) => {
      expect(await agent.status()).toMatchObject({ backendType: "probe", backend: { datapath: "libipsec", reason: "auto: kernel lacks ESP", gauges: { sas_up: 2 } } });
      report.status = { datapath: "libipsec", reason: "auto: kernel lacks ESP", gauges: { sas_up: 1 } };
      await agent.refreshMetrics();
      let text = await metrics.registry.metrics();
      expect(series(text, "weft_backend_info")).toEqual(['weft_backend_info{type="probe",datapath="libipsec"} 1']);
      expect(series(text, "weft_backend_sas_up")).toEqual(['weft_backend_sas_up{type="probe"} 1']);
      report.fail = true;
      await agent.refreshMetrics();
      expect((await agent.status()).backend).toEqual({ datapath: "libipsec", reason: "auto: kernel lacks ESP", gauges: { sas_up: 1 } });
      text = await metrics.registry.metrics();
      expect(series(text, "weft_backend_sas_up")).toEqual(['weft_backend_sas_up{type="probe"} 1']);
      expect(log.records.filter((r) => r.msg.includes("reading its status failed"))).toEqual([
        expect.objectContaining({ level: "warn", msg: "backend probe: reading its status failed (showing the last one): charon is not answering" }),
      ]);
    });
  });

  it("a backend without a status: no `backend` in /status, and weft_backend_info{type,datapath=\"\"}", async () => {
    await runAgent(probeModule({}), async (agent, metrics) => {
      const status = await agent.status();
      expect(status.backendType).toBe("probe");
      expect("backend" in status).toBe(false);
      expect(series(await metrics.registry.metrics(), "weft_backend_info")).toEqual(['weft_backend_info{type="probe",datapath=""} 1']);
    });
  });
});
