/** VICI message encoding (unit) and how a dead socket is classified. The exchange itself runs on real charon in kernel-testing's ipsec.netns.spec.ts. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { KernelError } from "../port.js";
import { ViciIpsec, connectionMessage } from "./vici-ipsec.js";
import { decodeViciMessage, encodeViciMessage } from "./vici.js";

describe("VICI messages", () => {
  it("round-trips sections, lists and values, in order", () => {
    const msg = { a: "1", list: ["x", "y"], sec: { inner: "v", deeper: { k: "" } }, empty: [] };
    expect(decodeViciMessage(encodeViciMessage(msg))).toEqual(msg);
  });

  it("encodes as strongSwan's README lays it out: key/value = 3, len8 key, len16 value", () => {
    expect([...encodeViciMessage({ ab: "xyz" })]).toEqual([3, 2, 0x61, 0x62, 0, 3, 0x78, 0x79, 0x7a]);
    expect([...encodeViciMessage({ s: { l: ["q"] } })]).toEqual([1, 1, 0x73, 4, 1, 0x6c, 5, 0, 1, 0x71, 6, 2]);
  });

  it("refuses a truncated message", () => {
    expect(() => decodeViciMessage(Buffer.from([3, 2, 0x61]))).toThrow(/truncated/);
  });

  it("a connection: the initiator starts (never trap: it never fires under libipsec), the responder only answers", () => {
    const base = { name: "weft-x", localAddr: "198.18.0.1", remoteAddr: "198.18.0.2", localTs: ["198.19.1.0/24"], remoteTs: ["198.19.2.0/24"], espProposal: "aes128gcm16", encap: true };
    const child = (m: ReturnType<typeof connectionMessage>) => ((m["weft-x"] as Record<string, Record<string, Record<string, unknown>>>).children!["weft-x"]!);
    expect(child(connectionMessage({ ...base, initiator: true }))).toMatchObject({ start_action: "start", close_action: "start", dpd_action: "restart", mode: "tunnel", esp_proposals: ["aes128gcm16"] });
    expect(child(connectionMessage({ ...base, initiator: false }))).toMatchObject({ start_action: "none", close_action: "none" });
    expect(connectionMessage(base)["weft-x"]).toMatchObject({ encap: "yes", unique: "replace", keyingtries: "0", local: { auth: "psk", id: "198.18.0.1" } });
  });
});

describe("ViciIpsec without a charon", () => {
  it("a missing or stale socket is KERNEL_TRANSIENT naming the socket", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-vici-"));
    try {
      writeFileSync(join(dir, "stale.vici"), "");
      const port = new ViciIpsec({ run: async () => ({ exitCode: 0, stdout: "", stderr: "" }), spawn: () => { throw new Error("no"); } });
      for (const socket of [join(dir, "none.vici"), join(dir, "stale.vici")]) {
        const err = await port.listConnections(socket).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(KernelError);
        expect((err as KernelError).code).toBe("KERNEL_TRANSIENT");
        expect((err as KernelError).message).toContain(`charon is not answering on ${socket}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
