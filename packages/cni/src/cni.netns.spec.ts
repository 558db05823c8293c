/**
 * weft-cni against the real kernel, run the way kubelet runs it: the BUILT executable as its own process, CNI_*
 * in the environment, the network config on stdin. Its V8 code cache goes to the node's temporary directory. The "node" is a fresh namespace (the plugin runs under
 * `ip netns exec <node>`, which also remounts /sys for it), each "pod" another namespace.
 *
 * The whole suite runs three times:
 * - "Node plugin": dist/weft-cni.cjs exec'd directly (the fallback on its own);
 * - "shim + server": `weft-cni install` puts the C shim as `weft` and the fallback into a bin dir of the node;
 *   the shim is exec'd, and weftd's CNI server (./server.ts, started by serve.spec-helper.ts inside the node
 *   namespace) does the work; the config's `agentSocket` points at it. WEFT_CNI_FAULT travels in CNI_ARGS;
 * - "shim, server down": the same installed shim with no server: it executes the fallback.
 * Then the shim's own cases: the server killed in the middle of a burst of ADDs, an oversized config.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer as createNetServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { RunResult } from "@weft/kernel";
import { createNetns, labRunner, type TestNetns } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { hostVethName } from "./direct/plan.js";
import { install } from "./install.js";
import { startLabCniServer, stopLabCniServer } from "./lab-server.spec-helper.js";

const BUNDLE = fileURLToPath(new URL("../dist/weft-cni.cjs", import.meta.url));
const SHIM = fileURLToPath(new URL("../dist/weft-cni-shim", import.meta.url));

type Mode = "node" | "shim" | "fallback";
const LABEL: Record<Mode, string> = { node: "Node plugin", shim: "shim + server", fallback: "shim, server down" };
let mode: Mode = "node";
const startServer = (ns: TestNetns, socket: string) => startLabCniServer(ns.name, socket);
const stopServer = stopLabCniServer;
const REF_BIN = "/usr/lib/cni";

const DUAL = [
  "FLANNEL_NETWORK=198.19.0.0/16",
  "FLANNEL_SUBNET=198.19.10.1/24",
  "FLANNEL_IPV6_NETWORK=2001:2::/48",
  "FLANNEL_IPV6_SUBNET=2001:2:0:10::1/64",
  "FLANNEL_MTU=1450",
  "FLANNEL_IPMASQ=true",
].join("\n");
const V4 = ["FLANNEL_NETWORK=198.19.0.0/16", "FLANNEL_SUBNET=198.19.11.1/24", "FLANNEL_MTU=1450", "FLANNEL_IPMASQ=true"].join("\n");
const V6 = ["FLANNEL_IPV6_NETWORK=2001:2::/48", "FLANNEL_IPV6_SUBNET=2001:2:0:12::1/64", "FLANNEL_MTU=1450", "FLANNEL_IPMASQ=false"].join("\n");

interface Node {
  readonly ns: TestNetns;
  readonly dir: string;
  readonly conf: Record<string, unknown>;
}

const cleanups: Array<() => Promise<void>> = [];
/** Node dirs of the running test in "shim + server" mode: their plugin must never have fallen back. */
const servedNodes: string[] = [];
afterEach(async () => {
  const fellBack = servedNodes.splice(0).filter((d) => existsSync(join(d, "code-cache")));
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
  // The fallback (a Node process) writes its code cache after a successful ADD; served requests never do.
  expect(fellBack, "the shim ran the fallback although the server was up").toEqual([]);
});

async function makeNode(subnetEnv: string, extra: Record<string, unknown> = {}): Promise<Node> {
  const ns = await createNetns("wcn");
  const dir = mkdtempSync(join(tmpdir(), "weft-cni-netns-"));
  cleanups.push(async () => {
    await ns.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  writeFileSync(join(dir, "subnet.env"), `${subnetEnv}\n`);
  const conf = {
    cniVersion: "1.1.0",
    name: "cbr0",
    type: "weft",
    subnetFile: join(dir, "subnet.env"),
    dataDir: join(dir, "weft"),
    isDefaultGateway: true,
    hairpinMode: true,
    ipam: { dataDir: join(dir, "ipam") },
    ...(mode === "node" ? {} : { agentSocket: join(dir, "cni.sock") }),
    ...extra,
  };
  if (mode !== "node") {
    await install({ binDir: join(dir, "bin"), confDir: join(dir, "net.d"), confName: "10-weft.conflist", node: process.execPath }, BUNDLE, SHIM);
  }
  if (mode === "shim") {
    const server = await startServer(ns, join(dir, "cni.sock"));
    servedNodes.push(dir);
    // Runs before the namespace goes (cleanups run newest first).
    cleanups.push(() => stopServer(server));
  }
  return { ns, dir, conf };
}

async function makePod(): Promise<TestNetns> {
  const ns = await createNetns("wcp");
  cleanups.push(() => ns.destroy());
  return ns;
}

function cni(node: Node, command: string, pod: { path: string } | string, id: string, conf: Record<string, unknown> = node.conf, extraEnv: Record<string, string> = {}): Promise<RunResult> {
  const netns = typeof pod === "string" ? pod : pod.path;
  const [file, args] = mode === "node" ? [process.execPath, [BUNDLE]] : [join(node.dir, "bin", "weft"), []];
  // The shim forwards CNI_* only: the server takes the test's fault point from CNI_ARGS.
  const fault: Record<string, string> = mode === "shim" && extraEnv.WEFT_CNI_FAULT ? { CNI_ARGS: `WEFT_CNI_FAULT=${extraEnv.WEFT_CNI_FAULT}` } : {};
  return node.ns.run(file, args, {
    env: {
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: netns,
      CNI_IFNAME: "eth0",
      CNI_PATH: REF_BIN,
      WEFT_CNI_CODE_CACHE_DIR: join(node.dir, "code-cache"),
      ...extraEnv,
      ...fault,
    },
    input: JSON.stringify(conf),
    reject: false,
    timeoutMs: 60_000,
  });
}

function ok(r: RunResult): Record<string, any> {
  if (r.exitCode !== 0) throw new Error(`plugin failed (exit ${r.exitCode}): ${r.stdout} ${r.stderr}`);
  return r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, any>) : {};
}

async function ping(pod: TestNetns, ip: string): Promise<boolean> {
  const r = await pod.run("ping", ["-c", "1", "-W", "2", ip], { reject: false });
  return r.exitCode === 0;
}

async function podAddrs(pod: TestNetns): Promise<string[]> {
  const r = await pod.ip(["-j", "addr", "show", "dev", "eth0"], { reject: false });
  if (r.exitCode !== 0) return [];
  const j = JSON.parse(r.stdout) as Array<{ addr_info: Array<{ local: string; prefixlen: number; scope: string }> }>;
  return j.flatMap((l) => l.addr_info.filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`));
}

async function nodeLinks(node: Node): Promise<string[]> {
  const r = await node.ns.ip(["-j", "link", "show"]);
  return (JSON.parse(r.stdout) as Array<{ ifname: string }>).map((l) => l.ifname);
}

function reservations(node: Node): string[] {
  const d = join(node.dir, "ipam", "cbr0");
  return existsSync(d) ? readdirSync(d).filter((f) => /^[0-9a-f]+[.:]/.test(f) && !f.startsWith("last")).sort() : [];
}

const suite = (m: Mode) => describeReal(
  `weft-cni on the real kernel: ${LABEL[m]}`,
  () => {
    beforeAll(() => {
      mode = m;
      if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run \`npm run build\` in packages/cni first`);
      if (m !== "node" && !existsSync(SHIM)) throw new Error(`${SHIM} is missing: run \`npm run build\` in packages/cni first (needs gcc and libc6-dev)`);
    });

    it("IPv4: ADD, CHECK, DEL, DEL again, CHECK fails after DEL", async () => {
      const node = await makeNode(V4);
      const pod = await makePod();
      const res = ok(await cni(node, "ADD", pod, "c-v4"));
      expect(res.cniVersion).toBe("1.1.0");
      expect(res.ips).toEqual([{ interface: 2, address: "198.19.11.2/24", gateway: "198.19.11.1" }]);
      expect(res.interfaces.map((i: { name: string }) => i.name)).toEqual(["cni0", hostVethName("cbr0", "c-v4", "eth0"), "eth0"]);
      expect(res.interfaces[2]).toMatchObject({ mac: "0a:58:c6:13:0b:02", mtu: 1450, sandbox: pod.path });
      expect(res.routes).toEqual([{ dst: "198.19.0.0/16" }, { dst: "0.0.0.0/0", gw: "198.19.11.1" }]);

      // Kernel state, both sides.
      expect(await podAddrs(pod)).toEqual(["198.19.11.2/24"]);
      const routes = (await pod.ip(["route", "show"])).stdout;
      expect(routes).toContain("default via 198.19.11.1 dev eth0");
      expect(routes).toContain("198.19.0.0/16 via 198.19.11.1 dev eth0");
      expect((await node.ns.ip(["-br", "addr", "show", "dev", "cni0"])).stdout).toContain("198.19.11.1/24");
      const veth = hostVethName("cbr0", "c-v4", "eth0");
      expect((await node.ns.run("cat", [`/sys/class/net/${veth}/brport/hairpin_mode`, `/sys/class/net/${veth}/mtu`])).stdout.split("\n").slice(0, 2)).toEqual(["1", "1450"]);
      expect((await node.ns.ip(["-j", "link", "show", "dev", veth])).stdout).toContain('"master":"cni0"');
      expect(await ping(pod, "198.19.11.1")).toBe(true);
      expect(reservations(node)).toEqual(["198.19.11.2"]);

      expect(ok(await cni(node, "CHECK", pod, "c-v4", { ...node.conf, prevResult: res }))).toEqual({});

      ok(await cni(node, "DEL", pod, "c-v4"));
      expect(await nodeLinks(node)).not.toContain(veth);
      expect(await podAddrs(pod)).toEqual([]);
      expect(reservations(node)).toEqual([]);
      ok(await cni(node, "DEL", pod, "c-v4"));

      const after = await cni(node, "CHECK", pod, "c-v4", { ...node.conf, prevResult: res });
      expect(after.exitCode).toBe(1);
      expect(JSON.parse(after.stdout).msg).toMatch(/CHECK of c-v4\/eth0 failed/);
    });

    it("CHECK fails, naming what, when a route, an address or the reservation is gone behind the plugin's back", async () => {
      const node = await makeNode(V4);
      const pod = await makePod();
      const res = ok(await cni(node, "ADD", pod, "c-chk"));
      const check = async () => {
        const r = await cni(node, "CHECK", pod, "c-chk", { ...node.conf, prevResult: res });
        return r.exitCode === 0 ? "ok" : (JSON.parse(r.stdout).msg as string);
      };
      expect(await check()).toBe("ok");
      await pod.ip(["route", "del", "198.19.0.0/16"]);
      expect(await check()).toMatch(/CHECK of c-chk\/eth0 failed: route to 198\.19\.0\.0\/16 is missing/);
      await pod.ip(["route", "add", "198.19.0.0/16", "via", "198.19.11.1", "dev", "eth0"]);
      expect(await check()).toBe("ok");
      const reservation = join(node.dir, "ipam", "cbr0", "198.19.11.2");
      const held = readFileSync(reservation, "utf8");
      rmSync(reservation);
      expect(await check()).toMatch(/failed: address 198\.19\.11\.2 is not reserved for this container/);
      writeFileSync(reservation, held);
      expect(await check()).toBe("ok");
      // Last: taking the address away also takes the routes through it; the address is what CHECK names first.
      await pod.ip(["addr", "del", "198.19.11.2/24", "dev", "eth0"]);
      expect(await check()).toMatch(/failed: address 198\.19\.11\.2\/24 is missing on eth0/);
      ok(await cni(node, "DEL", pod, "c-chk"));
    });

    // The code cache is the Node plugin's (the shim's fallback): with a server up no Node process per pod starts, so
    // the case is declared only for the runs where the Node plugin does the work (not a skip: there is nothing to test).
    if (m !== "shim") it("keeps a V8 code cache per command: written after the first successful ADD and DEL, used from then on", async () => {
      const node = await makeNode(V4);
      const cacheDir = join(node.dir, "code-cache");
      const status = (r: RunResult) => /weft-cni: code cache (\w+)/.exec(r.stderr)?.[1];
      const trace = { WEFT_CNI_TRACE: "1" };
      const first = await makePod();
      // A failed run writes nothing: its cache would lack the code a real ADD runs.
      const failed = await cni(node, "ADD", first, "c-cc0", { ...node.conf, subnetFile: join(node.dir, "missing.env") }, trace);
      expect(failed.exitCode).toBe(1);
      expect(status(failed)).toBe("missing");
      expect(existsSync(cacheDir)).toBe(false);

      const a1 = await cni(node, "ADD", first, "c-cc1", node.conf, trace);
      ok(a1);
      expect(status(a1)).toBe("missing");
      expect(readdirSync(cacheDir).filter((f) => f.endsWith(".v8"))).toEqual([expect.stringMatching(/^weft-cni-[0-9a-f]{16}-v\d+\.\d+\.\d+-\w+-ADD\.v8$/)]);
      expect(statSync(cacheDir).mode & 0o777).toBe(0o700);
      const d1 = await cni(node, "DEL", first, "c-cc1", node.conf, trace);
      ok(d1);
      expect(status(d1)).toBe("missing");
      expect(readdirSync(cacheDir).filter((f) => f.endsWith(".v8")).length).toBe(2);

      const second = await makePod();
      const a2 = await cni(node, "ADD", second, "c-cc2", node.conf, trace);
      expect(ok(a2).ips[0].address).toBe("198.19.11.3/24");
      expect(status(a2)).toBe("used");
      expect(await ping(second, "198.19.11.1")).toBe(true);
      const d2 = await cni(node, "DEL", second, "c-cc2", node.conf, trace);
      ok(d2);
      expect(status(d2)).toBe("used");
      expect(reservations(node)).toEqual([]);
    });

    it("IPv6 only: the address is usable at once (no DAD wait), routes via the bridge", async () => {
      const node = await makeNode(V6);
      const pod = await makePod();
      const res = ok(await cni(node, "ADD", pod, "c-v6"));
      expect(res.ips).toEqual([{ interface: 2, address: "2001:2:0:12::2/64", gateway: "2001:2:0:12::1" }]);
      expect(res.routes).toEqual([{ dst: "2001:2::/48" }, { dst: "::/0", gw: "2001:2:0:12::1" }]);
      // Added with nodad: not tentative, usable at once (only the link-local address runs DAD).
      const global6 = (await pod.ip(["-6", "addr", "show", "dev", "eth0", "scope", "global"])).stdout;
      expect(global6).toContain("2001:2:0:12::2/64");
      expect(global6).not.toContain("tentative");
      expect(await ping(pod, "2001:2:0:12::1")).toBe(true);
      ok(await cni(node, "CHECK", pod, "c-v6", { ...node.conf, prevResult: res }));
      ok(await cni(node, "DEL", pod, "c-v6"));
      expect(reservations(node)).toEqual([]);
    });

    it("dual stack with cniVersion 0.4.0: one address per family, answered in 0.4.0's format", async () => {
      const node = await makeNode(DUAL, { cniVersion: "0.4.0" });
      const pod = await makePod();
      const res = ok(await cni(node, "ADD", pod, "c-ds"));
      expect(res.cniVersion).toBe("0.4.0");
      expect(res.ips).toEqual([
        { version: "4", interface: 2, address: "198.19.10.2/24", gateway: "198.19.10.1" },
        { version: "6", interface: 2, address: "2001:2:0:10::2/64", gateway: "2001:2:0:10::1" },
      ]);
      expect(await podAddrs(pod)).toEqual(["198.19.10.2/24", "2001:2:0:10::2/64"]);
      expect(await ping(pod, "198.19.10.1")).toBe(true);
      expect(await ping(pod, "2001:2:0:10::1")).toBe(true);
      ok(await cni(node, "CHECK", pod, "c-ds", { ...node.conf, prevResult: res }));
      ok(await cni(node, "DEL", pod, "c-ds"));
      expect(reservations(node)).toEqual([]);
    });

    it("works with a /proc/<pid>/ns/net path (nsenter) as CNI_NETNS", async () => {
      const node = await makeNode(V4);
      const pod = await makePod();
      const holder = labRunner.spawn("ip", ["netns", "exec", pod.name, "sleep", "60"]);
      cleanups.push(async () => holder.kill("SIGKILL"));
      const path = `/proc/${holder.pid}/ns/net`;
      // Until `ip netns exec` has called setns, the process is still in OUR namespace: wait for the switch
      // (same namespace inode as the pod's bind mount) so nothing is ever created outside the test's namespaces.
      const inPod = () => {
        try {
          return statSync(path).ino === statSync(pod.path).ino;
        } catch {
          return false;
        }
      };
      for (let i = 0; i < 250 && !inPod(); i++) await new Promise((r) => setTimeout(r, 20));
      expect(inPod()).toBe(true);
      const res = ok(await cni(node, "ADD", path, "c-proc"));
      expect(res.interfaces[2].sandbox).toBe(path);
      expect(await podAddrs(pod)).toEqual(["198.19.11.2/24"]);
      ok(await cni(node, "CHECK", path, "c-proc", { ...node.conf, prevResult: res }));
      ok(await cni(node, "DEL", path, "c-proc"));
      expect(await podAddrs(pod)).toEqual([]);
    });

    it("DEL after the container namespace is gone releases the address and succeeds", async () => {
      const node = await makeNode(V4);
      const pod = await makePod();
      ok(await cni(node, "ADD", pod, "c-gone"));
      expect(reservations(node)).toEqual(["198.19.11.2"]);
      await pod.destroy();
      ok(await cni(node, "DEL", pod, "c-gone"));
      ok(await cni(node, "DEL", "", "c-gone"));
      expect(reservations(node)).toEqual([]);
      expect(await nodeLinks(node)).not.toContain(hostVethName("cbr0", "c-gone", "eth0"));
    });

    it("a failed ADD (injected after the veth exists) rolls everything back", async () => {
      const node = await makeNode(DUAL);
      const pod = await makePod();
      const r = await cni(node, "ADD", pod, "c-fault", node.conf, { WEFT_CNI_FAULT: "after-veth" });
      expect(r.exitCode).toBe(1);
      expect(JSON.parse(r.stdout)).toMatchObject({ cniVersion: "1.1.0", code: 999, msg: "injected failure at after-veth (WEFT_CNI_FAULT)" });
      expect(await nodeLinks(node)).not.toContain(hostVethName("cbr0", "c-fault", "eth0"));
      expect((await pod.ip(["-br", "link"])).stdout).not.toContain("eth0");
      expect(reservations(node)).toEqual([]);
      // The same container can then be added for real.
      ok(await cni(node, "ADD", pod, "c-fault"));
      expect(await ping(pod, "198.19.10.1")).toBe(true);
    });

    it("an ADD into a namespace that already has eth0 fails clearly and leaves nothing behind", async () => {
      const node = await makeNode(V4);
      const pod = await makePod();
      await pod.ip(["link", "add", "eth0", "type", "veth", "peer", "name", "other0"]);
      const r = await cni(node, "ADD", pod, "c-clash");
      expect(r.exitCode).toBe(1);
      expect(JSON.parse(r.stdout).msg).toMatch(/interface eth0 already exists in the container namespace/);
      expect(await nodeLinks(node)).not.toContain(hostVethName("cbr0", "c-clash", "eth0"));
      expect(reservations(node)).toEqual([]);
      expect((await pod.ip(["-br", "link"])).stdout).toContain("eth0"); // the pod's own interface is untouched
    });

    it("a repeated ADD of a live container fails, and its rollback leaves the live pod's address, interface and traffic alone", async () => {
      const node = await makeNode(V4);
      const pod = await makePod();
      const first = ok(await cni(node, "ADD", pod, "c-twice"));
      const r = await cni(node, "ADD", pod, "c-twice"); // a runtime retrying after a timeout, without a DEL
      expect(r.exitCode).toBe(1);
      expect(JSON.parse(r.stdout).msg).toMatch(/already exists/);
      expect(reservations(node)).toEqual(["198.19.11.2"]);
      expect(await podAddrs(pod)).toEqual([first.ips[0].address]);
      expect(await nodeLinks(node)).toContain(hostVethName("cbr0", "c-twice", "eth0"));
      expect(await ping(pod, "198.19.11.1")).toBe(true);
      // The next pod gets another address.
      const other = await makePod();
      expect(ok(await cni(node, "ADD", other, "c-next")).ips[0].address).toBe("198.19.11.3/24");
    });

    it("delegate mode: a repeated ADD that fails does not DEL the live attachment or drop its saved config", async () => {
      const node = await makeNode(V4, { delegate: {}, cniVersion: "1.0.0" });
      const pod = await makePod();
      ok(await cni(node, "ADD", pod, "c-deleg2"));
      const saved = join(node.dir, "weft", "c-deleg2");
      const before = (await node.ns.run("cat", [saved])).stdout;
      // The reference bridge refuses a second eth0 in the namespace; whatever it answers, the live pod stays.
      await cni(node, "ADD", pod, "c-deleg2", { ...node.conf, mtu: 1400 });
      expect((await node.ns.run("cat", [saved])).stdout).toBe(before);
      expect(await podAddrs(pod)).toEqual(["198.19.11.2/24"]);
      expect(await ping(pod, "198.19.11.1")).toBe(true);
      ok(await cni(node, "DEL", pod, "c-deleg2"));
      expect(await podAddrs(pod)).toEqual([]);
    });

    it("configuration errors the node can show are found before anything is reserved or written (code 7)", async () => {
      const node = await makeNode(V4);
      const pod = await makePod();
      const forward = (await node.ns.run("cat", ["/proc/sys/net/ipv4/ip_forward"])).stdout.trim();
      const links = await nodeLinks(node);
      // A route of a family the pod gets no address in.
      const r1 = await cni(node, "ADD", pod, "c-cfg", { ...node.conf, ipam: { ...(node.conf.ipam as object), routes: [{ dst: "2001:2:0:9::/64" }] } });
      expect(r1.exitCode).toBe(1);
      expect(JSON.parse(r1.stdout)).toMatchObject({ code: 7, msg: expect.stringMatching(/"ipam.routes\[0\].dst" 2001:2:0:9::\/64 is IPv6 but the pod gets no IPv6 address/) });
      // "bridge" names a device that is not a bridge.
      await node.ns.ip(["link", "add", "notbr0", "type", "veth", "peer", "name", "notbr1"]);
      const r2 = await cni(node, "ADD", pod, "c-cfg", { ...node.conf, bridge: "notbr0" });
      expect(r2.exitCode).toBe(1);
      expect(JSON.parse(r2.stdout)).toMatchObject({ code: 7, msg: expect.stringContaining('"bridge" is "notbr0", but a device of that name exists and is not a bridge') });
      // Nothing reserved (not even last_reserved_ip), no bridge, no veth, ip_forward as it was.
      expect(existsSync(join(node.dir, "ipam", "cbr0")) ? readdirSync(join(node.dir, "ipam", "cbr0")).filter((f) => f !== "lock") : []).toEqual([]);
      expect((await nodeLinks(node)).sort()).toEqual([...links, "notbr0", "notbr1"].sort());
      expect((await node.ns.run("cat", ["/proc/sys/net/ipv4/ip_forward"])).stdout.trim()).toBe(forward);
    });

    it("50 concurrent ADDs: 50 distinct addresses, 50 working interfaces; 50 concurrent DELs clean up", async () => {
      const node = await makeNode(V4);
      const pods = await Promise.all(Array.from({ length: 50 }, () => makePod()));
      const results = await Promise.all(pods.map((p, i) => cni(node, "ADD", p, `conc-${i}`)));
      const addrs = results.map((r) => ok(r).ips[0].address as string);
      expect(new Set(addrs).size).toBe(50);
      expect(reservations(node)).toHaveLength(50);
      const pings: boolean[] = [];
      for (let i = 0; i < pods.length; i += 10) pings.push(...(await Promise.all(pods.slice(i, i + 10).map((p) => ping(p, "198.19.11.1")))));
      expect(pings.filter(Boolean)).toHaveLength(50);
      const dels = await Promise.all(pods.map((p, i) => cni(node, "DEL", p, `conc-${i}`)));
      expect(dels.map((d) => d.exitCode)).toEqual(new Array(50).fill(0));
      expect(reservations(node)).toEqual([]);
      expect((await nodeLinks(node)).filter((l) => l.startsWith("veth"))).toEqual([]);
    });

    it("delegate mode hands the work to the reference bridge + host-local, and DELs with the saved config", async () => {
      const node = await makeNode(V4, { delegate: { hairpinMode: true, isDefaultGateway: true }, cniVersion: "1.0.0" });
      const pod = await makePod();
      const res = ok(await cni(node, "ADD", pod, "c-deleg"));
      expect(res.ips[0].address).toBe("198.19.11.2/24");
      expect(res.interfaces.map((i: { name: string }) => i.name)).toContain("cni0");
      const saved = JSON.parse((await node.ns.run("cat", [join(node.dir, "weft", "c-deleg")])).stdout);
      expect(saved).toMatchObject({ type: "bridge", name: "cbr0", ipMasq: false, mtu: 1450, isGateway: true, ipam: { type: "host-local", ranges: [[{ subnet: "198.19.11.0/24" }]] } });
      expect(await ping(pod, "198.19.11.1")).toBe(true);
      // The subnet file going away must not stop DEL: it uses the saved config.
      rmSync(join(node.dir, "subnet.env"));
      ok(await cni(node, "DEL", pod, "c-deleg"));
      expect(existsSync(join(node.dir, "weft", "c-deleg"))).toBe(false);
      expect(await podAddrs(pod)).toEqual([]);
      ok(await cni(node, "DEL", pod, "c-deleg"));
    });
  },
  { tools: ["ping", "nsenter", "sysctl", `${REF_BIN}/bridge`, `${REF_BIN}/host-local`] },
);

suite("node");
suite("shim");
suite("fallback");

describeReal(
  "the weft shim and weftd's CNI server",
  () => {
    beforeAll(() => {
      mode = "shim";
      if (!existsSync(SHIM)) throw new Error(`${SHIM} is missing: run \`npm run build\` in packages/cni first (needs gcc and libc6-dev)`);
    });

    it("serves on a 0600 root-owned socket in a directory only root can write; SIGTERM removes it", async () => {
      const node = await makeNode(V4);
      const socket = join(node.dir, "cni.sock");
      const st = statSync(socket);
      expect(st.isSocket()).toBe(true);
      expect(st.mode & 0o777).toBe(0o600);
      expect(st.uid).toBe(0);
      const dir = statSync(node.dir);
      expect(dir.uid).toBe(0);
      expect(dir.mode & 0o022).toBe(0);
      const pod = await makePod();
      ok(await cni(node, "ADD", pod, "c-sock"));
      ok(await cni(node, "DEL", pod, "c-sock"));
      const other = await startServer(node.ns, join(node.dir, "cni3.sock"));
      expect(statSync(other.socket).mode & 0o777).toBe(0o600);
      await stopServer(other);
      expect(existsSync(other.socket)).toBe(false);
    });

    it("the server killed in the middle of 20 ADDs: each ADD succeeds or returns a CNI error; after DELs nothing is left", async () => {
      const node = await makeNode(V4);
      // This test means the fallback to run once the server is dead.
      servedNodes.splice(servedNodes.indexOf(node.dir), 1);
      // A second server, on its own socket, to kill (makeNode's stays up, unused).
      const socket = join(node.dir, "cni.sock");
      const pods = await Promise.all(Array.from({ length: 20 }, () => makePod()));
      const server = await startServer(node.ns, join(node.dir, "cni2.sock"));
      const conf = { ...node.conf, agentSocket: server.socket };
      expect(existsSync(socket)).toBe(true);
      // Ten ADDs, the server killed once the first is answered (the others queued or in flight), then ten more
      // against the dead server's socket (the fallback's).
      const first = pods.slice(0, 10).map((p, i) => cni(node, "ADD", p, `kill-${i}`, conf));
      await Promise.race(first);
      server.child.kill("SIGKILL");
      await server.child.exited;
      const second = pods.slice(10).map((p, i) => cni(node, "ADD", p, `kill-${i + 10}`, conf));
      const results = await Promise.all([...first, ...second]);
      expect(results.slice(10).map((r) => r.exitCode)).toEqual(new Array(10).fill(0));
      const outcomes = results.map((r) => {
        const body = JSON.parse(r.stdout) as Record<string, any>;
        if (r.exitCode === 0) {
          expect(body.ips[0].address).toMatch(/^198\.19\.11\.\d+\/24$/);
          return "ok";
        }
        expect(r.exitCode).toBe(1);
        expect(body).toMatchObject({ cniVersion: "1.1.0", code: expect.any(Number), msg: expect.any(String) });
        return `code ${body.code}`;
      });
      expect(outcomes).toContain("ok");
      console.info(`20 ADDs, server killed after the first answer of the first 10: ${JSON.stringify(Object.fromEntries([...new Set(outcomes)].map((o) => [o, outcomes.filter((x) => x === o).length])))}`);
      // The socket file stays (SIGKILL): the shim finds it refusing and runs the fallback.
      expect(existsSync(server.socket)).toBe(true);
      const dels = await Promise.all(pods.map((p, i) => cni(node, "DEL", p, `kill-${i}`, conf)));
      expect(dels.map((d) => d.exitCode)).toEqual(new Array(20).fill(0));
      expect(reservations(node)).toEqual([]);
      expect((await nodeLinks(node)).filter((l) => l.startsWith("veth"))).toEqual([]);
      for (const p of pods) expect(await podAddrs(p)).toEqual([]);
      const podLinks = await Promise.all(pods.map(async (p) => JSON.parse((await p.ip(["-j", "link", "show"])).stdout).map((l: { ifname: string }) => l.ifname)));
      expect(podLinks.flat().filter((n: string) => n !== "lo")).toEqual([]);
      expect(existsSync(join(node.dir, "ipam", "cbr0", "weft.lock"))).toBe(false);
      // A new server replaces the dead one's socket and serves again.
      const again = await startServer(node.ns, server.socket);
      cleanups.push(() => stopServer(again));
      ok(await cni(node, "ADD", pods[0]!, "kill-again", conf));
      ok(await cni(node, "DEL", pods[0]!, "kill-again", conf));
      expect(reservations(node)).toEqual([]);
    });

    it("refuses a config larger than the limit with a CNI error, without falling back", async () => {
      const node = await makeNode(V4);
      const pod = await makePod();
      const r = await cni(node, "ADD", pod, "c-big", { ...node.conf, padding: "x".repeat(1024 * 1024) });
      expect(r.exitCode).toBe(1);
      expect(JSON.parse(r.stdout)).toEqual({ cniVersion: "1.1.0", code: 7, msg: "invalid network config: the config on stdin is larger than the 1 MiB limit of weft" });
      expect(reservations(node)).toEqual([]);
      expect(existsSync(join(node.dir, "code-cache"))).toBe(false);
    });

    it("a server that accepts and never answers: the shim gives up after agentTimeoutSeconds with code 11", async () => {
      const dir = mkdtempSync(join(tmpdir(), "weft-cni-hang-"));
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
      const socket = join(dir, "hang.sock");
      const held: Socket[] = [];
      const hang = createNetServer((c) => held.push(c));
      await new Promise<void>((r) => hang.listen(socket, r));
      cleanups.push(async () => {
        for (const c of held) c.destroy();
        await new Promise<void>((r) => hang.close(() => r()));
      });
      await install({ binDir: join(dir, "bin"), confDir: join(dir, "net.d"), confName: "10-weft.conflist", node: process.execPath }, BUNDLE, SHIM);
      const started = Date.now();
      const r = await labRunner.run(join(dir, "bin", "weft"), [], {
        env: { CNI_COMMAND: "VERSION" },
        input: JSON.stringify({ cniVersion: "1.0.0", name: "x", type: "weft", agentSocket: socket, agentTimeoutSeconds: 1 }),
        reject: false,
      });
      const took = Date.now() - started;
      expect(r.exitCode).toBe(1);
      expect(JSON.parse(r.stdout)).toEqual({ cniVersion: "1.0.0", code: 11, msg: "weftd did not answer in time; try again later: no answer within 1 s" });
      expect(took).toBeGreaterThanOrEqual(900);
      expect(took).toBeLessThan(5000);
      // A bad timeout value is a config error naming the key.
      const bad = await labRunner.run(join(dir, "bin", "weft"), [], {
        env: { CNI_COMMAND: "VERSION" },
        input: JSON.stringify({ cniVersion: "1.0.0", agentSocket: socket, agentTimeoutSeconds: 0 }),
        reject: false,
      });
      expect(JSON.parse(bad.stdout)).toMatchObject({ code: 7, msg: expect.stringContaining('"agentTimeoutSeconds" must be a whole number of seconds from 1 to 600') });
    });
  },
  { tools: ["ping", "nsenter", "sysctl"] },
);

afterAll(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});
