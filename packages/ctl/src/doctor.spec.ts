import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WEFT_ROUTE_PROTOCOL } from "@weft/core";
import { FakeKernel } from "@weft/kernel-testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type Check, doctorFailed, renderDoctor, runDoctor } from "./doctor.js";
import { NOT_READY_STATUS, READY_STATUS } from "./fixtures.js";
import { unreachable } from "./http-client.js";
import type { StatusReport, WeftStatus } from "./status.js";

const EP = "http://127.0.0.1:9099";
const SUBNET_ENV = "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n";

/** A node as weftd leaves it with vxlan: forwarding on, br_netfilter loaded, weft.1 up, one route per peer. */
function healthyKernel(opts: { mtu?: number; sysctls?: Record<string, string> } = {}): FakeKernel {
  const k = new FakeKernel({ sysctls: { "net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1", ...opts.sysctls } });
  k.addExternalLink({ name: "eth0", kind: "veth", veth: { peer: "eth0-peer" }, up: true, mtu: 1500 });
  k.addExternalAddress({ dev: "eth0", address: "198.18.0.1/24" });
  k.addExternalLink({ name: "weft.1", kind: "vxlan", vxlan: { vni: 1, local: "198.18.0.1", dev: "eth0", port: 8472, learning: false }, mtu: opts.mtu ?? 1450, up: true });
  k.addExternalAddress({ dev: "weft.1", address: "198.19.1.0/32" });
  for (const i of [2, 3]) k.addExternalRoute({ family: "v4", dst: `198.19.${i}.0/24`, gateway: `198.19.${i}.0`, dev: "weft.1", onlink: true, protocol: WEFT_ROUTE_PROTOCOL });
  // A route Weft does not own stays out of the count.
  k.addExternalRoute({ family: "v4", dst: "198.18.5.0/24", gateway: "198.18.0.254", dev: "eth0" });
  return k;
}

let dir: string;
let subnetFile: string;
let binDir: string;
let confDir: string;

function installCni() {
  writeFileSync(join(binDir, "weft"), "#!/usr/bin/env node\n");
  chmodSync(join(binDir, "weft"), 0o755);
  writeFileSync(join(confDir, "10-weft.conflist"), JSON.stringify({ name: "cbr0", cniVersion: "1.0.0", plugins: [{ type: "weft" }, { type: "portmap" }] }));
}

const weftd = (status: WeftStatus, ready = status.ready) => async (endpoint: string): Promise<StatusReport> => ({ endpoint, status, readyz: { ready, reason: status.reason } });
const down = async (endpoint: string): Promise<StatusReport> => {
  throw unreachable(endpoint, "connect ECONNREFUSED 127.0.0.1:9099");
};

function doctor(kernel: FakeKernel, readWeftd: (e: string) => Promise<StatusReport> = weftd(READY_STATUS), endpointGiven = true) {
  return runDoctor({ kernel, subnetFile, cniBinDir: binDir, cniConfDir: confDir, endpoint: EP, endpointGiven, readWeftd });
}
const byName = (checks: Check[], name: string) => checks.filter((c) => c.name === name);
const levels = (checks: Check[]) => Object.fromEntries(checks.map((c) => [c.name, c.level]));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "weftctl-doctor-"));
  subnetFile = join(dir, "subnet.env");
  binDir = join(dir, "bin");
  confDir = join(dir, "net.d");
  mkdirSync(binDir);
  mkdirSync(confDir);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("weftctl doctor", () => {
  it("passes every check on a healthy vxlan node", async () => {
    writeFileSync(subnetFile, SUBNET_ENV);
    installCni();
    const checks = await doctor(healthyKernel());
    expect(levels(checks)).toEqual({
      "subnet.env": "ok",
      ip_forward: "ok",
      br_netfilter: "ok",
      "cni plugin": "ok",
      "cni config": "ok",
      weftd: "ok",
      "subnet.env vs weftd": "ok",
      devices: "ok",
      routes: "ok",
      mtu: "ok",
    });
    expect(doctorFailed(checks)).toBe(false);
    expect(byName(checks, "routes")[0]!.message).toBe(`2 Weft routes (protocol ${WEFT_ROUTE_PROTOCOL}), all on existing devices`);
    expect(byName(checks, "devices")[0]!.message).toBe("weft.1 (vxlan, mtu 1450)");
    const text = renderDoctor(checks);
    expect(text).toMatch(/^OK    subnet\.env +.*subnet\.env: subnet 198\.19\.1\.1\/24, MTU 1450$/m);
    expect(text.trimEnd().split("\n").at(-1)).toBe("10 OK, 0 WARN, 0 FAIL");
  });

  it("FAILs on a node where weftd never ran: no subnet.env, forwarding off, no br_netfilter, no CNI plugin", async () => {
    const kernel = new FakeKernel();
    const checks = await doctor(kernel, down);
    expect(levels(checks)).toMatchObject({ "subnet.env": "fail", ip_forward: "fail", br_netfilter: "fail", "cni plugin": "fail", "cni config": "fail", weftd: "fail", devices: "warn", routes: "ok" });
    expect(doctorFailed(checks)).toBe(true);
    const text = renderDoctor(checks);
    expect(text).toMatch(/^FAIL  subnet\.env +\S+subnet\.env does not exist, so the CNI plugin cannot set up pods/m);
    expect(text).toContain("fix: sysctl -w net.ipv4.ip_forward=1");
    expect(text).toContain("fix: modprobe br_netfilter");
    expect(text).toContain(`fix: run weft-cni install --bin-dir ${binDir} --conf-dir ${confDir}`);
    expect(text).toContain(`cannot reach weftd at ${EP}`);
    // Without subnet.env there is no MTU to compare.
    expect(byName(checks, "mtu")).toEqual([]);
  });

  it("only WARNs about weftd when the default endpoint is not answering", async () => {
    writeFileSync(subnetFile, SUBNET_ENV);
    installCni();
    const checks = await doctor(healthyKernel(), down, false);
    expect(byName(checks, "weftd")[0]).toMatchObject({ level: "warn", fix: expect.stringContaining("--endpoint") });
    expect(doctorFailed(checks)).toBe(false);
  });

  it("FAILs when the pod MTU in subnet.env is above a weft device's MTU", async () => {
    writeFileSync(subnetFile, SUBNET_ENV);
    installCni();
    const checks = await doctor(healthyKernel({ mtu: 1400 }), weftd({ ...READY_STATUS, mtu: 1450 }));
    expect(byName(checks, "mtu")[0]).toMatchObject({ level: "fail", message: "pod MTU 1450 (subnet.env) is above weft.1's MTU 1400: large pod packets are dropped on the tunnel" });
  });

  it("checks IPv6 forwarding and bridge-nf-call-ip6tables when subnet.env has IPv6", async () => {
    writeFileSync(subnetFile, SUBNET_ENV.replace("FLANNEL_MTU", "FLANNEL_IPV6_NETWORK=2001:2::/48\nFLANNEL_IPV6_SUBNET=2001:2:0:1::1/64\nFLANNEL_MTU"));
    installCni();
    const checks = await doctor(healthyKernel({ sysctls: { "net.bridge.bridge-nf-call-ip6tables": "0" } }), weftd({ ...READY_STATUS, ipv6Subnet: "2001:2:0:1::/64" }));
    expect(byName(checks, "ipv6 forwarding")[0]).toMatchObject({ level: "fail", message: expect.stringContaining("net.ipv6.conf.all.forwarding = 0") });
    expect(byName(checks, "br_netfilter").map((c) => c.level)).toEqual(["ok", "fail"]);
    expect(byName(checks, "subnet.env vs weftd")[0]!.level).toBe("ok");
  });

  it("FAILs on a subnet.env that is unparseable or disagrees with the running weftd", async () => {
    installCni();
    writeFileSync(subnetFile, "FLANNEL_SUBNET=not-a-cidr\n");
    let checks = await doctor(healthyKernel());
    expect(byName(checks, "subnet.env")[0]).toMatchObject({ level: "fail", message: expect.stringContaining("FLANNEL_SUBNET=not-a-cidr is not an IPv4 address/prefix") });

    writeFileSync(subnetFile, SUBNET_ENV.replace("198.19.1.1/24", "198.19.7.1/24"));
    checks = await doctor(healthyKernel());
    expect(byName(checks, "subnet.env vs weftd")[0]).toMatchObject({ level: "fail", message: expect.stringContaining("FLANNEL_SUBNET 198.19.7.1/24 is not in weftd's subnet 198.19.1.0/24") });
  });

  it("FAILs when weftd is not ready, with its reason", async () => {
    writeFileSync(subnetFile, SUBNET_ENV.replace("1450", "1430"));
    installCni();
    const checks = await doctor(healthyKernel(), weftd({ ...NOT_READY_STATUS, ipv6Subnet: undefined as never }));
    expect(byName(checks, "weftd")[0]).toMatchObject({ level: "fail", message: `not ready at ${EP}: 1 peers failed to program` });
  });

  it("FAILs on a weft device that is down, and accepts no devices under host-gw", async () => {
    writeFileSync(subnetFile, SUBNET_ENV);
    installCni();
    const k = healthyKernel();
    await k.apply([{ op: "link.set", name: "weft.1", up: false }]);
    expect(byName(await doctor(k), "devices")[0]).toMatchObject({ level: "fail", message: expect.stringMatching(/^weft\.1 is down/) });

    const plain = new FakeKernel({ sysctls: { "net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1" } });
    const checks = await doctor(plain, weftd({ ...READY_STATUS, backendType: "host-gw" }));
    expect(byName(checks, "devices")[0]!.level).toBe("ok");
    expect(doctorFailed(checks)).toBe(false);
  });

  it("checks the CNI plugin is executable and WARNs when another config sorts before Weft's", async () => {
    writeFileSync(subnetFile, SUBNET_ENV);
    installCni();
    chmodSync(join(binDir, "weft"), 0o644);
    writeFileSync(join(confDir, "05-other.conflist"), JSON.stringify({ name: "other", plugins: [{ type: "bridge" }] }));
    const checks = await doctor(healthyKernel());
    expect(byName(checks, "cni plugin")[0]).toMatchObject({ level: "fail", message: expect.stringContaining("is not executable") });
    expect(byName(checks, "cni config")[0]).toMatchObject({ level: "warn", message: expect.stringContaining("the runtime uses 05-other.conflist first") });
  });
});
