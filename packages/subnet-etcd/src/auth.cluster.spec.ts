/**
 * Username/password auth against a real etcd with auth enabled: a user limited to one prefix can run the
 * manager; a wrong password is a permanent, clear error (not an endless retry); the password is never logged.
 */
import "reflect-metadata";
import { IPAddress, MemoryLogger, WeftError } from "@weft/core";
import { type EtcdServer, startEtcd } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { Etcd3, Range } from "etcd3";
import { afterAll, beforeAll, expect, it } from "vitest";
import { EtcdSubnetManager } from "./manager.js";

const PASSWORD = "s3cret-Weft-pw";
const ROOT_PASSWORD = "r00t-Weft-pw";
const never = () => new AbortController().signal;

describeReal(
  "EtcdSubnetManager with etcd username/password auth",
  () => {
    let etcd: EtcdServer;
    const managers: EtcdSubnetManager[] = [];

    beforeAll(async () => {
      etcd = await startEtcd({ listen: "loopback" });
      const admin = new Etcd3({ hosts: etcd.endpoints });
      try {
        await admin.put("/weft.io/network/config").value('{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}}');
        await admin.user("root").create(ROOT_PASSWORD);
        await admin.user("root").addRole("root");
        await admin.role("weft-node").create();
        await admin.role("weft-node").grant({ permission: "Readwrite", range: Range.prefix("/weft.io/network/") });
        await admin.user("weft").create(PASSWORD);
        await admin.user("weft").addRole("weft-node");
        await admin.auth.authEnable({});
      } finally {
        admin.close();
      }
    });
    afterAll(async () => {
      for (const m of managers) await m.close().catch(() => undefined);
      await etcd?.stop();
    });

    it("works with the right password and never logs it", async () => {
      const log = new MemoryLogger();
      const m = new EtcdSubnetManager({ endpoints: etcd.endpoints, username: "weft", password: PASSWORD, leaseTtlSeconds: 60 }, log);
      managers.push(m);
      await m.getNetworkConfig(never());
      const lease = await m.acquireLease({ publicIP: IPAddress.parse("198.18.0.1"), backendType: "vxlan" }, never());
      expect(lease.subnet?.prefix).toBe(24);
      const ctl = new AbortController();
      const it = m.watchLeases(lease, ctl.signal)[Symbol.asyncIterator]();
      expect((await it.next()).value?.type).toBe("snapshot");
      ctl.abort();
      await it.return?.();
      expect(JSON.stringify(log.records)).not.toContain(PASSWORD);
      expect(m.name).not.toContain(PASSWORD);
    });

    it("works with user:password@ in the endpoints (with and without a scheme), and never shows the password", async () => {
      const hostPort = new URL(etcd.endpoint).host;
      for (const endpoint of [`http://weft:${PASSWORD}@${hostPort}`, `weft:${PASSWORD}@${hostPort}`]) {
        const log = new MemoryLogger();
        const m = new EtcdSubnetManager({ endpoints: [endpoint], leaseTtlSeconds: 60 }, log);
        managers.push(m);
        const got = await Promise.race([m.getNetworkConfig(never()).catch((e) => e), new Promise((r) => setTimeout(() => r("still retrying"), 10_000))]);
        expect(got, `${endpoint.replace(PASSWORD, "***")}: ${String(got)}`).toHaveProperty("v4");
        expect(m.name).toBe(`etcd http://${hostPort} /weft.io/network`);
        expect(JSON.stringify(log.records)).not.toContain(PASSWORD);
      }
    });

    it("fails once with a clear, permanent error on a wrong password", async () => {
      const log = new MemoryLogger();
      const m = new EtcdSubnetManager({ endpoints: etcd.endpoints, username: "weft", password: "wrong-Weft-pw" }, log);
      managers.push(m);
      const err = await Promise.race([m.getNetworkConfig(never()).catch((e) => e), new Promise((r) => setTimeout(() => r("still retrying"), 10_000))]);
      expect(err).toBeInstanceOf(WeftError);
      expect((err as WeftError).code).toBe("CONFIG_INVALID");
      expect((err as WeftError).message).toMatch(/refused get \/weft.io\/network\/config for user "weft": .*authentication failed/);
      expect((err as WeftError).message).not.toContain("wrong-Weft-pw");
      expect(JSON.stringify(log.records)).not.toContain("wrong-Weft-pw");
    });

    it("a user without access to the prefix gets a clear permission error", async () => {
      const m = new EtcdSubnetManager({ endpoints: etcd.endpoints, prefix: "/coreos.com/network", username: "weft", password: PASSWORD }, new MemoryLogger());
      managers.push(m);
      const err = await m.getNetworkConfig(never()).catch((e) => e);
      expect(err).toBeInstanceOf(WeftError);
      expect(err.code).toBe("CONFIG_INVALID");
      expect(err.message).toMatch(/permission denied/);
    });
  },
  { tools: ["etcd"] },
);
