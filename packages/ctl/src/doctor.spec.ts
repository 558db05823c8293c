import { chmodSync, linkSync, mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CniServer, FALLBACK_MARKER, FALLBACK_SLOT_SIZE, install } from "@weft/cni";
import { WEFT_ROUTE_PROTOCOL } from "@weft/core";
import type { KernelPort } from "@weft/kernel";
import { FakeKernel } from "@weft/kernel-testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type Check, type DoctorOptions, doctorFailed, renderDoctor, runDoctor } from "./doctor.js";
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
/** weftd's CNI socket, named by the conflist's agentSocket. */
let socketPath: string;
const closers: (() => Promise<void>)[] = [];

/** A stand-in for the built shim: the marker as a constant (not a slot), then the empty slot. */
const SHIM = Buffer.concat([Buffer.from("\x7fELF"), Buffer.from(`${FALLBACK_MARKER}\0other`), Buffer.from(FALLBACK_MARKER), Buffer.alloc(FALLBACK_SLOT_SIZE - FALLBACK_MARKER.length)]);

/** What the DaemonSet's init container does: `weft-cni install` (shim as weft, Node plugin as weft-cni, conflist). */
async function installCni() {
  writeFileSync(join(dir, "weft-cni-shim"), SHIM);
  writeFileSync(join(dir, "weft-cni.cjs"), "#!/usr/bin/env node\n");
  writeFileSync(join(dir, "weft.conflist"), JSON.stringify({ name: "cbr0", cniVersion: "1.0.0", plugins: [{ type: "weft", agentSocket: socketPath }, { type: "portmap" }] }));
  await install({ binDir, confDir, confName: "10-weft.conflist", conflist: join(dir, "weft.conflist") }, join(dir, "weft-cni.cjs"), join(dir, "weft-cni-shim"));
}

/** A kernel port that must not be used: the CNI server only answers VERSION and status in these tests. */
const noKernel = new Proxy({} as KernelPort, { get: (_t, p) => () => Promise.reject(new Error(`kernel.${String(p)} not expected`)) });

/** weftd's CNI server on socketPath, as weftd serves it. */
async function serveCni(): Promise<CniServer> {
  const s = new CniServer({ socketPath, deps: { runner: { run: () => Promise.reject(new Error("no processes")), spawn: () => { throw new Error("no processes"); } }, host: noKernel, container: () => noKernel } });
  await s.start();
  closers.push(() => s.close());
  return s;
}

/** Something else on the socket path: an HTTP server that runs `handler`. */
async function impostor(handler: Parameters<typeof createHttpServer>[1]): Promise<Server> {
  mkdirSync(join(dir, "run"), { recursive: true, mode: 0o755 });
  const s = createHttpServer(handler);
  await new Promise<void>((r) => s.listen(socketPath, r));
  closers.push(() => {
    s.closeAllConnections();
    return new Promise<void>((r) => s.close(() => r()));
  });
  return s;
}

const weftd = (status: WeftStatus, ready = status.ready) => async (endpoint: string): Promise<StatusReport> => ({ endpoint, status, readyz: { ready, reason: status.reason } });
const down = async (endpoint: string): Promise<StatusReport> => {
  throw unreachable(endpoint, "connect ECONNREFUSED 127.0.0.1:9099");
};

function doctor(kernel: FakeKernel, readWeftd: (e: string) => Promise<StatusReport> = weftd(READY_STATUS), endpointGiven = true, extra: Partial<DoctorOptions> = {}) {
  // The socket is named explicitly (as --cni-socket does) unless a test clears it: never the host's /run/weft/cni.sock.
  return runDoctor({ kernel, subnetFile, cniBinDir: binDir, cniConfDir: confDir, endpoint: EP, endpointGiven, readWeftd, cniSocket: socketPath, ...extra });
}
const byName = (checks: Check[], name: string) => checks.filter((c) => c.name === name);
const levels = (checks: Check[]) => Object.fromEntries(checks.map((c) => [c.name, c.level]));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "weftctl-doctor-"));
  subnetFile = join(dir, "subnet.env");
  binDir = join(dir, "bin");
  confDir = join(dir, "net.d");
  socketPath = join(dir, "run", "cni.sock");
  mkdirSync(binDir);
  mkdirSync(confDir);
});
afterEach(async () => {
  while (closers.length) await closers.pop()!();
  rmSync(dir, { recursive: true, force: true });
});

describe("weftctl doctor", () => {
  it("passes every check on a healthy vxlan node", async () => {
    writeFileSync(subnetFile, SUBNET_ENV);
    await installCni();
    await serveCni();
    // No --cni-socket: the socket is the one the conflist's agentSocket names, as for the shim.
    const checks = await doctor(healthyKernel(), weftd(READY_STATUS), true, { cniSocket: undefined });
    expect(levels(checks)).toEqual({
      "subnet.env": "ok",
      ip_forward: "ok",
      br_netfilter: "ok",
      "cni plugin": "ok",
      "cni config": "ok",
      "cni socket": "ok",
      "cni server": "ok",
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
    expect(text.trimEnd().split("\n").at(-1)).toBe("12 OK, 0 WARN, 0 FAIL");
    expect(byName(checks, "cni plugin")[0]!.message).toBe(`${join(binDir, "weft")} is the weft shim; its fallback ${join(binDir, "weft-cni")} is installed`);
    expect(byName(checks, "cni socket")[0]!.message).toBe(`${socketPath} (the CNI config's agentSocket): a socket, mode 0600, owned by root, in ${join(dir, "run")} (mode 0755)`.replace("root", process.getuid?.() === 0 ? "root" : `uid ${process.getuid?.()}`));
    expect(byName(checks, "cni server")[0]!.message).toMatch(new RegExp(`^weftd answers on ${socketPath} \\(CNI 0\\.1\\.0, .*1\\.1\\.0\\); 0 in flight, 1 served since it started$`));
  });

  it("FAILs on a node where weftd never ran: no subnet.env, forwarding off, no br_netfilter, no CNI plugin", async () => {
    const kernel = new FakeKernel();
    const checks = await doctor(kernel, down);
    expect(levels(checks)).toMatchObject({ "subnet.env": "fail", ip_forward: "fail", br_netfilter: "fail", "cni plugin": "fail", "cni config": "fail", "cni socket": "warn", weftd: "fail", devices: "warn", routes: "ok" });
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
    await installCni();
    const checks = await doctor(healthyKernel(), down, false);
    expect(byName(checks, "weftd")[0]).toMatchObject({ level: "warn", fix: expect.stringContaining("--endpoint") });
    expect(doctorFailed(checks)).toBe(false);
  });

  it("FAILs when the pod MTU in subnet.env is above a weft device's MTU", async () => {
    writeFileSync(subnetFile, SUBNET_ENV);
    await installCni();
    const checks = await doctor(healthyKernel({ mtu: 1400 }), weftd({ ...READY_STATUS, mtu: 1450 }));
    expect(byName(checks, "mtu")[0]).toMatchObject({ level: "fail", message: "pod MTU 1450 (subnet.env) is above weft.1's MTU 1400: large pod packets are dropped on the tunnel" });
  });

  it("checks IPv6 forwarding and bridge-nf-call-ip6tables when subnet.env has IPv6", async () => {
    writeFileSync(subnetFile, SUBNET_ENV.replace("FLANNEL_MTU", "FLANNEL_IPV6_NETWORK=2001:2::/48\nFLANNEL_IPV6_SUBNET=2001:2:0:1::1/64\nFLANNEL_MTU"));
    await installCni();
    const checks = await doctor(healthyKernel({ sysctls: { "net.bridge.bridge-nf-call-ip6tables": "0" } }), weftd({ ...READY_STATUS, ipv6Subnet: "2001:2:0:1::/64" }));
    expect(byName(checks, "ipv6 forwarding")[0]).toMatchObject({ level: "fail", message: expect.stringContaining("net.ipv6.conf.all.forwarding = 0") });
    expect(byName(checks, "br_netfilter").map((c) => c.level)).toEqual(["ok", "fail"]);
    expect(byName(checks, "subnet.env vs weftd")[0]!.level).toBe("ok");
  });

  it("FAILs on a subnet.env that is unparseable or disagrees with the running weftd", async () => {
    await installCni();
    writeFileSync(subnetFile, "FLANNEL_SUBNET=not-a-cidr\n");
    let checks = await doctor(healthyKernel());
    expect(byName(checks, "subnet.env")[0]).toMatchObject({ level: "fail", message: expect.stringContaining("FLANNEL_SUBNET=not-a-cidr is not an IPv4 address/prefix") });

    writeFileSync(subnetFile, SUBNET_ENV.replace("198.19.1.1/24", "198.19.7.1/24"));
    checks = await doctor(healthyKernel());
    expect(byName(checks, "subnet.env vs weftd")[0]).toMatchObject({ level: "fail", message: expect.stringContaining("FLANNEL_SUBNET 198.19.7.1/24 is not in weftd's subnet 198.19.1.0/24") });
  });

  it("FAILs when weftd is not ready, with its reason", async () => {
    writeFileSync(subnetFile, SUBNET_ENV.replace("1450", "1430"));
    await installCni();
    const checks = await doctor(healthyKernel(), weftd({ ...NOT_READY_STATUS, ipv6Subnet: undefined as never }));
    expect(byName(checks, "weftd")[0]).toMatchObject({ level: "fail", message: `not ready at ${EP}: 1 peers failed to program` });
  });

  it("FAILs on a weft device that is down, and accepts no devices under host-gw", async () => {
    writeFileSync(subnetFile, SUBNET_ENV);
    await installCni();
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
    await installCni();
    chmodSync(join(binDir, "weft"), 0o644);
    writeFileSync(join(confDir, "05-other.conflist"), JSON.stringify({ name: "other", plugins: [{ type: "bridge" }] }));
    const checks = await doctor(healthyKernel());
    expect(byName(checks, "cni plugin")[0]).toMatchObject({ level: "fail", message: expect.stringContaining("is not executable") });
    expect(byName(checks, "cni config")[0]).toMatchObject({ level: "warn", message: expect.stringContaining("the runtime uses 05-other.conflist first") });
  });
  describe("the CNI path (docs/cni.md): the shim and its fallback, weftd's socket, weftd answering on it", () => {
    const weftBin = () => join(binDir, "weft");
    const fallbackBin = () => join(binDir, "weft-cni");
    async function cniChecks(extra: Partial<DoctorOptions> = {}) {
      const checks = await doctor(healthyKernel(), weftd(READY_STATUS), true, extra);
      return { plugin: byName(checks, "cni plugin"), socket: byName(checks, "cni socket"), server: byName(checks, "cni server"), text: renderDoctor(checks) };
    }

    it("FAILs on a shim without its fallback, and on a fallback that is missing, not executable or has no interpreter", async () => {
      writeFileSync(subnetFile, SUBNET_ENV);
      await installCni();
      await serveCni();
      const meanwhile = "pods work through weftd, but while weftd is down or restarting every ADD/DEL fails with CNI error 11";
      const reinstall = `run weft-cni install --bin-dir ${binDir} --conf-dir ${confDir} (the weft DaemonSet's init container does this)`;

      unlinkSync(fallbackBin());
      expect((await cniChecks()).plugin).toEqual([{ name: "cni plugin", level: "fail", message: `${weftBin()}'s fallback ${fallbackBin()} does not exist: ${meanwhile}`, fix: reinstall }]);

      writeFileSync(fallbackBin(), "#!/usr/bin/env node\n", { mode: 0o644 });
      expect((await cniChecks()).plugin[0]).toMatchObject({ level: "fail", message: `${weftBin()}'s fallback ${fallbackBin()} is not an executable file: ${meanwhile}`, fix: `chmod +x ${fallbackBin()}, or ${reinstall}` });

      writeFileSync(fallbackBin(), "#!/nonexistent/node\n", { mode: 0o755 });
      chmodSync(fallbackBin(), 0o755);
      expect((await cniChecks()).plugin[0]).toMatchObject({ level: "fail", message: expect.stringContaining("runs /nonexistent/node, which does not exist or is not executable"), fix: expect.stringContaining("--node <path of node>") });

      // The shim as built, never installed: its slot is empty.
      writeFileSync(weftBin(), SHIM, { mode: 0o755 });
      expect((await cniChecks()).plugin[0]).toMatchObject({ level: "fail", message: `${weftBin()} is the weft shim with no fallback written into it: ${meanwhile}`, fix: reinstall });
    });

    it("WARNs when weft is the Node plugin itself (an install from before the shim), FAILs on another program", async () => {
      writeFileSync(subnetFile, SUBNET_ENV);
      await installCni();
      await serveCni();
      writeFileSync(weftBin(), "#!/usr/bin/env node\nrequire('./plugin');\n");
      expect((await cniChecks()).plugin[0]).toMatchObject({ level: "warn", message: expect.stringContaining("is a script (the Node plugin of an older install?), not the weft shim: every pod ADD/DEL starts a Node process") });
      writeFileSync(weftBin(), Buffer.from("\x7fELF flannel"));
      expect((await cniChecks()).plugin[0]).toMatchObject({ level: "fail", message: `${weftBin()} is not the weft shim (it has no fallback slot): another program is installed under the weft plugin's name` });
    });

    it("WARNs when weftd does not serve the socket (the fallback does the work), FAILs when the path is not a socket", async () => {
      writeFileSync(subnetFile, SUBNET_ENV);
      await installCni();
      let r = await cniChecks();
      expect(r.socket).toEqual([
        {
          name: "cni socket",
          level: "warn",
          message: `${socketPath} (--cni-socket) does not exist: weftd is not serving the weft shim; every pod ADD/DEL runs the Node fallback meanwhile (it works, ~3x slower, ~42 MB per pod)`,
          fix: 'start weftd, or look in its log for "not serving the weft CNI shim"; its --cni-socket must be the agentSocket of the CNI config (default /run/weft/cni.sock)',
        },
      ]);
      expect(r.server).toEqual([]);

      mkdirSync(join(dir, "run"), { mode: 0o755 });
      writeFileSync(socketPath, "");
      r = await cniChecks();
      expect(r.socket).toEqual([expect.objectContaining({ level: "fail", message: expect.stringContaining("exists but is not a socket: weftd will not serve there; every pod ADD/DEL runs the Node fallback"), fix: `remove ${socketPath} and restart weftd` })]);
    });

    it("FAILs on a socket others can use: mode, owner, a directory others can write", async () => {
      writeFileSync(subnetFile, SUBNET_ENV);
      await installCni();
      await serveCni();
      chmodSync(socketPath, 0o666);
      let r = await cniChecks();
      expect(r.socket).toEqual([expect.objectContaining({ level: "fail", message: `${socketPath} has mode 0666: users other than its owner can connect and create or delete pod interfaces`, fix: expect.stringMatching(/^chmod 600 .*restart weftd/) })]);
      // Still answering: the server check is separate.
      expect(r.server[0]!.level).toBe("ok");
      chmodSync(socketPath, 0o600);

      // weftd's user is someone else than the socket's and its directory's owner.
      r = await cniChecks({ cniSocketOwners: [4242] });
      expect(r.socket.map((c) => [c.level, c.message.replace(/uid \d+,/, "uid N,")])).toEqual([
        ["fail", `${socketPath} is owned by uid N, not uid 4242: that user can create and delete pod interfaces and addresses on this node`],
        ["fail", `the socket's directory ${join(dir, "run")} is owned by uid N, not uid 4242: someone else can replace the socket and answer the shim in weftd's place`],
      ]);

      chmodSync(join(dir, "run"), 0o777);
      r = await cniChecks();
      expect(r.socket).toEqual([
        expect.objectContaining({ level: "fail", message: expect.stringContaining(`directory ${join(dir, "run")} has mode 0777, writable by group or others`), fix: expect.stringContaining(`chmod go-w ${join(dir, "run")}`) }),
      ]);
      chmodSync(join(dir, "run"), 0o755);
      expect((await cniChecks()).socket[0]!.level).toBe("ok");
    });

    it("WARNs on a socket nobody accepts on, FAILs on one that accepts and never answers or answers as something else", async () => {
      writeFileSync(subnetFile, SUBNET_ENV);
      await installCni();
      // What a SIGKILLed weftd leaves: a socket file with no listener (a second link survives the listener's close).
      await impostor(() => undefined);
      chmodSync(socketPath, 0o600);
      linkSync(socketPath, join(dir, "run", "left.sock"));
      await closers.pop()!();
      linkSync(join(dir, "run", "left.sock"), socketPath);
      let r = await cniChecks();
      expect(r.socket[0]!.level).toBe("ok");
      expect(r.server).toEqual([expect.objectContaining({ level: "warn", message: `nobody accepts on ${socketPath} (left by a weftd that stopped or died): every pod ADD/DEL runs the Node fallback meanwhile (it works, ~3x slower, ~42 MB per pod)` })]);
      unlinkSync(socketPath);

      await impostor(() => undefined); // accepts, never answers: a hung weftd
      chmodSync(socketPath, 0o600);
      r = await cniChecks({ cniSocketTimeoutMs: 200 });
      expect(r.server).toEqual([
        expect.objectContaining({
          level: "fail",
          message: `${socketPath} accepts connections but weftd does not answer within 200 ms: each pod ADD/DEL waits agentTimeoutSeconds (default 60 s) and fails with CNI error 11; the fallback runs only when nothing accepts`,
          fix: expect.stringContaining("restart weftd (pods run the Node fallback while it is down)"),
        }),
      ]);
      await closers.pop()!();

      await impostor((_req, res) => res.end("hello\n"));
      chmodSync(socketPath, 0o600);
      r = await cniChecks();
      expect(r.server).toEqual([expect.objectContaining({ level: "fail", message: `${socketPath} answers, but not as weftd's CNI server: CNI VERSION got HTTP 200, exit code none: "hello\\n"` })]);
      expect(r.text).toContain(`fix: find what serves it (ss -xlp | grep ${socketPath}), stop it, and restart weftd`);
    });
  });
});
