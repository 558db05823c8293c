/**
 * vxlan and conflicting peers (issue 15): two peers with one VtepMAC, a peer with this node's own MAC or with a
 * hostile PublicIP. FakeKernel, final state: the FDB, and whether periodic passes keep "repairing" it.
 */
import { TEST_TOPOLOGY, type TestAgent, startTestAgent, testNetConf } from "@weft/backend-testkit";
import { IPAddress, IPNet, type Lease } from "@weft/core";
import { afterEach, describe, expect, it } from "vitest";
import vxlan from "./index.js";

const T = TEST_TOPOLOGY;
const agents: TestAgent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.close().catch(() => undefined);
});

async function node(i: number): Promise<TestAgent> {
  const me = T.node(i);
  const a = await startTestAgent({
    backends: [vxlan],
    config: testNetConf({ Type: "vxlan" }, "v4"),
    iface: { address: me.address },
    leases: { subnet: me.subnet, nodeName: me.nodeName },
  });
  agents.push(a);
  return a;
}

const withSubnet = (l: Lease, subnet: string, ip: string): Lease => ({ ...l, nodeName: undefined, subnet: IPNet.parse(subnet), attrs: { ...l.attrs, publicIP: IPAddress.parse(ip) } });

describe("vxlan peers that conflict", () => {
  it("programs one of two peers sharing a VtepMAC (the lower key) and does not repair drift at every pass", async () => {
    const a = await node(1);
    const p2 = (await node(2)).lease;
    const copy = withSubnet(p2, "198.19.9.0/24", "198.18.0.9");
    await a.addPeer(copy);
    await a.addPeer(p2);
    await a.reconcile();
    for (let i = 0; i < 3; i++) expect((await a.reconcile()).writes).toBe(0);
    const fdb = (await a.kernel.listFdb({ dev: "weft.1" })).map((f) => `${f.mac} ${f.dst}`);
    expect(fdb).toEqual([`${(p2.attrs.backendData as { VtepMAC: string }).VtepMAC} 198.18.0.2`]);
    expect(a.peers.status("198.19.9.0-24")).toMatchObject({ state: "skipped" });
  });

  it("skips a peer publishing this node's own VtepMAC or address", async () => {
    const a = await node(1);
    const own = withSubnet(a.lease, "198.19.9.0/24", "198.18.0.9");
    expect(await a.addPeer(own)).toMatchObject({ state: "skipped" });
    const p2 = (await node(2)).lease;
    expect(await a.addPeer(withSubnet(p2, "198.19.2.0/24", "198.18.0.1"))).toMatchObject({ state: "skipped" });
    expect(await a.addPeer(withSubnet(p2, "198.19.2.0/24", "255.255.255.255"))).toMatchObject({ state: "skipped" });
    expect(await a.kernel.listFdb({ dev: "weft.1" })).toEqual([]);
    expect(await a.kernel.listRoutes({ family: "v4", protocol: 87 })).toEqual([]);
  });
});
