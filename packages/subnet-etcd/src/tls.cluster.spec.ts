/**
 * EtcdSubnetManager over TLS against a real etcd 3.4 that demands client certificates (--client-cert-auth),
 * with a throw-away PKI made by @weft/netns-lab (openssl). Covers the code path the option-validation unit
 * tests cannot: grpc-js credentials from the PEM files, mutual TLS, and what an operator sees when the CA or
 * the client certificate is wrong (one permanent error that says which file to fix, not an endless retry).
 */
import "reflect-metadata";
import { IPAddress, type LeaseEvent, MemoryLogger, WeftError } from "@weft/core";
import { type EtcdServer, type TestPki, etcdGet, etcdPut, makeTestPki, startEtcd } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";
import { EtcdSubnetManager } from "./manager.js";
import type { EtcdTlsOptions } from "./etcd-store.js";

const PREFIX = "/weft.io/network";
const NET = '{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}}';
const never = () => new AbortController().signal;
const attrs = (ip: string) => ({ publicIP: IPAddress.parse(ip), backendType: "vxlan" as const, backendData: { VNI: 1, VtepMAC: "c6:2e:1f:00:dd:01" } });

describeReal(
  "EtcdSubnetManager over mutual TLS",
  () => {
    let etcd: EtcdServer;
    /** A second, unrelated PKI: its CA does not know etcd's certificates, and etcd does not know its client. */
    let other: TestPki;
    const managers: EtcdSubnetManager[] = [];
    const mk = (tls: EtcdTlsOptions, log = new MemoryLogger()) => {
      const m = new EtcdSubnetManager({ endpoints: etcd.endpoints, tls, requestTimeoutMs: 3_000 }, log);
      managers.push(m);
      return m;
    };
    /** The first error of getNetworkConfig, or "still retrying" after 10 s (what this file must never see). */
    const firstError = (m: EtcdSubnetManager) =>
      Promise.race([
        m.getNetworkConfig(never()).then(
          () => "connected",
          (e: unknown) => e,
        ),
        new Promise((r) => setTimeout(() => r("still retrying after 10 s"), 10_000)),
      ]);

    beforeAll(async () => {
      etcd = await startEtcd({ tls: true });
      other = await makeTestPki(`${etcd.dataDir}/other-pki`, "weft-other-ca");
      await etcdPut(etcd.endpoint, `${PREFIX}/config`, NET, etcd.tls);
    });
    afterAll(async () => {
      for (const m of managers) await m.close().catch(() => undefined);
      await etcd?.stop();
    });

    it("acquires and watches over mutual TLS, and does not warn about plaintext", async () => {
      const tls = etcd.tls!;
      const log = new MemoryLogger();
      const a = mk(tls, log);
      const b = mk(tls);
      const la = await a.acquireLease(attrs("198.18.0.1"), never());
      expect(la.subnet?.prefix).toBe(24);
      // What the manager wrote is in etcd (read back over the JSON gateway with the same client certificate).
      const stored = await etcdGet(etcd.endpoint, `${PREFIX}/subnets/${la.subnet!.ip}-24`, tls);
      expect(JSON.parse(stored!)).toMatchObject({ PublicIP: "198.18.0.1", BackendType: "vxlan" });

      const ctl = new AbortController();
      const it = a.watchLeases(la, ctl.signal)[Symbol.asyncIterator]();
      const first = (await it.next()).value as LeaseEvent;
      expect(first).toEqual({ type: "snapshot", leases: [] });
      const lb = await b.acquireLease(attrs("198.18.0.2"), never());
      const next = await Promise.race([it.next(), new Promise<never>((_, rej) => setTimeout(() => rej(new Error("no watch event within 10 s")), 10_000))]);
      expect(next.value?.type).toBe("added");
      expect(next.value?.type === "added" && next.value.lease.subnet?.toString()).toBe(lb.subnet?.toString());
      ctl.abort();
      await it.return?.();
      expect(log.records.map((r) => r.msg).filter((m) => /without TLS|unreachable/.test(m))).toEqual([]);
    });

    it("a CA that did not sign etcd's certificate fails once, naming TLS, the CA file and the option", async () => {
      const err = await firstError(mk({ ...etcd.tls!, caFile: other.caFile }));
      expect(err).toBeInstanceOf(WeftError);
      expect((err as WeftError).code).toBe("CONFIG_INVALID");
      expect((err as WeftError).message).toBe(
        `etcd ${etcd.endpoint}: get ${PREFIX}/config failed: TLS: etcd's server certificate is not signed by the CA file ${other.caFile} ` +
          "(unable to verify the first certificate); set the etcd CA file option (tls.caFile, --etcd-cafile) to the CA that signed etcd's --cert-file",
      );
    });

    it("without a client certificate etcd refuses, and the error says to set one", async () => {
      const err = await firstError(mk({ caFile: etcd.tls!.caFile }));
      expect(err).toBeInstanceOf(WeftError);
      expect((err as WeftError).code).toBe("CONFIG_INVALID");
      expect((err as WeftError).message).toMatch(
        /^etcd https:\/\/127\.0\.0\.1:\d+: get \/weft\.io\/network\/config failed: TLS: etcd requires a client certificate \(alert "bad certificate"; .*--etcd-certfile\/--etcd-keyfile\)$/,
      );
    });

    it("a client certificate from a CA etcd does not trust is refused, naming the certificate file", async () => {
      const err = await firstError(mk({ caFile: etcd.tls!.caFile, certFile: other.certFile, keyFile: other.keyFile }));
      expect(err).toBeInstanceOf(WeftError);
      expect((err as WeftError).code).toBe("CONFIG_INVALID");
      expect((err as WeftError).message).toContain(`TLS: etcd refused the client certificate ${other.certFile} (alert "bad certificate")`);
    });
  },
  { tools: ["etcd", "openssl"] },
);
