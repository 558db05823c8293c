/**
 * weftd on a real cluster: one weftd process per node namespace, a real etcd, real devices, real pods, real
 * traffic (issue "weftd: the agent", Done when).
 */
import { rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { IPNet } from "@weft/core";
import { Lab, WeftCluster, etcdHttp, etcdPut, startEtcd, type EtcdServer, type WeftNode } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "main.js");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (await cond()) return Date.now() - start;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

const routeTo = async (n: WeftNode, dst: string) => {
  const r = await n.lab.netns.ip(["-j", "route", "show", dst]);
  return (JSON.parse(r.stdout || "[]") as unknown[]).length > 0;
};

describeReal(
  "weftd cluster (vxlan, 3 nodes, real etcd)",
  () => {
    let c: WeftCluster;
    beforeAll(async () => {
      c = await WeftCluster.start({ nodes: 3, weftd, backend: { Type: "vxlan" }, resyncInterval: 2 });
    }, 120_000);
    afterAll(async () => {
      await c?.destroy();
    });

    it("gives every node a distinct lease, a Flannel-format subnet.env, /readyz 200 and a full ping matrix", async () => {
      const subnets = c.nodes.map((n) => c.subnetEnv(n).subnet!.network);
      for (let i = 0; i < subnets.length; i++) for (let j = i + 1; j < subnets.length; j++) expect(subnets[i]!.overlaps(subnets[j]!)).toBe(false);
      for (const n of c.nodes) {
        const text = (await import("node:fs")).readFileSync(n.subnetFile, "utf8");
        const sn = c.subnetEnv(n).subnet!.network;
        expect(text).toBe(`FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=${sn.ip.add(1)}/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n`);
        expect((await c.health(n, "/readyz")).ok).toBe(true);
        expect((await c.health(n, "/healthz")).ok).toBe(true);
        const metrics = (await c.health(n, "/metrics")).body;
        expect(metrics).toContain('weft_peers{state="programmed"} 2');
        expect(metrics).toContain("weft_ready 1");
        const status = JSON.parse((await c.health(n, "/status")).body);
        expect(status).toMatchObject({ ready: true, backendType: "vxlan", mtu: 1450, subnet: c.subnetEnv(n).subnet!.network.toString() });
        expect(status.peers.map((p: { state: string }) => p.state)).toEqual(["programmed", "programmed"]);
      }
      expect(Object.keys(await c.leases())).toHaveLength(3);
      expect(await c.pingMatrix()).toEqual([]);
      // The advertised MTU is right: a don't-fragment ping of exactly MTU bytes crosses the overlay.
      expect(await c.pingMatrix({ size: 1450 - 28, dontFragment: true })).toEqual([]);
      expect(await c.pingMatrix({ size: 1450 - 28 + 1, dontFragment: true })).toHaveLength(6);
    });

    it("keeps pod traffic flowing through kill -9 of an agent, and the new agent adopts the datapath", async () => {
      const [n1, n2] = c.nodes as [WeftNode, WeftNode];
      const before = JSON.parse((await n2.lab.netns.ip(["-j", "link", "show", "weft.1"])).stdout)[0];
      const r = await c.pingThroughAgentKill(n1, n2);
      expect(r.stdout).toMatch(/100 packets transmitted, 100 received/);
      const after = JSON.parse((await n2.lab.netns.ip(["-j", "link", "show", "weft.1"])).stdout)[0];
      expect(after.ifindex).toBe(before.ifindex);
      expect(after.address).toBe(before.address);
      // SIGTERM leaves the datapath in place too.
      expect((await c.stopAgent(n2, "SIGTERM")).code).toBe(0);
      expect(await c.lab.ping(n1.pod!.netns, n2.pod!.ip, { count: 2 })).toBe(true);
      await c.startAgent(n2);
      await c.waitReady(n2);
    });

    it("repairs a route deleted by hand within the resync interval", async () => {
      const [n1, n2] = c.nodes as [WeftNode, WeftNode];
      const dst = c.subnetEnv(n2).subnet!.network.toString();
      await n1.lab.netns.ip(["route", "del", dst]);
      expect(await routeTo(n1, dst)).toBe(false);
      const took = await waitFor(`route ${dst} on node 1`, () => routeTo(n1, dst), 10_000);
      expect(took).toBeLessThan(2 * 2000 + 1000);
      expect((await c.health(n1, "/metrics")).body).toMatch(/weft_drift_repairs_total\{kind="routes"\} [1-9]/);
    });

    it("prunes a peer whose lease was removed while this node's agent was down", async () => {
      const [n1, n2, n3] = c.nodes as [WeftNode, WeftNode, WeftNode];
      const gone = c.subnetEnv(n3).subnet!.network;
      await c.stopAgent(n3);
      await c.stopAgent(n1);
      const key = Buffer.from(`${c.prefix}/subnets/${gone.ip}-${gone.prefix}`).toString("base64");
      const del = await etcdHttp(c.etcd.endpoint, "/v3/kv/deleterange", { key });
      expect(del.status).toBe(200);
      // Node 2 is running: it hears the removal at once.
      await waitFor("node 2 to drop the route to node 3", async () => !(await routeTo(n2, gone.toString())), 10_000);
      // Node 1 was down: its kernel still has the stale route until its new agent prunes it.
      expect(await routeTo(n1, gone.toString())).toBe(true);
      await c.startAgent(n1);
      await c.waitReady(n1);
      expect(await routeTo(n1, gone.toString())).toBe(false);
      const neigh = await n1.lab.netns.ip(["-j", "neigh", "show", "dev", "weft.1"]);
      expect(JSON.parse(neigh.stdout).map((x: { dst: string }) => x.dst)).not.toContain(gone.ip.toString());
      expect(await c.lab.ping(n1.pod!.netns, n2.pod!.ip, { count: 2 })).toBe(true);
    });

    it("weftd --teardown removes everything Weft owns on the node and nothing else", async () => {
      const n = c.nodes[2]!;
      await c.stopAgent(n);
      await c.startAgent(n);
      await c.waitReady(n);
      await c.stopAgent(n);
      const ns = n.lab.netns;
      expect(JSON.parse((await ns.ip(["-j", "link", "show", "weft.1"])).stdout)).toHaveLength(1);
      const r = await ns.run(process.execPath, [weftd, "--teardown", "--subnet-file", n.subnetFile], { reject: false });
      expect(r.exitCode, r.stderr).toBe(0);
      const links = (JSON.parse((await ns.ip(["-j", "link", "show"])).stdout) as { ifname: string }[]).map((l) => l.ifname);
      expect(links.filter((l) => l.startsWith("weft"))).toEqual([]);
      expect(links).toContain("eth0");
      expect(links).toContain("cni0");
      expect(JSON.parse((await ns.ip(["-j", "route", "show", "proto", "87"])).stdout)).toEqual([]);
      expect((await ns.run("iptables-save", [])).stdout).not.toContain("WEFT");
      expect((await ns.run("nft", ["list", "ruleset"])).stdout).not.toContain("weft");
      expect((await import("node:fs")).existsSync(n.subnetFile)).toBe(false);
      // The node's own pod still reaches its gateway on cni0: unowned objects were left alone.
      const gateway = JSON.parse((await ns.ip(["-j", "-4", "addr", "show", "cni0"])).stdout)[0].addr_info[0].local as string;
      expect(await c.lab.ping(n.pod!.netns, gateway, { count: 1 })).toBe(true);
    });
  },
  { tools: ["etcd", "curl", "ping", "iptables-save", "nft"] },
);

describeReal(
  "weftd bad input: one line, non-zero exit, kernel untouched",
  () => {
    let lab: Lab;
    let etcd: EtcdServer;
    beforeAll(async () => {
      lab = await Lab.create({ nodes: 1, name: "wb" });
      etcd = await startEtcd({ listen: "unix" });
    }, 60_000);
    afterAll(async () => {
      await lab?.destroy();
      await etcd?.stop();
    });

    const kernelState = async () => {
      const ns = lab.nodes[0]!.netns;
      const parts = await Promise.all([
        ns.ip(["-d", "link", "show"]),
        ns.ip(["addr", "show"]),
        ns.ip(["route", "show", "table", "all"]),
        ns.ip(["-6", "route", "show", "table", "all"]),
        ns.ip(["neigh", "show", "nud", "permanent"]),
        ns.run("iptables-save", [], { reject: false }),
        ns.run("nft", ["list", "ruleset"], { reject: false }),
        ns.run("sysctl", ["-n", "net.ipv4.ip_forward"]),
      ]);
      // Counters and timestamps change on their own; compare the structure only.
      // IPv6 link-local addresses and their routes come and go with the kernel's autoconf timing, not ours.
      return parts
        .map((p) => p.stdout.replace(/^#.*$/gm, "").replace(/\[\d+:\d+\]/g, "").split("\n").filter((l) => !/fe80::/.test(l)).join("\n"))
        .join("\n---\n");
    };
    let n = 0;
    const runWeftd = async (conf: unknown, extra: string[] = [], timeoutMs = 20_000) => {
      const prefix = `/weft-bad/${n++}/network`;
      if (conf !== undefined) await etcdPut(etcd.endpoint, `${prefix}/config`, typeof conf === "string" ? conf : JSON.stringify(conf));
      const dir = `/tmp/weft-bad-${process.pid}-${n}`;
      try {
        return await lab.nodes[0]!.netns.run(
          process.execPath,
          [weftd, "--etcd-endpoints", etcd.endpoint, "--etcd-prefix", prefix, "--subnet-file", `${dir}/subnet.env`, "--state-dir", `${dir}/state`, ...extra],
          { reject: false, timeoutMs },
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    };
    const errorLines = (stderr: string) =>
      stderr
        .split("\n")
        .filter((l) => l.includes('"level":"error"'))
        .map((l) => (JSON.parse(l) as { msg: string }).msg);

    const cases: [string, unknown, string[], RegExp][] = [
      ["net-conf that is not JSON", "{Network: 198.19.0.0/16", [], /not valid JSON.*fix the syntax/],
      ["a bad CIDR", { Network: "198.19.0.0/33", Backend: { Type: "vxlan" } }, [], /Network "198\.19\.0\.0\/33" is not an IPv4 CIDR/],
      ["SubnetLen out of range", { Network: "198.19.0.0/16", SubnetLen: 31, Backend: { Type: "vxlan" } }, [], /SubnetLen 31 is out of range: must be between 18 \(Network \/16 \+ 2\) and 30/],
      ["both families disabled", { EnableIPv4: false, Backend: { Type: "vxlan" } }, [], /enable at least one address family/],
      ["an unknown backend type", { Network: "198.19.0.0/16", Backend: { Type: "udp" } }, [], /unknown backend type "udp".*known types are host-gw, ipsec, vxlan, wireguard;/],
      ["a backend section the backend rejects", { Network: "198.19.0.0/16", Backend: { Type: "vxlan", VNI: 0 } }, [], /^etcd \/weft-bad\/\d+\/network\/config: Backend\.VNI/],
      ["an interface that does not exist", { Network: "198.19.0.0/16", Backend: { Type: "vxlan" } }, ["--iface", "nope0"], /nope0/],
      ["a public IP not on any interface", { Network: "198.19.0.0/16", Backend: { Type: "vxlan" } }, ["--public-ip", "198.18.251.251"], /198\.18\.251\.251/],
    ];
    for (const [name, conf, extra, expected] of cases) {
      it(`refuses ${name}`, async () => {
        const before = await kernelState();
        const r = await runWeftd(conf, extra);
        expect(r.exitCode, r.stderr).toBe(1);
        const errors = errorLines(r.stderr);
        expect(errors, r.stderr).toHaveLength(1);
        expect(errors[0]).toMatch(expected);
        expect(await kernelState()).toBe(before);
      });
    }

    it("keeps retrying with backoff (no exit storm) while etcd is unreachable, and says so", async () => {
      const before = await kernelState();
      const r = await lab.nodes[0]!.netns.run(
        "timeout",
        ["-s", "TERM", "4", process.execPath, weftd, "--etcd-endpoints", "unix:///tmp/weft-no-such-etcd.sock:1", "--subnet-file", "/tmp/weft-none/subnet.env", "--state-dir", "/tmp/weft-none/state"],
        { reject: false, timeoutMs: 20_000 },
      );
      // Still running when `timeout` sent SIGTERM after 4 s, then stopped cleanly.
      expect(r.exitCode, r.stderr).toBe(124);
      const lines = r.stderr.trim().split("\n");
      expect(lines.length).toBeLessThan(15);
      // Said once, with what it does about it: not a line per retry.
      const said = lines.filter((l) => /etcd unreachable while trying to .*retrying with backoff/.test(l));
      expect(said, r.stderr).toHaveLength(1);
      expect(await kernelState()).toBe(before);
    });
  },
  { tools: ["etcd", "iptables-save", "nft", "timeout"] },
);

void IPNet;
