/**
 * host-gw and a peer whose route the kernel refuses (issue 15 #9): /status must say what is true (failed, with
 * the kernel's line), and one unprogrammable peer must not hold readiness forever. FakeKernel, final state.
 */
import { TEST_TOPOLOGY, type TestAgent, startTestAgent, testNetConf } from "@weft/backend-testkit";
import { IPAddress, IPNet } from "@weft/core";
import type { FakeKernel } from "@weft/kernel-testing";
import { afterEach, describe, expect, it } from "vitest";
import hostGw from "./index.js";

const T = TEST_TOPOLOGY;
const agents: TestAgent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.close().catch(() => undefined);
});

async function node(i: number): Promise<TestAgent> {
  const me = T.node(i);
  const a = await startTestAgent({
    backends: [hostGw],
    config: testNetConf({ Type: "host-gw" }, "v4"),
    iface: { address: me.address },
    leases: { subnet: me.subnet, nodeName: me.nodeName },
  });
  agents.push(a);
  return a;
}

describe("host-gw peer the kernel refuses", () => {
  it("is failed in the statuses with the kernel's line, other peers programmed, and does not hold readiness", async () => {
    const a = await node(1);
    (a.kernel as FakeKernel).failAlways((op) => op.op === "route.add" && op.route.dst === "198.19.3.0/24", "KERNEL_INVALID", "Error: Nexthop has invalid gateway.");
    await a.addPeer((await node(2)).lease);
    await a.addPeer((await node(3)).lease);
    await a.reconcile();
    const st = Object.fromEntries(a.peers.statuses().map((s) => [s.peer, s]));
    expect(st["198.19.2.0-24"]?.state).toBe("programmed");
    expect(st["198.19.3.0-24"]?.state).toBe("failed");
    expect(st["198.19.3.0-24"]?.reason).toContain("Nexthop has invalid gateway");
    expect(a.peers.counts()).toMatchObject({ programmed: 1, failed: 1 });
    // A refusal of this kind does not clear by retrying: reported, but not holding readiness.
    expect(a.peers.retryableFailures()).toBe(0);
  });

  it("skips a peer whose PublicIP is the broadcast or network address of the shared segment, naming it", async () => {
    const a = await node(1);
    const p = (await node(2)).lease;
    for (const ip of ["198.18.0.255", "198.18.0.0"]) {
      const st = await a.addPeer({ ...p, subnet: IPNet.parse("198.19.9.0/24"), attrs: { ...p.attrs, publicIP: IPAddress.parse(ip) } });
      expect(st.state, ip).toBe("skipped");
      expect("reason" in st && st.reason, ip).toContain(`has PublicIP ${ip}, the `);
    }
    expect((await a.kernel.listRoutes({ family: "v4", protocol: 87 })).map((r) => r.dst)).toEqual([]);
  });
});
