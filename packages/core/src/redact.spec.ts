import { afterEach, describe, expect, it } from "vitest";
import { REDACTED, clearRegisteredSecrets, redactCredentials, redactFields, registerSecret } from "./redact.js";

afterEach(() => clearRegisteredSecrets());

describe("redactCredentials", () => {
  it("removes user:pass@ from URLs and bare host:port targets in third-party error text", () => {
    // What grpc-js said for --etcd-endpoints=http://user:secret@127.0.0.1:2379 (the client got "user:secret@...").
    const grpc = "14 UNAVAILABLE: Name resolution failed for target dns:user:secret@127.0.0.1:2379 (2026-12-03T19:00:00.000Z)";
    expect(redactCredentials(grpc)).toBe("14 UNAVAILABLE: Name resolution failed for target 127.0.0.1:2379 (2026-12-03T19:00:00.000Z)");
    expect(redactCredentials("dial http://weft:s3cret@etcd.example:2379 failed")).toBe("dial http://etcd.example:2379 failed");
    expect(redactCredentials('{"url":"https://a:b@h:1"}')).toBe('{"url":"https://h:1"}');
  });

  it("leaves nothing of a password containing @, / or :", () => {
    for (const pw of ["p@ss", "pa/ss", "a:b@c/d@e", "x@@y"]) {
      const out = redactCredentials(`last error: http://weft:${pw}@198.18.0.5:2379 refused; also weft:${pw}@198.18.0.6:2379`);
      expect(out).toBe("last error: http://198.18.0.5:2379 refused; also 198.18.0.6:2379");
    }
  });

  it("keeps text that only looks a little like credentials", () => {
    expect(redactCredentials("vxlan device weft.1@eth0 ready")).toBe("vxlan device weft.1@eth0 ready");
    expect(redactCredentials("mail root@example.com at 12:30")).toBe("mail root@example.com at 12:30");
  });

  it("replaces registered secrets verbatim, wherever they appear", () => {
    registerSecret("correct horse battery");
    registerSecret("ab"); // too short to match verbatim: it would blank ordinary words
    expect(redactCredentials("auth failed with password correct horse battery (user weft)")).toBe(`auth failed with password ${REDACTED} (user weft)`);
    expect(redactCredentials("about a bus")).toBe("about a bus");
    expect(redactCredentials("pw=hunter22", ["hunter22"])).toBe(`pw=${REDACTED}`);
  });

  it("redacts nested log fields and Error values, leaving other values alone", () => {
    registerSecret("s3cret-pw");
    const out = redactFields({ n: 1, err: new Error("x http://u:p@h:1"), list: ["s3cret-pw", { deep: "u:p@h:2" }], ok: true });
    expect(out).toEqual({ n: 1, err: "x http://h:1", list: [REDACTED, { deep: "h:2" }], ok: true });
  });
});
