/**
 * weftd with etcd username/password auth across an etcd restart (issue 15, #4): the watch must get a new auth
 * token (etcd refuses the old one), so a lease written after the restart is programmed, and SIGTERM still ends
 * the agent. etcd's simple tokens are given a 2 s TTL so the old token is refused deterministically. The
 * password is never in the agent's log. Needs `npm run build` (runs packages/daemon/dist/main.js).
 */
import "reflect-metadata";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { sleep } from "@weft/core";
import type { ChildHandle } from "@weft/kernel";
import { type EtcdServer, Lab, labRunner, startEtcd } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { Etcd3, Range } from "etcd3";
import { afterAll, beforeAll, expect, it } from "vitest";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "daemon", "dist", "main.js");
const PREFIX = "/weft-auth-test/network";
const PASSWORD = "Weftd-Auth-pw-9";
const ROOT_PASSWORD = "Weftd-Root-pw-9";

describeReal(
  "weftd with etcd auth across an etcd restart",
  () => {
    let etcd: EtcdServer;
    let lab: Lab;
    let dir: string;
    let proc: ChildHandle | undefined;
    const logFile = () => join(dir, "weftd.log");
    const log = () => (existsSync(logFile()) ? readFileSync(logFile(), "utf8") : "");

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "weftd-auth-"));
      etcd = await startEtcd({ listen: "unix", extraArgs: ["--auth-token-ttl", "2"] });
      const admin = new Etcd3({ hosts: etcd.endpoints });
      try {
        await admin.put(`${PREFIX}/config`).value('{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}}');
        await admin.user("root").create(ROOT_PASSWORD);
        await admin.user("root").addRole("root");
        await admin.role("weft-node").create();
        await admin.role("weft-node").grant({ permission: "Readwrite", range: Range.prefix(`${PREFIX}/`) });
        await admin.user("weft").create(PASSWORD);
        await admin.user("weft").addRole("weft-node");
        await admin.auth.authEnable({});
      } finally {
        admin.close();
      }
      lab = await Lab.create({ nodes: 1, name: "wa" });
    }, 60_000);
    afterAll(async () => {
      proc?.kill("SIGKILL");
      await proc?.exited;
      await lab?.destroy().catch(() => undefined);
      await etcd?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it("programs a lease written after the restart, exits on SIGTERM, and never logs the password", async () => {
      const n = lab.nodes[0]!;
      mkdirSync(join(dir, "state"), { recursive: true });
      proc = labRunner.spawn(
        "ip",
        [
          "netns", "exec", n.netns.name, process.execPath, weftd,
          "--etcd-endpoints", etcd.endpoint, "--etcd-prefix", PREFIX, "--etcd-username", "weft", "--etcd-lease-ttl", "600",
          "--iface", "eth0", "--subnet-file", join(dir, "subnet.env"), "--state-dir", join(dir, "state"),
          "--healthz-ip", "127.0.0.1", "--healthz-port", "9099", "--resync-interval", "2",
        ],
        { stdoutFile: logFile(), stderrFile: logFile(), env: { WEFTD_ETCD_PASSWORD: PASSWORD } },
      );
      const ready = async () => (await n.netns.run("curl", ["-s", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9099/readyz"], { reject: false })).stdout === "200";
      let deadline = Date.now() + 30_000;
      while (!(await ready())) {
        if (Date.now() > deadline) throw new Error(`weftd not ready; log:\n${log().slice(-2000)}`);
        await sleep(200);
      }
      await etcd.kill();
      await sleep(3_000); // past the token TTL: etcd refuses the agent's token when it is back
      await etcd.restart();
      const root = new Etcd3({ hosts: etcd.endpoints, auth: { username: "root", password: ROOT_PASSWORD } });
      try {
        await sleep(1_000);
        const value = JSON.stringify({ PublicIP: "198.18.0.200", PublicIPv6: null, BackendType: "vxlan", BackendData: { VNI: 1, VtepMAC: "02:42:c6:12:00:c8" } });
        await root.put(`${PREFIX}/subnets/198.19.200.0-24`).value(value);
      } finally {
        root.close();
      }
      deadline = Date.now() + 15_000;
      let route = "";
      while (Date.now() < deadline) {
        route = (await n.netns.run("ip", ["route", "show", "198.19.200.0/24"], { reject: false })).stdout.trim();
        if (route !== "") break;
        await sleep(200);
      }
      expect(route, `the peer written after the restart was never programmed; log:\n${log().slice(-2500)}`).toContain("198.19.200.0/24");
      proc.kill("SIGTERM");
      const exited = await Promise.race([proc.exited, sleep(15_000).then(() => "still running" as const)]);
      expect(exited, `weftd did not exit within 15 s of SIGTERM; log:\n${log().slice(-1500)}`).not.toBe("still running");
      proc = undefined;
      expect(log()).not.toContain(PASSWORD);
    }, 120_000);
  },
  { tools: ["etcd"] },
);
