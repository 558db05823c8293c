/**
 * The IpsecPort contract: one suite, run on FakeIpsec (unit) and on ViciIpsec against a real charon in a fresh
 * network namespace (netns tier). It imports vitest, so it is not part of the package index.
 */
import { isWeftError } from "@weft/core";
import type { IpsecConnection, IpsecPort } from "@weft/kernel";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

export interface IpsecPortFixture {
  readonly port: IpsecPort;
  /** The VICI socket of a running charon with nothing loaded. */
  readonly socket: string;
  /** A socket path no charon serves (a stale file left by a dead charon, or none). */
  readonly deadSocket: string;
  cleanup(): Promise<void>;
}

/** A connection to a peer that does not exist (nothing carries packets; 198.18.0.0/15 only). */
export const CONTRACT_CONN: IpsecConnection = {
  name: "weft-contract",
  localAddr: "198.18.77.1",
  remoteAddr: "198.18.77.2",
  localTs: ["198.19.77.0/24"],
  remoteTs: ["198.19.78.0/24"],
  ikeProposal: "aes256-sha256-modp4096",
  espProposal: "aes128gcm16-sha256-prfsha256-ecp256",
  encap: true,
  initiator: false,
};

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  return isWeftError(err) ? err.code : `no WeftError (${String(err)})`;
}

async function messageOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  return err instanceof Error ? err.message : String(err);
}

export function describeIpsecPortContract(name: string, factory: () => Promise<IpsecPortFixture>): void {
  describe(`IpsecPort contract: ${name}`, () => {
    let fx: IpsecPortFixture;
    beforeEach(async () => {
      fx = await factory();
    });
    afterEach(async () => {
      await fx?.cleanup();
    });

    it("answers with its version while it runs; a dead socket is KERNEL_TRANSIENT", async () => {
      expect(await fx.port.version(fx.socket)).toMatch(/charon/);
      expect(await codeOf(fx.port.version(fx.deadSocket))).toBe("KERNEL_TRANSIENT");
      expect(await codeOf(fx.port.listConnections(fx.deadSocket))).toBe("KERNEL_TRANSIENT");
    });

    it("loads a connection, lists it with its addresses and selectors, replaces it by name, unloads it", async () => {
      await fx.port.loadConnection(fx.socket, CONTRACT_CONN);
      expect(await fx.port.listConnections(fx.socket)).toEqual([
        { name: "weft-contract", localAddr: "198.18.77.1", remoteAddr: "198.18.77.2", localTs: ["198.19.77.0/24"], remoteTs: ["198.19.78.0/24"] },
      ]);
      await fx.port.loadConnection(fx.socket, { ...CONTRACT_CONN, remoteTs: ["198.19.79.0/24"] });
      const again = await fx.port.listConnections(fx.socket);
      expect(again.map((c) => [c.name, c.remoteTs])).toEqual([["weft-contract", ["198.19.79.0/24"]]]);
      await fx.port.unloadConnection(fx.socket, "weft-contract");
      expect(await fx.port.listConnections(fx.socket)).toEqual([]);
    });

    it("takes a fixed reqid for the CHILD_SA (Weft's XFRM ownership mark) without refusing the connection", async () => {
      await fx.port.loadConnection(fx.socket, { ...CONTRACT_CONN, reqid: 0x57c64d02 });
      expect((await fx.port.listConnections(fx.socket)).map((c) => c.name)).toEqual(["weft-contract"]);
    });

    it("unloading a connection charon does not have is KERNEL_NOT_FOUND", async () => {
      expect(await codeOf(fx.port.unloadConnection(fx.socket, "weft-none"))).toBe("KERNEL_NOT_FOUND");
    });

    it("an unknown ESP proposal is refused (KERNEL_INVALID with charon's reason) and nothing is loaded", async () => {
      const bad = fx.port.loadConnection(fx.socket, { ...CONTRACT_CONN, espProposal: "aes999-nonsense" });
      expect(await codeOf(bad)).toBe("KERNEL_INVALID");
      expect(await messageOf(fx.port.loadConnection(fx.socket, { ...CONTRACT_CONN, espProposal: "aes999-nonsense" }))).toMatch(/esp_proposals|proposal/i);
      expect(await fx.port.listConnections(fx.socket)).toEqual([]);
    });

    it("loads, lists and unloads shared keys by id, never returning the secret", async () => {
      const secret = "s".repeat(100);
      await fx.port.loadSharedKey(fx.socket, "weft-psk-1", secret);
      await fx.port.loadSharedKey(fx.socket, "weft-psk-1", secret);
      expect(await fx.port.listSharedKeys(fx.socket)).toEqual(["weft-psk-1"]);
      expect(JSON.stringify(await fx.port.listConnections(fx.socket))).not.toContain(secret);
      await fx.port.unloadSharedKey(fx.socket, "weft-psk-1");
      expect(await fx.port.listSharedKeys(fx.socket)).toEqual([]);
      expect(await codeOf(fx.port.unloadSharedKey(fx.socket, "weft-psk-1"))).toBe("KERNEL_NOT_FOUND");
    });

    it("an initiated connection has an IKE_SA; unloading the connection ends it", async () => {
      await fx.port.loadSharedKey(fx.socket, "weft-psk-1", "s".repeat(100));
      await fx.port.loadConnection(fx.socket, CONTRACT_CONN);
      await fx.port.initiate(fx.socket, CONTRACT_CONN.name);
      const sas = await fx.port.listSas(fx.socket);
      expect(sas.map((s) => s.connection)).toEqual(["weft-contract"]);
      expect(["CONNECTING", "ESTABLISHED"]).toContain(sas[0]!.state);
      expect(sas[0]!.remoteAddr).toBe("198.18.77.2");
      await fx.port.unloadConnection(fx.socket, CONTRACT_CONN.name);
      expect(await fx.port.listSas(fx.socket)).toEqual([]);
    });

    it("initiating a connection that is not loaded is refused", async () => {
      expect(await codeOf(fx.port.initiate(fx.socket, "weft-none"))).toBe("KERNEL_INVALID");
    });
  });
}
