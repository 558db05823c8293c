/**
 * The built weftctl against a real two-node vxlan cluster (real weftd processes, real etcd, real devices), run
 * inside node 1's namespace the way an operator runs it on a node or in the weft pod.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { HEALTH_PORT, WeftCluster, type WeftNode, labRunner } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";

const here = dirname(fileURLToPath(import.meta.url));
const weftd = join(here, "..", "..", "daemon", "dist", "main.js");
const weftctl = join(here, "..", "dist", "main.js");
const cniBundle = join(here, "..", "..", "cni", "dist", "weft-cni.cjs");
const endpoint = `http://127.0.0.1:${HEALTH_PORT}`;

describeReal("weftctl on a real cluster (vxlan, 2 nodes)", () => {
  let c: WeftCluster;
  let n1: WeftNode;
  let cni: string;
  const ctl = (args: string[]) => n1.lab.netns.run(process.execPath, [weftctl, ...args], { reject: false, timeoutMs: 30_000 });
  // weftd serves the shim on cni.sock beside its --subnet-file (its --cni-socket default).
  const doctorArgs = () => [
    "doctor", "--subnet-file", n1.subnetFile, "--cni-bin-dir", join(cni, "bin"), "--cni-conf-dir", join(cni, "net.d"),
    "--cni-socket", join(dirname(n1.subnetFile), "cni.sock"), "--endpoint", endpoint,
  ];

  beforeAll(async () => {
    for (const f of [weftd, weftctl, cniBundle]) if (!existsSync(f)) throw new Error(`${f} not found: run npm run build at the repository root first`);
    // The CNI plugin installed by `weft-cni install` itself (the shim as `weft`, the Node fallback beside it, the
    // conflist), as the DaemonSet's init container does, so the doctor's CNI checks pass.
    cni = mkdtempSync(join(tmpdir(), "weftctl-cni-"));
    const conflist = join(cni, "weft.conflist");
    writeFileSync(conflist, JSON.stringify({ name: "cbr0", cniVersion: "1.0.0", plugins: [{ type: "weft" }, { type: "portmap", capabilities: { portMappings: true } }] }));
    const inst = await labRunner.run(process.execPath, [cniBundle, "install", "--bin-dir", join(cni, "bin"), "--conf-dir", join(cni, "net.d"), "--conflist", conflist, "--node", process.execPath], { reject: false });
    if (inst.exitCode !== 0) throw new Error(`weft-cni install failed: ${inst.stderr}`);
    // A long resync, so drift planted by the test stays until weftctl has seen it.
    c = await WeftCluster.start({ nodes: 2, weftd, backend: { Type: "vxlan" }, resyncInterval: 300, pods: false });
    n1 = c.nodes[0]!;
  }, 120_000);
  afterAll(async () => {
    await c?.destroy();
    if (cni) rmSync(cni, { recursive: true, force: true });
  });

  it("status summarises the ready agent: subnet, public IP, backend, MTU, one programmed peer", async () => {
    const r = await ctl(["status", "--endpoint", endpoint]);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    const env = c.subnetEnv(n1);
    expect(r.stdout).toContain(`weftd at ${endpoint}\n  phase:      running\n  ready:      yes\n`);
    expect(r.stdout).toContain(`  subnet:     ${env.subnet!.network}\n`);
    expect(r.stdout).toContain(`  public IP:  ${n1.lab.underlayIp}\n`);
    expect(r.stdout).toContain("  backend:    vxlan\n  MTU:        1450\n  peers:      1 (1 programmed)\n");

    const p = await ctl(["peers", "--endpoint", endpoint]);
    expect(p.exitCode).toBe(0);
    const other = c.subnetEnv(c.nodes[1]!).subnet!.network;
    const lines = p.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^SUBNET +PUBLIC IP +STATE +REASON$/);
    expect(lines[1]).toMatch(new RegExp(`^${other.ip}-${other.prefix} +${c.nodes[1]!.lab.underlayIp} +programmed$`));
  });

  it("doctor passes on a node weftd set up, with the CNI plugin installed", async () => {
    const r = await ctl(doctorArgs());
    expect(r.stdout).not.toMatch(/^(FAIL|WARN)/m);
    expect(r.exitCode).toBe(0);
    for (const name of ["subnet.env", "ip_forward", "br_netfilter", "cni plugin", "cni config", "weftd", "subnet.env vs weftd", "devices", "routes", "mtu"]) {
      expect(r.stdout).toMatch(new RegExp(`^OK +${name.replace(".", "\\.")} `, "m"));
    }
    expect(r.stdout).toMatch(/^OK +devices +weft\S* \(vxlan, mtu 1450\)$/m);
    expect(r.stdout).toMatch(/^OK +routes +1 Weft route \(protocol 87\), all on existing devices$/m);
    const j = JSON.parse((await ctl([...doctorArgs(), "--json"])).stdout) as { ok: boolean; checks: unknown[] };
    expect(j.ok).toBe(true);
  });

  it("doctor FAILs on a weft device whose MTU is below the pod MTU, and says how to fix it", async () => {
    const dev = (JSON.parse((await n1.lab.netns.ip(["-j", "link", "show"])).stdout) as { ifname: string }[]).map((l) => l.ifname).find((n) => n.startsWith("weft"))!;
    await n1.lab.netns.ip(["link", "set", dev, "mtu", "1400"]);
    const r = await ctl(doctorArgs());
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain(`FAIL  mtu`);
    expect(r.stdout).toContain(`pod MTU 1450 (subnet.env) is above ${dev}'s MTU 1400`);
    await n1.lab.netns.ip(["link", "set", dev, "mtu", "1450"]);
  });

  it("with weftd stopped: status is one line naming the endpoint, doctor FAILs on weftd but the datapath checks still pass", async () => {
    await c.stopAgent(n1);
    const r = await ctl(["status", "--endpoint", endpoint]);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(new RegExp(`^weftctl status: cannot reach weftd at ${endpoint} \\(.*\\): check that weftd is running on this node with --healthz-port set.*\\n$`));
    const d = await ctl(doctorArgs());
    expect(d.exitCode).toBe(1);
    expect(d.stdout).toMatch(/^FAIL  weftd +cannot reach weftd/m);
    // SIGTERM leaves the datapath up.
    expect(d.stdout).toMatch(/^OK +routes +1 Weft route/m);
  });
});

describeReal(
  "weftctl drift on a real node (resync slowed down so the drift stays visible)",
  () => {
    let c: WeftCluster;
    beforeAll(async () => {
      if (!existsSync(weftd) || !existsSync(weftctl)) throw new Error("run npm run build at the repository root first");
      c = await WeftCluster.start({ nodes: 2, weftd, backend: { Type: "vxlan" }, resyncInterval: 3600, pods: false, name: "wy" });
    }, 120_000);
    afterAll(async () => {
      await c?.destroy();
    });
    const drift = (n: WeftNode) => n.lab.netns.run(process.execPath, [weftctl, "drift", "--endpoint", endpoint], { reject: false });

    it("shows nothing on a fresh node, then exactly what was changed behind weftd's back", async () => {
      const [a, b] = c.nodes as [WeftNode, WeftNode];
      const clean = await drift(a);
      expect(clean.exitCode, clean.stderr).toBe(0);
      expect(clean.stdout).toMatch(/^in sync/);
      const peer = c.subnetEnv(b).subnet!.network.toString();
      await a.lab.netns.ip(["route", "del", peer]);
      await a.lab.netns.ip(["link", "set", "weft.1", "mtu", "1400"]);
      const r = await drift(a);
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toContain("links       differs   weft.1: mtu 1400 != 1450");
      expect(r.stdout).toContain(`routes      missing   v4 254 ${peer} 0`);
    });
  },
  { tools: ["etcd", "curl"] },
);
