import { clearRegisteredSecrets, registerSecret } from "@weft/core";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "./log.js";

/** A pino destination that keeps the lines. */
function capture(): { lines: string[]; stream: { write(s: string): void } } {
  const lines: string[] = [];
  return { lines, stream: { write: (s: string) => void lines.push(s) } };
}

afterEach(() => clearRegisteredSecrets());

describe("weftd's logger", () => {
  it("never writes credentials, from a message, a field, a child binding or an Error, whatever logged them", () => {
    registerSecret("Pass-Word-42");
    const { lines, stream } = capture();
    const log = createLogger("debug", {}, "weftd", stream).child({ component: "subnet-etcd", store: "etcd http://weft:Pass-Word-42@198.18.0.5:2379" });
    // A third-party error text, as grpc-js produced it for an endpoint with credentials in its URL.
    log.warn("watch on /weft.io/network/subnets/ disconnected: 14 UNAVAILABLE: Name resolution failed for target dns:weft:Pass-Word-42@198.18.0.5:2379");
    log.info("retrying", { endpoints: ["user:hunter2@198.18.0.6:2379"], cause: new Error("auth with password Pass-Word-42 failed"), attempt: 3 });
    log.debug("bare https://a:b@c@198.18.0.7:2379/");
    log.error("plain line, nothing to hide", { iface: "weft.1@eth0" });
    const text = lines.join("");
    expect(lines).toHaveLength(4);
    for (const secret of ["Pass-Word-42", "hunter2", "a:b@c", "weft:"]) expect(text).not.toContain(secret);
    const [warn, info, debug, error] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(warn!.msg).toBe("watch on /weft.io/network/subnets/ disconnected: 14 UNAVAILABLE: Name resolution failed for target 198.18.0.5:2379");
    expect(warn!.store).toBe("etcd http://198.18.0.5:2379");
    expect(info).toMatchObject({ msg: "retrying", endpoints: ["198.18.0.6:2379"], cause: "auth with password (hidden) failed", attempt: 3 });
    expect(debug!.msg).toBe("bare https://198.18.0.7:2379/");
    expect(error).toMatchObject({ msg: "plain line, nothing to hide", iface: "weft.1@eth0" });
  });
});
