import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "./sha256.js";
import { hostVethName } from "./direct/plan.js";

const reference = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");

describe("sha256Hex", () => {
  it("matches the FIPS 180-4 examples", () => {
    expect(sha256Hex("")).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(sha256Hex("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")).toBe("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  });

  it("matches node:crypto at every length around the padding boundaries, and for multi-byte UTF-8", () => {
    for (let n = 0; n <= 200; n++) {
      const s = randomBytes(n).toString("base64").slice(0, n);
      expect(sha256Hex(s), `length ${n}`).toBe(reference(s));
    }
    for (const s of ["cbr0\0ctr-é\0eth0", "网络\0🙂\0eth0", "x".repeat(10_000)]) expect(sha256Hex(s)).toBe(reference(s));
  });

  it("keeps host veth names as they were with node:crypto (a DEL after an upgrade finds an older pod's veth)", () => {
    const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    expect(hostVethName("cbr0", id, "eth0")).toBe(`veth${reference(`cbr0\0${id}\0eth0`).slice(0, 8)}`);
  });
});
