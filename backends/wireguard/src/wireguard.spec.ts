/**
 * wireguard specifics beyond the conformance suite, against a FakeKernel and the fake wireguard-go/wg host:
 * the device and peer table the tools end up with, keys on disk, the PSK, one `wg set` per pass, adoption of a
 * running wireguard-go across a restart, recovery from a crash, teardown by PID, the socket-collision guard,
 * and the single-tunnel modes. Assertions are on final state.
 */
import "reflect-metadata";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type FamilyMode, TEST_TOPOLOGY, type TestAgent, type TestInterface, peerLease, snapshotKernel, startTestAgent, testNetConf } from "@weft/backend-testkit";
import { ConfigError, MemoryLogger } from "@weft/core";
import { MANAGED_DAEMONS, WIREGUARD } from "@weft/kernel";
import { FakeKernel, FakeWireGuardHost } from "@weft/kernel-testing";
import type { DependencyContainer } from "tsyringe";
import { afterEach, describe, expect, it } from "vitest";
import { START_ATTEMPTS } from "./wireguard-backend.js";
import wireguard, { PRIVATE_KEY_FILE, generatePrivateKey, pidFile, publicKeyOf, wireguardConfigSchema } from "./index.js";

const T = TEST_TOPOLOGY;
const agents: TestAgent[] = [];
const dirs: string[] = [];
const PSK = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";

afterEach(async () => {
  for (const a of agents.splice(0)) await a.close("teardown").catch(() => undefined);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "weft-wg-"));
  dirs.push(d);
  return d;
}

/**
 * The fake wireguard-go/wg of machine `host` as the agent's ports: every (re)started agent gets new port
 * instances over the host's process and device tables, as a restarted weftd would.
 */
const portsOf = (host: FakeWireGuardHost) => (c: DependencyContainer, kernel: unknown) => {
  const { daemons, wireguard: wg } = host.agent(kernel as FakeKernel);
  c.register(MANAGED_DAEMONS, { useValue: daemons });
  c.register(WIREGUARD, { useValue: wg });
};

interface Node {
  agent: TestAgent;
  kernel: FakeKernel;
  host: FakeWireGuardHost;
  stateDir: string;
}

async function node(
  i: number,
  o: { backend?: Record<string, unknown>; mode?: FamilyMode; host?: FakeWireGuardHost; kernel?: FakeKernel; stateDir?: string; iface?: Partial<TestInterface>; subnetOf?: number; logger?: MemoryLogger } = {},
): Promise<Node> {
  const mode = o.mode ?? "v4";
  const me = T.node(i);
  const sub = T.node(o.subnetOf ?? i);
  const kernel = o.kernel ?? new FakeKernel();
  const host = o.host ?? new FakeWireGuardHost();
  const stateDir = o.stateDir ?? tempDir();
  const agent = await startTestAgent({
    backends: [wireguard],
    config: testNetConf({ Type: "wireguard", ...o.backend }, mode),
    iface: { ...(mode !== "v6" ? { address: me.address } : {}), ...(mode !== "v4" ? { address6: me.address6 } : {}), ...o.iface },
    leases: { subnet: sub.subnet, ipv6Subnet: sub.ipv6Subnet, nodeName: me.nodeName },
    kernel,
    stateDir,
    ports: portsOf(host),
    logger: o.logger ?? new MemoryLogger(),
  });
  agents.push(agent);
  return { agent, kernel, host, stateDir };
}

const lines = async (k: FakeKernel, prefix: string) => (await snapshotKernel(k)).lines.filter((l) => l.startsWith(prefix));
const pubOf = (n: Node) => (n.agent.backendData.v4 ?? n.agent.backendData.v6) as { PublicKey: string; Port: number };

describe("wireguard config schema", () => {
  it("applies Flannel's defaults", () => {
    expect(wireguardConfigSchema.parse({ Type: "wireguard" }, "Backend")).toEqual({ listenPort: 51820, listenPortV6: 51821, mtu: 0, persistentKeepalive: 0, mode: "separate", warnings: [] });
  });

  it("matches keys case-insensitively and accepts every Flannel key", () => {
    const c = wireguardConfigSchema.parse({ type: "WireGuard", listenport: 6000, ListenPortV6: 6001, mtu: 1400, psk: PSK, PersistentKeepaliveInterval: 25, mode: "AUTO" }, "Backend");
    expect(c).toMatchObject({ listenPort: 6000, listenPortV6: 6001, mtu: 1400, psk: PSK, persistentKeepalive: 25, mode: "auto" });
  });

  it("refuses a malformed PSK naming Backend.PSK without echoing the value", () => {
    const secret = `${PSK.slice(0, 40)}!!=`;
    let err: unknown;
    try {
      wireguardConfigSchema.parse({ Type: "wireguard", PSK: secret }, "Backend");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toContain("Backend.PSK");
    expect((err as ConfigError).message).toContain("wg genpsk");
    expect((err as ConfigError).message).not.toContain(secret.slice(0, 12));
  });

  it("turns unknown keys into warnings", () => {
    expect(wireguardConfigSchema.parse({ Type: "wireguard", Port: 1 }, "Backend").warnings[0]).toContain("unknown key Backend.Port");
  });
});

describe("keys", () => {
  it("derives the public key wg would print", () => {
    // RFC 7748 §6.1 test vector (Alice), in wg's base64 form.
    const priv = Buffer.from("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", "hex").toString("base64");
    const pub = Buffer.from("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", "hex").toString("base64");
    expect(publicKeyOf(priv)).toBe(pub);
    expect(Buffer.from(generatePrivateKey(), "base64")).toHaveLength(32);
  });
});

describe("wireguard backend", () => {
  it("starts wireguard-go, configures key and port, publishes Flannel's BackendData, keeps the key 0600", async () => {
    const n = await node(1, { backend: { ListenPort: 6000 } });
    const dev = n.host.devices.get("weft-wg")!;
    expect(dev.listenPort).toBe(6000);
    const file = join(n.stateDir, PRIVATE_KEY_FILE);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(n.stateDir).mode & 0o777).toBe(0o700);
    expect(dev.privateKey).toBe(readFileSync(file, "utf8").trim());
    expect(n.agent.backendData.v4).toEqual({ PublicKey: publicKeyOf(dev.privateKey!), Port: 6000 });
    expect(readFileSync(pidFile(n.stateDir, "weft-wg"), "utf8").trim()).toBe(String(dev.pid));
    expect(await lines(n.kernel, "link weft-wg")).toEqual([expect.stringMatching(/mtu=1420 .*up=true/)]);
    expect(await lines(n.kernel, "address weft-wg")).toEqual(["address weft-wg 198.19.1.0/32"]);
    // The private key never reaches the log.
    expect(JSON.stringify((n.agent.logger as MemoryLogger).records)).not.toContain(dev.privateKey);
    // A clean start warns about nothing (the links kind must not try to create the TUN wireguard-go made).
    expect((n.agent.logger as MemoryLogger).records.filter((r) => r.level === "warn")).toEqual([]);
  });

  it("programs one peer per node with endpoint, allowed-ips, keepalive and PSK, and a route per subnet", async () => {
    const a = await node(1, { backend: { PSK, PersistentKeepaliveInterval: 25 } });
    const b = await node(2, { backend: { PSK, PersistentKeepaliveInterval: 25 } });
    expect((await a.agent.addPeer(b.agent.lease)).state).toBe("programmed");
    const peers = [...a.host.devices.get("weft-wg")!.peers.values()];
    expect(peers).toEqual([{ publicKey: pubOf(b).PublicKey, endpoint: "198.18.0.2:51820", allowedIPs: ["198.19.2.0/24"], persistentKeepalive: 25, presharedKey: PSK }]);
    expect(await lines(a.kernel, "route v4 254 198.19.2.0/24")).toEqual([expect.stringContaining("dev=weft-wg ")]);
    expect(statSync(join(a.stateDir, "wg-psk.key")).mode & 0o777).toBe(0o600);
    expect(JSON.stringify((a.agent.logger as MemoryLogger).records)).not.toContain(PSK);
  });

  it("taking the PSK out of the config clears it on every peer and removes the key file", async () => {
    const a = await node(1, { backend: { PSK } });
    const b = await node(2, { backend: { PSK } });
    await a.agent.addPeer(b.agent.lease);
    const peer = [...a.host.devices.get("weft-wg")!.peers.values()][0]!;
    expect(peer.presharedKey).toBe(PSK);
    // Same node, same kernel and wireguard-go, new config without PSK.
    const again = await node(1, { kernel: a.kernel, host: a.host, stateDir: a.stateDir });
    again.agent.store.putPeer(b.agent.lease);
    await again.agent.restart();
    const now = [...a.host.devices.get("weft-wg")!.peers.values()];
    expect(now).toHaveLength(1);
    expect(now[0]!.presharedKey).toBeUndefined();
    expect(existsSync(join(a.stateDir, "wg-psk.key"))).toBe(false);
  });

  it("uses the peer's advertised port", async () => {
    const a = await node(1);
    const b = await node(2, { backend: { ListenPort: 7000 } });
    await a.agent.addPeer(b.agent.lease);
    expect([...a.host.devices.get("weft-wg")!.peers.values()][0]!.endpoint).toBe("198.18.0.2:7000");
  });

  it("writes all peer changes of a pass with one wg process", async () => {
    const a = await node(1);
    const others = [await node(2), await node(3), await node(4)];
    const dev = a.host.devices.get("weft-wg")!;
    for (const o of others) a.agent.store.putPeer(o.agent.lease);
    dev.setCalls = 0;
    await a.agent.restart(); // the new agent adds all three, then flushes once
    expect(dev.peers.size).toBe(3);
    expect(dev.setCalls).toBe(1);
  });

  it("removes peers Weft does not want on its device", async () => {
    const a = await node(1);
    const dev = a.host.devices.get("weft-wg")!;
    const stale = publicKeyOf(generatePrivateKey());
    dev.peers.set(stale, { publicKey: stale, allowedIPs: ["198.19.9.0/24"], persistentKeepalive: 0 });
    await a.agent.reconcile();
    expect(dev.peers.size).toBe(0);
  });

  it("repairs drift on a peer (endpoint and allowed-ips changed behind its back)", async () => {
    const a = await node(1);
    const b = await node(2);
    await a.agent.addPeer(b.agent.lease);
    const p = [...a.host.devices.get("weft-wg")!.peers.values()][0]!;
    p.endpoint = "198.18.0.99:1";
    p.allowedIPs = [];
    await a.agent.reconcile();
    expect(p).toMatchObject({ endpoint: "198.18.0.2:51820", allowedIPs: ["198.19.2.0/24"] });
  });

  it("a restarted agent adopts the running wireguard-go: same process, same key, no writes", async () => {
    const a = await node(1);
    const b = await node(2);
    await a.agent.addPeer(b.agent.lease);
    const dev = a.host.devices.get("weft-wg")!;
    const r = await a.agent.restart();
    expect(r.writes).toBe(0);
    expect(a.host.devices.get("weft-wg")).toBe(dev);
    expect(dev.peers.size).toBe(1);
  });

  it("restarts a crashed wireguard-go and re-adds its peers, address and route", async () => {
    const a = await node(1);
    const b = await node(2);
    await a.agent.addPeer(b.agent.lease);
    const before = a.host.devices.get("weft-wg")!;
    a.host.crash("weft-wg");
    await new Promise((r) => setTimeout(r, 10));
    expect(a.host.devices.has("weft-wg")).toBe(false);
    // Extra kinds come after links/addresses/routes in a pass: the device comes back in the first pass, what
    // hangs off the TUN in the next.
    await a.agent.reconcile();
    await a.agent.reconcile();
    const dev = a.host.devices.get("weft-wg")!;
    expect(dev.pid).not.toBe(before.pid);
    expect(dev.privateKey).toBe(before.privateKey);
    expect(dev.peers.size).toBe(1);
    expect(await lines(a.kernel, "address weft-wg")).toEqual(["address weft-wg 198.19.1.0/32"]);
    expect(await lines(a.kernel, "route v4 254 198.19.2.0/24")).toHaveLength(1);
    expect((await a.agent.reconcile()).writes).toBe(0);
  });

  it("teardown after a restart ends wireguard-go by its recorded PID and removes the device", async () => {
    const a = await node(1);
    await a.agent.restart(); // the new agent did not spawn it: only the PID file knows it
    await a.agent.close("teardown");
    expect(a.host.devices.size).toBe(0);
    expect(await lines(a.kernel, "link weft-wg")).toEqual([]);
  });

  it("retries a wireguard-go that fails to start, and the warning carries what wireguard-go said", async () => {
    const host = new FakeWireGuardHost();
    host.failStarts(1, "Failed to create TUN device: device or resource busy");
    const logger = new MemoryLogger();
    const n = await node(1, { host, logger });
    expect(host.devices.get("weft-wg")?.privateKey).toBe(readFileSync(join(n.stateDir, PRIVATE_KEY_FILE), "utf8").trim());
    const warned = logger.records.filter((r) => r.level === "warn").map((r) => String(r.fields.error));
    expect(warned).toHaveLength(1);
    // The banner is left out; the error line is there.
    expect(warned[0]).toMatch(/exited \(code 1\) before its UAPI socket answered: ERROR: \(weft-wg\) .* Failed to create TUN device: device or resource busy \(/);
    expect(warned[0]).not.toContain("banner");
  });

  it("gives up after a few failed starts with one error naming the likely causes", async () => {
    const host = new FakeWireGuardHost();
    host.failStarts(START_ATTEMPTS, "UAPI listen error: unix socket in use");
    const kernel = new FakeKernel();
    const logger = new MemoryLogger();
    await expect(node(1, { host, kernel, logger })).rejects.toThrow(`could not be started in ${START_ATTEMPTS} attempts`);
    const warned = logger.records.filter((r) => r.level === "warn").map((r) => String(r.fields.error));
    expect(warned).toHaveLength(START_ATTEMPTS);
    for (const w of warned) expect(w).toContain("UAPI listen error: unix socket in use");
    expect(await lines(kernel, "link weft-wg")).toEqual([]);
  });

  it("refuses a UAPI socket of the same name that belongs to another network namespace", async () => {
    const host = new FakeWireGuardHost();
    const first = await node(1, { host });
    const kernel = new FakeKernel();
    const logger = new MemoryLogger();
    await expect(
      startTestAgent({
        backends: [wireguard],
        config: testNetConf({ Type: "wireguard" }, "v4"),
        iface: { address: T.node(2).address },
        leases: { subnet: T.node(2).subnet, nodeName: "node-2" },
        kernel,
        ports: portsOf(host),
        logger,
      }),
    ).rejects.toThrow(/another network namespace/);
    // Node 1's device is untouched: same key, and node 2 left no TUN behind.
    expect(host.devices.get("weft-wg")!.privateKey).toBe(readFileSync(join(first.stateDir, PRIVATE_KEY_FILE), "utf8").trim());
    expect(await lines(kernel, "link weft-wg")).toEqual([]);
  });

  it("with WEFT_WIREGUARD_PRIVATE_SOCKET_DIR=1 the agent binds its own socket directory under the state dir", async () => {
    const before = process.env.WEFT_WIREGUARD_PRIVATE_SOCKET_DIR;
    process.env.WEFT_WIREGUARD_PRIVATE_SOCKET_DIR = "1";
    try {
      const n = await node(1);
      expect([...n.host.privateSocketDirs]).toEqual([join(n.stateDir, "wireguard-sockets")]);
      expect(n.host.devices.get("weft-wg")?.listenPort).toBe(51820);
    } finally {
      if (before === undefined) delete process.env.WEFT_WIREGUARD_PRIVATE_SOCKET_DIR;
      else process.env.WEFT_WIREGUARD_PRIVATE_SOCKET_DIR = before;
    }
  });

  it("separate mode (dual): two devices, two ports, a peer on each", async () => {
    const a = await node(1, { mode: "dual" });
    const b = await node(2, { mode: "dual" });
    await a.agent.addPeer(b.agent.lease);
    expect(a.agent.backendData.v6).toMatchObject({ Port: 51821 });
    expect([...a.host.devices.get("weft-wg")!.peers.values()][0]).toMatchObject({ endpoint: "198.18.0.2:51820", allowedIPs: ["198.19.2.0/24"] });
    expect([...a.host.devices.get("weft-wg-v6")!.peers.values()][0]).toMatchObject({ endpoint: "[2001:2::2]:51821", allowedIPs: ["2001:2:0:102::/64"] });
  });

  it.each([
    ["auto", "198.18.0.2:51820"],
    ["ipv4", "198.18.0.2:51820"],
    ["ipv6", "[2001:2::2]:51820"],
  ])("Mode %s (dual): one device for both families, endpoint %s", async (mode, endpoint) => {
    const a = await node(1, { mode: "dual", backend: { Mode: mode } });
    const b = await node(2, { mode: "dual", backend: { Mode: mode } });
    expect((await a.agent.addPeer(b.agent.lease)).state).toBe("programmed");
    expect(a.host.devices.has("weft-wg-v6")).toBe(false);
    expect([...a.host.devices.get("weft-wg")!.peers.values()]).toEqual([
      expect.objectContaining({ endpoint, allowedIPs: ["198.19.2.0/24", "2001:2:0:102::/64"] }),
    ]);
    expect(await lines(a.kernel, "route v6 254 2001:2:0:102::/64")).toEqual([expect.stringContaining("dev=weft-wg ")]);
  });

  it("a peer without data is pending; a peer with a bad key is skipped", async () => {
    const a = await node(1);
    const bare = peerLease({ subnet: "198.19.2.0/24", publicIP: "198.18.0.2", backendType: "wireguard" });
    expect((await a.agent.addPeer(bare)).state).toBe("pending");
    const bad = peerLease({ subnet: "198.19.2.0/24", publicIP: "198.18.0.2", backendType: "wireguard", backendData: { PublicKey: "x" } });
    const s = await a.agent.addPeer(bad);
    expect(s.state).toBe("skipped");
  });
});
