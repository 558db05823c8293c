/**
 * weftd against an etcd that goes away (issue 15), with the built agent in node namespaces:
 * - started while etcd is down, an agent has a valid configuration within 2 s of etcd answering, and becomes
 *   ready (a hang bound, not a bench);
 * - after etcd restarts, a lease written afterwards is programmed, and SIGTERM still ends the agent.
 * Needs `npm run build` (the test runs packages/daemon/dist/main.js).
 */
import "reflect-metadata";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { sleep } from "@weft/core";
import { WeftCluster, etcdPut } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "daemon", "dist", "main.js");

describeReal(
  "weftd while etcd goes away",
  () => {
    let c: WeftCluster;
    beforeAll(async () => {
      c = await WeftCluster.start({ nodes: 2, weftd, backend: { Type: "vxlan" }, pods: false, name: "we1" });
    }, 120_000);
    afterAll(async () => {
      await c?.destroy();
    });

    it("is configured within 2 s of etcd answering when it started while etcd was down, then ready", async () => {
      const n = c.nodes[0]!;
      await c.stopAgent(n);
      await c.etcd.kill();
      await c.startAgent(n);
      await sleep(12_000); // every retry backoff at its cap
      expect(n.proc, `weftd exited while etcd was down:\n${c.log(n).slice(-2000)}`).toBeDefined();
      await c.etcd.restart(); // resolves once etcd answers /health
      const answered = Date.now();
      // "configuration valid" is the line the issue timed (20-35 s before): the store part of starting. Device
      // and route work after it depends on the machine's load, so readiness only gets a hang bound.
      await c.waitReady(n, 30_000);
      const valid = c
        .log(n)
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { msg?: string; time?: string })
        .filter((r) => r.msg === "configuration valid" && Date.parse(r.time ?? "") >= answered - 60_000)
        .at(-1);
      expect(valid, `no "configuration valid" line; log:\n${c.log(n).slice(-2000)}`).toBeDefined();
      const took = Date.parse(valid!.time!) - answered;
      expect(took, `configuration valid ${took} ms after etcd answered; log:\n${c.log(n).slice(-3000)}`).toBeLessThan(2_000);
    }, 90_000);

    it("programs a lease written after an etcd restart, and exits on SIGTERM", async () => {
      const n = c.nodes[0]!;
      await c.waitReady(n);
      await c.etcd.kill();
      await sleep(2_000);
      await c.etcd.restart();
      const value = JSON.stringify({ PublicIP: "198.18.0.200", PublicIPv6: null, BackendType: "vxlan", BackendData: { VNI: 1, VtepMAC: "02:42:c6:12:00:c8" } });
      await etcdPut(c.etcd.endpoint, `${c.prefix}/subnets/198.19.200.0-24`, value);
      const deadline = Date.now() + 15_000;
      let route = "";
      while (Date.now() < deadline) {
        route = (await n.lab.netns.run("ip", ["route", "show", "198.19.200.0/24"], { reject: false })).stdout.trim();
        if (route !== "") break;
        await sleep(200);
      }
      expect(route, `the peer written after the restart was never programmed; log:\n${c.log(n).slice(-2000)}`).toContain("198.19.200.0/24");
      const stopped = await Promise.race([c.stopAgent(n, "SIGTERM"), sleep(15_000).then(() => "still running" as const)]);
      expect(stopped, "weftd did not exit within 15 s of SIGTERM").not.toBe("still running");
      expect(stopped).toMatchObject({ code: 0 });
    }, 90_000);
  },
  { tools: ["etcd"] },
);
