import { ConfigError } from "@weft/core";
import { describe, expect, it } from "vitest";
import { EtcdStore, redactEndpoint } from "./etcd-store.js";

const base = { requestTimeoutMs: 1000, dialTimeoutMs: 1000, watchBackoffMinMs: 100, watchBackoffMaxMs: 5000 };

describe("EtcdStore options", () => {
  it("drops credentials from endpoints shown in logs", () => {
    expect(redactEndpoint("https://weft:s3cret@etcd.example:2379")).toBe("https://etcd.example:2379");
    expect(redactEndpoint("http://127.0.0.1:2379")).toBe("http://127.0.0.1:2379");
    const s = new EtcdStore({ ...base, endpoints: ["http://u:pw@127.0.0.1:1"] });
    expect(s.label).toBe("etcd http://127.0.0.1:1");
    void s.close();
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
