import { existsSync } from "node:fs";
import { afterEach, expect, it } from "vitest";
import { describeReal } from "./vitest.js";
import { Lab } from "./lab.js";
import { labRunner } from "./runner.js";

/** Everything in the root namespace that mentions the lab id or the lab's address range. */
async function rootLeftovers(lab: Lab): Promise<string[]> {
  const links = (await labRunner.run("ip", ["-o", "link", "show"])).stdout.split("\n").filter((l) => l.includes(lab.id));
  const addrs = (await labRunner.run("ip", ["-o", "addr", "show"])).stdout.split("\n").filter((l) => /198\.1[89]\.|2001:2:/.test(l));
  const routes = (await labRunner.run("ip", ["route", "show", "table", "all"])).stdout.split("\n").filter((l) => /198\.1[89]\.|2001:2:/.test(l));
  const netns = (await labRunner.run("ip", ["netns", "list"])).stdout.split("\n").filter((l) => l.includes(lab.id));
  return [...links, ...addrs, ...routes, ...netns];
}

describeReal("Lab", () => {
  const labs: Lab[] = [];
  afterEach(async () => {
    for (const l of labs.splice(0)) await l.destroy();
  });

  it("builds 3 nodes that ping each other over IPv4 and IPv6, and destroy leaves nothing", async () => {
    const lab = await Lab.create({ nodes: 3, ipv6: true });
    labs.push(lab);
    expect(lab.nodes.map((n) => n.underlayIp)).toEqual([1, 2, 3].map((i) => `198.18.${lab.subnetIndex}.${i}`));
    expect(lab.nodes[1]!.underlayIpv6).toBe(`2001:2:0:${lab.subnetIndex}::2`);
    expect(lab.bridge.length).toBeLessThanOrEqual(15);

    for (const a of lab.nodes) {
      for (const b of lab.nodes) {
        if (a === b) continue;
        expect(await lab.ping(a.netns, b.underlayIp), `${a.index} -> ${b.underlayIp}`).toBe(true);
        expect(await lab.ping(a.netns, b.underlayIpv6!), `${a.index} -> ${b.underlayIpv6}`).toBe(true);
      }
    }
    // Nobody answers .200, and there is no way out of the lab.
    expect(await lab.ping(lab.nodes[0]!.netns, `198.18.${lab.subnetIndex}.200`, { timeoutS: 1 })).toBe(false);
    const out = await lab.nodes[0]!.netns.ip(["route", "get", "192.0.2.1"], { reject: false });
    expect(out.exitCode).not.toBe(0);

    const fwd = await lab.nodes[2]!.netns.run("sysctl", ["-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]);
    expect(fwd.stdout.split("\n").slice(0, 2)).toEqual(["1", "1"]);

    // The root ns holds only the bridge and the root-side veths: no address, no route.
    const rootAddrs = (await labRunner.run("ip", ["-o", "addr", "show", "master", lab.bridge])).stdout;
    const bridgeAddrs = (await labRunner.run("ip", ["-o", "addr", "show", "dev", lab.bridge])).stdout;
    expect(rootAddrs + bridgeAddrs).toBe("");

    await lab.destroy();
    await lab.destroy(); // idempotent
    expect(lab.nodes.every((n) => !existsSync(n.netns.path))).toBe(true);
    expect(await rootLeftovers(lab)).toEqual([]);
  });

  it("wires pods to a bridge in their node; pods reach their node and, with host-gw routes, each other", async () => {
    const lab = await Lab.create({ nodes: 2, ipv6: true });
    labs.push(lab);
    const [n1, n2] = lab.nodes as [typeof lab.nodes[0], typeof lab.nodes[0]];
    const p1 = await lab.addPod(n1, {
      bridge: "wcni0",
      ip: "198.19.1.10/24",
      gateway: "198.19.1.1",
      ipv6: "2001:2:0:f001::10/64",
      gatewayV6: "2001:2:0:f001::1",
    });
    const p1b = await lab.addPod(n1, { bridge: "wcni0", ip: "198.19.1.11/24", gateway: "198.19.1.1" });
    const p2 = await lab.addPod(n2, { bridge: "wcni0", ip: "198.19.2.10/24", gateway: "198.19.2.1", mtu: 1400 });
    expect(p1.ip).toBe("198.19.1.10");
    expect(p1.ipv6).toBe("2001:2:0:f001::10");

    expect(await lab.ping(p1.netns, "198.19.1.1")).toBe(true);
    expect(await lab.ping(p1.netns, "2001:2:0:f001::1")).toBe(true);
    expect(await lab.ping(p1.netns, n1.underlayIp)).toBe(true);
    expect(await lab.ping(p1.netns, p1b.ip)).toBe(true);
    expect(await lab.ping(p2.netns, n2.underlayIp)).toBe(true);

    // Only the lab ranges are routed in a pod: no default route.
    const routes = (await p1.netns.ip(["-4", "route", "show"])).stdout;
    expect(routes).toContain("198.18.0.0/15 via 198.19.1.1 dev eth0");
    expect(routes).not.toContain("default");
    const v6routes = (await p1.netns.ip(["-6", "route", "show"])).stdout;
    expect(v6routes).toContain("2001:2::/48 via 2001:2:0:f001::1 dev eth0");
    expect(v6routes).not.toContain("default");

    // Pod MTU option reaches the pod's eth0.
    expect((await p2.netns.ip(["-o", "link", "show", "eth0"])).stdout).toContain("mtu 1400");

    // Cross-node pod traffic needs routes (host-gw): without them it fails, with them it works.
    expect(await lab.ping(p1.netns, p2.ip, { timeoutS: 1 })).toBe(false);
    await n1.netns.ip(["route", "add", "198.19.2.0/24", "via", n2.underlayIp, "dev", "eth0"]);
    await n2.netns.ip(["route", "add", "198.19.1.0/24", "via", n1.underlayIp, "dev", "eth0"]);
    expect(await lab.ping(p1.netns, p2.ip)).toBe(true);

    await lab.destroy();
    expect([p1, p1b, p2].every((p) => !existsSync(p.netns.path))).toBe(true);
    expect(await rootLeftovers(lab)).toEqual([]);
  });

  it("rejects pod addresses outside the lab ranges", async () => {
    const lab = await Lab.create({ nodes: 1 });
    labs.push(lab);
    const node = lab.nodes[0]!;
    await expect(lab.addPod(node, { bridge: "wcni0", ip: "10.0.0.2/24", gateway: "10.0.0.1" })).rejects.toThrow(/ip "10.0.0.2\/24".*198.18.0.0\/15/);
    await expect(lab.addPod(node, { bridge: "wcni0", ip: "198.19.1.2", gateway: "198.19.1.1" })).rejects.toThrow(/address\/prefix/);
    await expect(
      lab.addPod(node, { bridge: "wcni0", ip: "198.19.1.2/24", gateway: "198.19.1.1", ipv6: "fd00::2/64", gatewayV6: "fd00::1" }),
    ).rejects.toThrow(/2001:2::\/48/);
  });

  it("honours the underlay MTU: DF pings fit exactly", async () => {
    const lab = await Lab.create({ nodes: 2, mtu: 1400 });
    labs.push(lab);
    const [a, b] = lab.nodes as [typeof lab.nodes[0], typeof lab.nodes[0]];
    expect(await lab.ping(a.netns, b.underlayIp, { size: 1400 - 28, dontFragment: true })).toBe(true);
    expect(await lab.ping(a.netns, b.underlayIp, { size: 1400 - 27, dontFragment: true, timeoutS: 1 })).toBe(false);
  });

  it("runs two labs at once without collisions", async () => {
    const [a, b] = await Promise.all([Lab.create({ nodes: 2 }), Lab.create({ nodes: 2 })]);
    labs.push(a, b);
    expect(a.subnetIndex).not.toBe(b.subnetIndex);
    expect(a.bridge).not.toBe(b.bridge);
    expect(a.nodes[0]!.netns.name).not.toBe(b.nodes[0]!.netns.name);
    expect(await a.ping(a.nodes[0]!.netns, a.nodes[1]!.underlayIp)).toBe(true);
    expect(await b.ping(b.nodes[0]!.netns, b.nodes[1]!.underlayIp)).toBe(true);
    // Separate bridges: lab A cannot see lab B even on its own subnet.
    await a.nodes[0]!.netns.ip(["route", "add", `198.18.${b.subnetIndex}.0/24`, "dev", "eth0"]);
    expect(await a.ping(a.nodes[0]!.netns, b.nodes[1]!.underlayIp, { timeoutS: 1 })).toBe(false);

    await a.destroy();
    expect(await b.ping(b.nodes[1]!.netns, b.nodes[0]!.underlayIp)).toBe(true);
    expect(await rootLeftovers(a)).toEqual([]);
  });
}, { tools: ["ping", "sysctl"] });
