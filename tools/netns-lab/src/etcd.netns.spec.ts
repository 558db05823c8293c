import { existsSync, statSync } from "node:fs";
import { afterEach, expect, it } from "vitest";
import { describeReal } from "./vitest.js";
import { etcdGet, etcdHealthy, etcdHttp, etcdPut, startEtcd, type EtcdServer } from "./etcd.js";

describeReal("startEtcd", () => {
  const started: EtcdServer[] = [];
  afterEach(async () => {
    for (const e of started.splice(0)) await e.stop();
  });

  for (const listen of ["loopback", "unix"] as const) {
    it(`${listen}: answers /health, keeps data across kill+restart, stop removes the data dir`, async () => {
      const etcd = await startEtcd({ listen });
      started.push(etcd);
      expect(etcd.endpoints).toEqual([etcd.endpoint]);
      if (listen === "unix") {
        expect(etcd.endpoint).toMatch(/^unix:\/\/\/.+:23790$/);
        expect(statSync(etcd.endpoint.slice("unix://".length)).isSocket()).toBe(true);
      } else {
        expect(etcd.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      }
      const health = await etcdHttp(etcd.endpoint, "/health");
      expect(JSON.parse(health.body)).toMatchObject({ health: "true" });
      const version = JSON.parse((await etcdHttp(etcd.endpoint, "/version")).body) as { etcdserver: string };
      expect(version.etcdserver).toMatch(/^3\./);

      await etcdPut(etcd.endpoint, "/coreos.com/network/config", '{"Network":"198.19.0.0/16"}');
      const firstPid = etcd.pid;

      await etcd.kill();
      expect(await etcdHealthy(etcd.endpoint, 300)).toBe(false);
      expect(existsSync(etcd.dataDir)).toBe(true);

      await etcd.restart();
      expect(etcd.pid).not.toBe(firstPid);
      expect(await etcdGet(etcd.endpoint, "/coreos.com/network/config")).toBe('{"Network":"198.19.0.0/16"}');
      expect(await etcdGet(etcd.endpoint, "/absent")).toBeUndefined();

      await etcd.stop();
      await etcd.stop(); // idempotent
      expect(existsSync(etcd.dataDir)).toBe(false);
      expect(await etcdHealthy(etcd.endpoint, 300)).toBe(false);
    });
  }

  it("passes extraArgs through to etcd", async () => {
    // An unknown flag makes etcd exit at once: startEtcd must report it, not hang until the timeout.
    await expect(startEtcd({ extraArgs: ["--no-such-flag-weft"] })).rejects.toThrow(/etcd exited during startup/);
    const etcd = await startEtcd({ extraArgs: ["--auth-token", "simple", "--quota-backend-bytes", "104857600"] });
    started.push(etcd);
    expect(await etcdHealthy(etcd.endpoint)).toBe(true);
  });
}, { tools: ["etcd"] });
