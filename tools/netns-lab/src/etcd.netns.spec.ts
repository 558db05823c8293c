import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { afterEach, expect, it } from "vitest";
import { describeReal } from "./vitest.js";
import { etcdGet, etcdHealthy, etcdHttp, etcdPut, makeTestPki, startEtcd, type EtcdServer } from "./etcd.js";

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

describeReal("startEtcd with tls: true", () => {
  const started: EtcdServer[] = [];
  afterEach(async () => {
    for (const e of started.splice(0)) await e.stop();
  });

  it("serves https with mutual TLS, keys 0600, survives kill+restart, stop removes the certificates", async () => {
    const etcd = await startEtcd({ tls: true });
    started.push(etcd);
    expect(etcd.endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const tls = etcd.tls!;
    expect(tls).toBeDefined();
    for (const f of [tls.caFile, tls.certFile, tls.keyFile]) expect(f.startsWith(etcd.dataDir)).toBe(true);
    expect(statSync(tls.keyFile).mode & 0o777).toBe(0o600);

    // The chain is what etcd and the clients rely on: the client and the CA certificates verify.
    const ca = new X509Certificate(readFileSync(tls.caFile));
    const client = new X509Certificate(readFileSync(tls.certFile));
    expect(ca.ca).toBe(true);
    expect(client.ca).toBe(false);
    expect(client.verify(ca.publicKey)).toBe(true);
    expect(client.checkIssued(ca)).toBe(true);

    // The /v3 gateway works over TLS (it needs a server certificate that is also good for clientAuth).
    await etcdPut(etcd.endpoint, "/weft-tls/k", "v1", tls);
    expect(await etcdGet(etcd.endpoint, "/weft-tls/k", tls)).toBe("v1");

    // Without a client certificate etcd refuses the handshake; without TLS files the helper refuses to try.
    const noCert = await new Promise<string>((resolve) => {
      const u = new URL(etcd.endpoint);
      const req = httpsRequest({ host: u.hostname, port: Number(u.port), path: "/health", ca: readFileSync(tls.caFile), agent: false, timeout: 2000 }, (res) =>
        resolve(`answered HTTP ${res.statusCode}`),
      );
      req.on("error", (e) => resolve(String(e)));
      req.end();
    });
    expect(noCert).toMatch(/alert bad certificate|certificate required/);
    await expect(etcdHttp(etcd.endpoint, "/health")).rejects.toThrow(/needs the client TLS files/);
    expect(await etcdHealthy(etcd.endpoint.replace("https:", "http:"), 500)).toBe(false);

    await etcd.kill();
    expect(await etcdHealthy(etcd.endpoint, 300, tls)).toBe(false);
    await etcd.restart();
    expect(await etcdGet(etcd.endpoint, "/weft-tls/k", tls)).toBe("v1");

    await etcd.stop();
    expect(existsSync(tls.keyFile)).toBe(false);
  });

  it("makeTestPki: two PKIs do not trust each other", async () => {
    const etcd = await startEtcd({ tls: true });
    started.push(etcd);
    const other = await makeTestPki(`${etcd.dataDir}/other-pki`, "weft-other-ca");
    const otherCa = new X509Certificate(readFileSync(other.caFile));
    expect(otherCa.subject).toBe("CN=weft-other-ca");
    expect(new X509Certificate(readFileSync(etcd.tls!.certFile)).checkIssued(otherCa)).toBe(false);
    // A client that trusts only the other CA rejects etcd's server certificate.
    const err = await etcdHttp(etcd.endpoint, "/health", undefined, 2000, { ...etcd.tls!, caFile: other.caFile }).catch((e: Error) => e);
    expect(String(err)).toMatch(/certificate/i);
  });

  it("tls needs loopback", async () => {
    await expect(startEtcd({ tls: true, listen: "unix" })).rejects.toThrow(/tls needs listen "loopback"/);
  });
}, { tools: ["etcd", "openssl"] });
