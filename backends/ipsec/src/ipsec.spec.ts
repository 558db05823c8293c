/**
 * The ipsec backend on the fake kernel and fake charon: bad input (one line each, nothing changed), datapath
 * choice, the deterministic initiator, drift repair (a connection unloaded by hand, charon killed), stale
 * connections, teardown, and the PSK kept out of logs, argv and world-readable files. Assertions are on the
 * fakes' final state.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type TestAgent, startTestAgent, testNetConf } from "@weft/backend-testkit";
import { MemoryLogger, errorMessage } from "@weft/core";
import { CHARON_PACKAGES, type IpsecConnection, locateCharon } from "@weft/kernel";
import { FakeKernel } from "@weft/kernel-testing";
import { orderKinds } from "@weft/reconcile";
import { describe, expect, it } from "vitest";
import { FakeCharonHost, TEST_PSK, charonSocketOf, useFakeCharonNodes } from "./fake-charon.spec-helper.js";
import ipsec, { CHARON_KIND, CONN_KIND, CharonReconciler, ConnReconciler, type IpsecBackend, SECRET_KIND, SecretReconciler, ipsecConfigSchema } from "./index.js";

const { node, track } = useFakeCharonNodes();

/** Nodes 1 and 2, each with the other as its peer. */
async function peeredPair(host: FakeCharonHost): Promise<[TestAgent, TestAgent]> {
  const a = await node(host, 1);
  const b = await node(host, 2);
  await a.addPeer(b.lease);
  await b.addPeer(a.lease);
  return [a, b];
}

const charonOf = (host: FakeCharonHost, a: TestAgent) => {
  return host.ipsec.charons.get(charonSocketOf(a))!;
};

async function failure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return errorMessage(err);
  }
  return "(no error)";
}

describe("ipsec config: each bad input is one line naming the key, and the PSK never appears", () => {
  const parse = (b: Record<string, unknown>) => failure(Promise.resolve().then(() => ipsecConfigSchema.parse({ Type: "ipsec", ...b }, "Backend")));

  it("PSK too short", async () => {
    const msg = await parse({ PSK: "tooshort-secret" });
    expect(msg).toBe(
      "net-conf.json: Backend.PSK is too short: 15 characters, ipsec needs at least 96 (value not shown); generate one with `openssl rand -hex 48`",
    );
    expect(msg).not.toContain("tooshort-secret");
  });

  it("PSK and PSKFile both set", async () => {
    const msg = await parse({ PSK: TEST_PSK, PSKFile: "/etc/weft/ipsec-psk" });
    expect(msg).toBe("net-conf.json: Backend.PSK and Backend.PSKFile are both set for ipsec: use exactly one (PSKFile for a key from a mounted Secret)");
    expect(msg).not.toContain(TEST_PSK);
  });

  it("neither PSK nor PSKFile", async () => {
    expect(await parse({})).toMatch(/^net-conf\.json: Backend\.PSK is required for ipsec .* or Backend\.PSKFile naming a file that holds it$/);
  });

  it("Flannel's keys and defaults: UDPEncap false, ESPProposal aes128gcm16-sha256-prfsha256-ecp256, Mode auto", () => {
    const c = ipsecConfigSchema.parse({ Type: "ipsec", psk: TEST_PSK }, "Backend");
    expect(c).toMatchObject({ psk: TEST_PSK, udpEncap: false, espProposal: "aes128gcm16-sha256-prfsha256-ecp256", mode: "auto", warnings: [] });
    expect(ipsec.mtuOverhead(ipsecConfigSchema.parse({ Type: "ipsec", PSK: TEST_PSK, Mode: "kernel" }, "Backend"), "v4")).toBe(77);
    expect(ipsec.mtuOverhead(ipsecConfigSchema.parse({ Type: "ipsec", PSK: TEST_PSK, Mode: "kernel", UDPEncap: true }, "Backend"), "v4")).toBe(85);
    expect(ipsec.mtuOverhead(c, "v4")).toBe(85); // libipsec (and auto, which may become it) always encapsulates
  });

  it("an unreadable PSKFile: preflight refuses it before anything runs", async () => {
    const host = new FakeCharonHost();
    const msg = await failure(node(host, 1, { PSK: undefined, PSKFile: "/nonexistent/weft-psk" }));
    expect(msg).toContain('ipsec: Backend.PSKFile "/nonexistent/weft-psk" cannot be read (ENOENT): mount the Secret there or fix the path');
    expect(host.charons()).toEqual([]);
  });

  it("a PSKFile whose key is too short names the file, not the key", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-ipsec-psk-"));
    try {
      writeFileSync(join(dir, "psk"), "short-key\n", { mode: 0o600 });
      const msg = await failure(node(new FakeCharonHost(), 1, { PSK: undefined, PSKFile: join(dir, "psk") }));
      expect(msg).toContain(`the key in Backend.PSKFile "${join(dir, "psk")}" is too short: 9 characters`);
      expect(msg).not.toContain("short-key");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("charon missing: one line naming the Debian packages", () => {
    const msg = (() => {
      try {
        locateCharon("/nowhere", () => false);
      } catch (err) {
        return errorMessage(err);
      }
      return "(found)";
    })();
    expect(msg).toMatch(/^ipsec: strongSwan's charon is not installed \(not on PATH, nor in \/usr\/lib\/ipsec\/charon, .*\); install it: apt-get install -y --no-install-recommends /);
    expect(msg).toContain(CHARON_PACKAGES);
    expect(msg.split("\n")).toHaveLength(1);
  });

  it("an unknown ESP proposal: charon's refusal becomes one line naming Backend.ESPProposal, and nothing is left running", async () => {
    const host = new FakeCharonHost();
    const kernel = new FakeKernel();
    const msg = await failure(node(host, 1, { ESPProposal: "aes999-sha256" }, { kernel }));
    expect(msg).toContain(
      'ipsec: Backend.ESPProposal "aes999-sha256" is refused by charon (invalid value for: esp_proposals, config discarded): use one this charon supports (`swanctl --list-algs`)',
    );
    expect(host.charons()).toEqual([]);
    expect(kernel.snapshot().links.map((l) => l.name)).not.toContain("ipsec0");
  });

  it("IPv6 is refused at preflight: ipsec is IPv4 only", async () => {
    const msg = await failure(
      startTestAgent({ backends: [ipsec], config: testNetConf({ Type: "ipsec", PSK: TEST_PSK }, "dual"), iface: { address: "198.18.0.1/24", address6: "2001:2::1/64" }, ports: new FakeCharonHost().ports }),
    );
    expect(msg).toContain("ipsec: IPv6 is not supported (IPv4 only, like Flannel's ipsec)");
  });
});

describe("ipsec datapath", () => {
  it("kinds are ordered: charon before routes (routes go via the ipsec0 it creates), then the key, then connections", () => {
    const h = {} as never;
    const { order } = orderKinds([{ kind: "links" }, { kind: "addresses", after: ["links"] }, { kind: "routes", after: ["links", "addresses"] }, new ConnReconciler(h), new SecretReconciler(h), new CharonReconciler(h)]);
    expect(order.indexOf(CHARON_KIND)).toBeLessThan(order.indexOf("routes"));
    expect(order.indexOf(SECRET_KIND)).toBeGreaterThan(order.indexOf(CHARON_KIND));
    expect(order.indexOf(CONN_KIND)).toBeGreaterThan(order.indexOf(SECRET_KIND));
  });

  it("auto on a kernel without ESP: libipsec through ipsec0, routes via ipsec0, reported in status", async () => {
    const host = new FakeCharonHost({ kernelEsp: false });
    const a = await node(host, 1);
    const b = await node(host, 2);
    await a.addPeer(b.lease);
    expect(await (a.backend as IpsecBackend).status()).toMatchObject({ datapath: "libipsec", reason: expect.stringMatching(/^auto: kernel lacks ESP/) });
    const k = a.kernel as FakeKernel;
    expect(k.snapshot().links.find((l) => l.name === "ipsec0")).toMatchObject({ mtu: 1400, up: true });
    expect((await k.listRoutes({ family: "v4" })).filter((r) => r.dev === "ipsec0").map((r) => r.dst.toString())).toEqual(["198.19.2.0/24"]);
    expect(charonOf(host, a).libipsec).toBe(true);
  });

  it("auto on a kernel with ESP: kernel mode, no ipsec0 and no Weft routes (charon's XFRM policies carry the traffic)", async () => {
    const host = new FakeCharonHost({ kernelEsp: true });
    const a = await node(host, 1);
    const b = await node(host, 2);
    await a.addPeer(b.lease);
    expect((await (a.backend as IpsecBackend).status()).datapath).toBe("kernel");
    expect(charonOf(host, a).libipsec).toBe(false);
    expect((a.kernel as FakeKernel).snapshot().links.map((l) => l.name)).not.toContain("ipsec0");
    expect((await a.kernel.listRoutes({ family: "v4" })).filter((r) => r.dst.toString() === "198.19.2.0/24")).toEqual([]);
  });

  it("Mode kernel where the kernel lacks ESP: one line, nothing started", async () => {
    const host = new FakeCharonHost({ kernelEsp: false });
    const msg = await failure(node(host, 1, { Mode: "kernel" }));
    expect(msg).toContain("ipsec: Backend.Mode is kernel but kernel lacks ESP");
    expect(host.charons()).toEqual([]);
  });

  it("one connection per pair: the lower PublicIP initiates, the SA comes up once on both sides", async () => {
    const host = new FakeCharonHost();
    const [a, b] = await peeredPair(host);
    const ca = charonOf(host, a);
    const cb = charonOf(host, b);
    const conns = (c: typeof ca) => [...c.conns.values()].filter((x) => x.name.startsWith("weft-198.18"));
    expect(conns(ca).map((c: IpsecConnection) => [c.remoteAddr, c.initiator])).toEqual([["198.18.0.2", true]]);
    expect(conns(cb).map((c: IpsecConnection) => [c.remoteAddr, c.initiator])).toEqual([["198.18.0.1", false]]);
    expect(conns(ca)[0]).toMatchObject({ localTs: ["198.19.1.0/24"], remoteTs: ["198.19.2.0/24"], ikeProposal: "aes256-sha256-modp4096", espProposal: "aes128gcm16-sha256-prfsha256-ecp256" });
    const sas = await host.ipsec.listSas(ca.socket);
    expect(sas.map((s) => [s.state, s.initiator, s.children.map((c) => c.state)])).toEqual([["ESTABLISHED", true, ["INSTALLED"]]]);
    expect((await host.ipsec.listSas(cb.socket)).map((s) => [s.state, s.initiator])).toEqual([["ESTABLISHED", false]]);
  });

  it("an initiator's IKE_SA without its CHILD_SA (the peer had not loaded its side yet) is drift: initiate it again", () => {
    const r = new ConnReconciler({} as never);
    const conn = { name: "weft-x", localAddr: "198.18.0.1", remoteAddr: "198.18.0.2", localTs: ["198.19.1.0/24"], remoteTs: ["198.19.2.0/24"] };
    expect(r.drift({ ...conn, sa: "start" }, { ...conn, sa: "ESTABLISHED" })).toMatch(/no CHILD_SA: initiate/);
    expect(r.drift({ ...conn, sa: "start" }, conn)).toMatch(/no IKE_SA: initiate/);
    expect(r.drift({ ...conn, sa: "start" }, { ...conn, sa: "CONNECTING" })).toBeUndefined();
    expect(r.drift({ ...conn, sa: "start" }, { ...conn, sa: "CHILD_INSTALLED" })).toBeUndefined();
    expect(r.drift(conn, conn)).toBeUndefined(); // the responder never initiates
    expect(r.updateOps({ ...conn, sa: "start" }, { ...conn, sa: "ESTABLISHED" })).toEqual([{ op: "conn.initiate", name: "weft-x" }]);
    expect(r.updateOps({ ...conn, sa: "start" }, { ...conn, remoteTs: ["198.19.9.0/24"] })).toEqual([{ op: "conn.load", conn: { ...conn, sa: "start" } }]);
  });

  it("a peer removed: exactly its connection and route go", async () => {
    const host = new FakeCharonHost();
    const a = await node(host, 1);
    const b = await node(host, 2);
    const c = await node(host, 3);
    await a.addPeer(b.lease);
    await a.addPeer(c.lease);
    await a.removePeer(b.lease);
    expect([...charonOf(host, a).conns.values()].map((x) => x.remoteAddr)).toEqual(["198.18.0.3"]);
    expect((await a.kernel.listRoutes({ family: "v4" })).filter((r) => r.dev === "ipsec0").map((r) => r.dst.toString())).toEqual(["198.19.3.0/24"]);
  });

  it("drift: a connection unloaded by hand is loaded again and initiated by the next full reconcile", async () => {
    const host = new FakeCharonHost();
    const [a] = await peeredPair(host);
    const ca = charonOf(host, a);
    const name = [...ca.conns.keys()].find((n) => n.startsWith("weft-198.18"))!;
    await host.ipsec.unloadConnection(ca.socket, name);
    await a.reconcile();
    expect([...ca.conns.keys()]).toContain(name);
    expect((await host.ipsec.listSas(ca.socket)).map((s) => s.state)).toEqual(["ESTABLISHED"]);
  });

  it("drift: charon killed -> restarted, key and connections loaded again, ipsec0 routes back", async () => {
    const host = new FakeCharonHost();
    const [a] = await peeredPair(host);
    const before = charonOf(host, a);
    const pid = host.charons().find((p) => p.env.STRONGSWAN_CONF?.startsWith(before.socket.replace(/charon\.vici$/, "")))!.pid;
    await host.table.crash(pid);
    expect((a.kernel as FakeKernel).snapshot().links.map((l) => l.name)).not.toContain("ipsec0");
    await a.reconcile();
    const after = charonOf(host, a);
    expect(after.serving).toBe(true);
    expect(after.keys.size).toBe(1);
    expect([...after.conns.values()].map((c) => c.remoteAddr)).toEqual(["198.18.0.2"]);
    expect((await host.ipsec.listSas(after.socket)).map((s) => s.state)).toEqual(["ESTABLISHED"]);
    expect((await a.kernel.listRoutes({ family: "v4" })).filter((r) => r.dev === "ipsec0").map((r) => r.dst.toString())).toEqual(["198.19.2.0/24"]);
  });

  it("status gauges: connections desired, loaded in charon and with an SA up; a dead charon reads 0 loaded, 0 up", async () => {
    const host = new FakeCharonHost();
    const a = await node(host, 1);
    const b = await node(host, 2);
    const c = await node(host, 3);
    const status = () => (a.backend as IpsecBackend).status();
    expect((await status()).gauges).toEqual({ connections_desired: 0, connections_loaded: 0, sas_up: 0 });
    await a.addPeer(b.lease);
    await a.addPeer(c.lease);
    await b.addPeer(a.lease);
    // Node 3 has not loaded its side: a's connection to it is loaded but its SA is not up.
    expect(await status()).toEqual({ datapath: "libipsec", reason: expect.stringMatching(/^auto: /), gauges: { connections_desired: 2, connections_loaded: 2, sas_up: 1 } });
    await c.addPeer(a.lease);
    expect((await status()).gauges).toEqual({ connections_desired: 2, connections_loaded: 2, sas_up: 2 });
    const pid = host.charons().find((p) => p.env.STRONGSWAN_CONF?.startsWith(charonOf(host, a).socket.replace(/charon\.vici$/, "")))!.pid;
    await host.table.crash(pid);
    expect((await status()).gauges).toEqual({ connections_desired: 2, connections_loaded: 0, sas_up: 0 });
    await a.reconcile();
    expect((await status()).gauges).toEqual({ connections_desired: 2, connections_loaded: 2, sas_up: 2 });
    expect(JSON.stringify(await status())).not.toContain(TEST_PSK);
  });

  it("stale weft- connections in this node's charon are pruned; connections Weft does not own are left alone", async () => {
    const host = new FakeCharonHost();
    const a = await node(host, 1);
    const socket = charonOf(host, a).socket;
    const base = { localAddr: "198.18.0.1", remoteAddr: "198.18.0.9", localTs: ["198.19.1.0/24"], remoteTs: ["198.19.9.0/24"] };
    await host.ipsec.loadConnection(socket, { name: "weft-198.18.0.9-0000000000", ...base });
    await host.ipsec.loadConnection(socket, { name: "operator-debug", ...base });
    await a.reconcile();
    expect([...charonOf(host, a).conns.keys()]).toEqual(["operator-debug"]);
  });

  it("restart: the new agent adopts the running charon (same PID) and its SAs, and writes nothing", async () => {
    const host = new FakeCharonHost();
    const [a] = await peeredPair(host);
    const pids = host.charons().map((p) => p.pid);
    const r = await a.restart();
    expect(r.writes).toBe(0);
    expect(host.charons().map((p) => p.pid)).toEqual(pids);
    expect((await host.ipsec.listSas(charonOf(host, a).socket)).map((s) => s.state)).toEqual(["ESTABLISHED"]);
  });

  it("teardown: connections and key unloaded, charon stopped, ipsec0 and its routes gone, the PSK copy removed", async () => {
    const host = new FakeCharonHost();
    const a = await node(host, 1);
    const b = await node(host, 2);
    await a.addPeer(b.lease);
    const socket = charonOf(host, a).socket;
    const pskCopy = join(socket, "..", "psk");
    expect(statSync(pskCopy).mode & 0o777).toBe(0o600);
    await a.close("teardown");
    expect(host.ipsec.charons.get(socket)!.serving).toBe(false);
    expect(host.charons().filter((p) => p.env.STRONGSWAN_CONF?.startsWith(join(socket, "..")))).toEqual([]);
    expect((a.kernel as FakeKernel).snapshot().links.map((l) => l.name)).not.toContain("ipsec0");
    expect((await a.kernel.listRoutes({ family: "v4" })).filter((r) => r.dev === "ipsec0")).toEqual([]);
    expect(() => statSync(pskCopy)).toThrow();
  });

  it("the PSK appears in no log line, no charon argument or environment, and no file but the 0600 key file", async () => {
    const host = new FakeCharonHost();
    const logger = new MemoryLogger();
    const a = await startTestAgent({ backends: [ipsec], config: testNetConf({ Type: "ipsec", PSK: TEST_PSK }, "v4"), iface: { address: "198.18.0.1/24" }, ports: host.ports, logger });
    track(a);
    expect(JSON.stringify(logger.records)).not.toContain(TEST_PSK);
    for (const p of host.charons()) expect(JSON.stringify([p.args, p.env])).not.toContain(TEST_PSK);
    const socket = charonOf(host, a).socket;
    expect(readFileSync(join(socket, "..", "strongswan.conf"), "utf8")).not.toContain(TEST_PSK);
    expect(JSON.stringify([...host.ipsec.charons.get(socket)!.keys])).not.toContain(TEST_PSK);
  });
});
