import { ConfigError, WeftError, clearRegisteredSecrets } from "@weft/core";
import { afterEach, describe, expect, it } from "vitest";
import { EtcdStore, redactEndpoint, tlsProblem } from "./etcd-store.js";

const base = { requestTimeoutMs: 1000, dialTimeoutMs: 1000, watchBackoffMinMs: 100, watchBackoffMaxMs: 5000 };

describe("EtcdStore options", () => {
  it("drops credentials from endpoints shown in logs", () => {
    expect(redactEndpoint("https://weft:s3cret@etcd.example:2379")).toBe("https://etcd.example:2379");
    expect(redactEndpoint("http://127.0.0.1:2379")).toBe("http://127.0.0.1:2379");
    const s = new EtcdStore({ ...base, endpoints: ["http://u:pw@127.0.0.1:1"] });
    expect(s.label).toBe("etcd http://127.0.0.1:1");
    void s.close();
  });

  it("shows no credentials in its label for endpoints without a scheme or with @ and / in the password", () => {
    const bare = new EtcdStore({ ...base, endpoints: ["weft:pw-Bare1@127.0.0.1:1"] });
    expect(bare.label).toBe("etcd http://127.0.0.1:1");
    void bare.close();
    const odd = new EtcdStore({ ...base, endpoints: ["http://weft:p@ss/w0rd@127.0.0.1:1"] });
    expect(odd.label).toBe("etcd http://127.0.0.1:1");
    void odd.close();
  });

  it("refuses endpoints that can never work, at construction, with one line", () => {
    expect(() => new EtcdStore({ ...base, endpoints: ["ftp://127.0.0.1:2379"] })).toThrow(/unsupported scheme "ftp:\/\/"/);
    expect(() => new EtcdStore({ ...base, endpoints: ["garbage"] })).toThrow(ConfigError);
  });

  it("needs a client certificate and key together", () => {
    expect(() => new EtcdStore({ ...base, endpoints: ["https://127.0.0.1:1"], tls: { certFile: "/x/cert.pem" } })).toThrow(ConfigError);
    expect(() => new EtcdStore({ ...base, endpoints: ["https://127.0.0.1:1"], tls: { keyFile: "/x/key.pem" } })).toThrow(
      /TLS client auth needs both a certificate and a key file/,
    );
  });

  it("names an unreadable CA file", () => {
    expect(() => new EtcdStore({ ...base, endpoints: ["https://127.0.0.1:1"], tls: { caFile: "/nonexistent/ca.pem" } })).toThrow(
      /cannot read caFile \/nonexistent\/ca.pem: .*ENOENT/,
    );
  });

  it("needs a username and password together, and at least one endpoint", () => {
    expect(() => new EtcdStore({ ...base, endpoints: ["http://127.0.0.1:1"], username: "weft" })).toThrow(/username and password go together/);
    expect(() => new EtcdStore({ ...base, endpoints: [] })).toThrow(/no etcd endpoints given/);
  });
});

describe("EtcdStore errors", () => {
  afterEach(() => clearRegisteredSecrets());

  it("never carries endpoint credentials in an error text, a cause or a watch error", async () => {
    // Two credentialed endpoints, both refusing connections (port 1 on loopback).
    const s = new EtcdStore({ ...base, endpoints: ["http://weft:Secret-One@127.0.0.1:1", "http://weft:Secret-One@127.0.0.2:1"] });
    try {
      const err = await s.get("/weft.io/network/config").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WeftError);
      expect((err as WeftError).code).toBe("STORE_UNAVAILABLE");
      const all = (e: unknown): string => (e instanceof Error ? `${e.message} ${e.stack ?? ""} ${all(e.cause)}` : String(e ?? ""));
      expect(all(err)).not.toContain("Secret-One");
      const watchErr = await new Promise<unknown>((resolve) => {
        s.watch("/weft.io/network/subnets/", true, 1n, { onEvents() {}, onConnected() {}, onDisconnected: resolve, onCanceled: resolve });
      });
      expect(all(watchErr)).not.toContain("Secret-One");
    } finally {
      await s.close();
    }
  });
});

// Messages as grpc-js 1.x / Node 20 / etcd 3.4 produce them (captured from tls.cluster.spec.ts runs).
const grpc = (last: string) => `14 UNAVAILABLE: No connection established. Last error: ${last} (2026-11-25T08:32:59.361Z). Resolution note: `;
const ALERT_42 =
  "80FC2144DE7F0000:error:0A000412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1601:SSL alert number 42\n";

describe("tlsProblem", () => {
  it("names the CA file when etcd's certificate does not verify", () => {
    const p = tlsProblem("14 UNAVAILABLE: No connection established. Last error: Error: unable to verify the first certificate. Resolution note: ", { caFile: "/etc/weft/ca.pem" });
    expect(p?.permanent).toBe(true);
    expect(p?.text).toBe(
      "TLS: etcd's server certificate is not signed by the CA file /etc/weft/ca.pem (unable to verify the first certificate); set the etcd CA file option (tls.caFile, --etcd-cafile) to the CA that signed etcd's --cert-file",
    );
    expect(tlsProblem(grpc("Error: self-signed certificate in certificate chain"), {})?.text).toContain("not signed by the system CA roots (no CA file set)");
  });

  it("tells a missing client certificate from a refused one", () => {
    const none = tlsProblem(grpc(ALERT_42), { caFile: "/ca.pem" });
    expect(none?.permanent).toBe(true);
    expect(none?.text).toMatch(/^TLS: etcd requires a client certificate \(alert "bad certificate"; etcd runs with --client-cert-auth\) and none is set; set .*--etcd-certfile\/--etcd-keyfile/);
    const refused = tlsProblem(grpc(ALERT_42), { caFile: "/ca.pem", certFile: "/c.pem", keyFile: "/k.pem" });
    expect(refused?.text).toMatch(/^TLS: etcd refused the client certificate \/c.pem \(alert "bad certificate"\); it must be signed by a CA in etcd's --trusted-ca-file/);
    expect(tlsProblem(grpc("...:tlsv13 alert certificate required:..."), {})?.text).toContain('alert "certificate required"');
  });

  it("names the host for a subjectAltName mismatch, and expiry", () => {
    const p = tlsProblem(grpc("Error: Hostname/IP does not match certificate's altnames: IP: 127.0.0.2 is not in the cert's list: 127.0.0.1"), {});
    expect(p?.text).toMatch(/does not name the host in the endpoint \(Hostname\/IP does not match .*127\.0\.0\.1\); use an endpoint host/);
    expect(tlsProblem(grpc("Error: certificate has expired"), {})?.text).toContain("renew etcd's --cert-file or check this machine's clock");
  });

  it("only hints (stays transient) when the handshake is cut off, and ignores non-TLS failures", () => {
    const cut = tlsProblem(grpc("Error: Client network socket disconnected before secure TLS connection was established"), { caFile: "/ca.pem" });
    expect(cut?.permanent).toBe(false);
    expect(cut?.text).toContain("check that etcd serves TLS on this endpoint");
    expect(tlsProblem(grpc("Failed to connect"), {})).toBeUndefined();
    expect(tlsProblem("4 DEADLINE_EXCEEDED: Deadline exceeded", {})).toBeUndefined();
  });
});
