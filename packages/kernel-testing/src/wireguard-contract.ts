/**
 * The WireGuardPort contract: one suite, run against FakeWireGuard on FakeManagedDaemons (unit tier) and
 * against LinuxWireGuard with real wireguard-go and wg in a fresh network namespace (netns tier). The device's
 * wireguard-go runs through the ManagedDaemonPort, as in the agent. Assertions are on what `show` and the
 * kernel report afterwards.
 */
import { generateKeyPairSync, createPrivateKey, createPublicKey } from "node:crypto";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { KernelPort, ManagedDaemonPort, WireGuardPort } from "@weft/kernel";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

export interface WireGuardFixture {
  readonly wireguard: WireGuardPort;
  readonly daemons: ManagedDaemonPort;
  /** The network namespace wireguard-go runs in (where its TUN appears). */
  readonly kernel: KernelPort;
  /** A fresh directory (0700) for the run directory and key files. */
  readonly dir: string;
  /** A device name unique to this test (<= 15 characters). */
  readonly device: string;
  /** Stops what the test left (by PID) and removes what it made. */
  cleanup(): Promise<void>;
}

const X25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");

/** A fresh key pair in wg's base64 form. */
function keyPair(): { privateKey: string; publicKey: string } {
  const { privateKey } = generateKeyPairSync("x25519");
  const priv = Buffer.from(privateKey.export({ format: "jwk" }).d!, "base64url");
  const der = Buffer.concat([X25519_PKCS8_PREFIX, priv]);
  const pub = createPublicKey(createPrivateKey({ key: der, format: "der", type: "pkcs8" })).export({ format: "jwk" }).x!;
  return { privateKey: priv.toString("base64"), publicKey: Buffer.from(pub, "base64url").toString("base64") };
}

function secretFile(path: string, content: string): string {
  writeFileSync(path, `${content}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}

export function describeWireGuardContract(name: string, factory: () => Promise<WireGuardFixture>): void {
  describe(`WireGuardPort contract: ${name}`, () => {
    let fx: WireGuardFixture;
    beforeEach(async () => {
      fx = await factory();
    });
    afterEach(async () => {
      await fx.cleanup();
    });

    const start = async () => {
      const spec = fx.wireguard.daemonSpec(fx.device, join(fx.dir, "run"));
      const st = await fx.daemons.ensure(spec);
      return { spec, st };
    };

    it("wireguard-go started through the daemon port makes the TUN; configure sets key and port; stop removes both", async () => {
      const { spec, st } = await start();
      expect(st.running).toBe(true);
      expect((await fx.kernel.listLinks()).find((l) => l.name === fx.device)?.kind).toBe("tun");
      const keys = keyPair();
      await fx.wireguard.configure(fx.device, { privateKeyFile: secretFile(join(fx.dir, "priv.key"), keys.privateKey), listenPort: 51999 });
      expect(await fx.wireguard.show(fx.device)).toEqual({ publicKey: keys.publicKey, listenPort: 51999, peers: [] });
      await fx.daemons.stop(spec);
      expect(await fx.wireguard.show(fx.device)).toBeUndefined();
      for (let i = 0; i < 50 && (await fx.kernel.listLinks()).some((l) => l.name === fx.device); i++) await new Promise((r) => setTimeout(r, 20));
      expect((await fx.kernel.listLinks()).some((l) => l.name === fx.device)).toBe(false);
    });

    it("sets, changes and removes peers in one call each; allowed IPs move between peers; PSKs come from files", async () => {
      const { spec } = await start();
      const a = keyPair().publicKey;
      const b = keyPair().publicKey;
      const psk = keyPair().privateKey;
      const pskFile = secretFile(join(fx.dir, "psk.key"), psk);
      await fx.wireguard.setPeers(fx.device, [
        { op: "set", peer: { publicKey: a, endpoint: "198.18.0.2:51820", allowedIPs: ["198.19.2.0/24", "2001:2:0:102::/64"], persistentKeepalive: 25, presharedKeyFile: pskFile } },
        { op: "set", peer: { publicKey: b, endpoint: "[2001:2::3]:51821", allowedIPs: ["198.19.3.0/24"], persistentKeepalive: 0 } },
      ]);
      const byKey = async () => new Map((await fx.wireguard.show(fx.device))!.peers.map((p) => [p.publicKey, p]));
      let peers = await byKey();
      expect(peers.get(a)).toMatchObject({ endpoint: "198.18.0.2:51820", allowedIPs: ["198.19.2.0/24", "2001:2:0:102::/64"], persistentKeepalive: 25, presharedKey: psk });
      expect(peers.get(b)).toMatchObject({ endpoint: "[2001:2::3]:51821", allowedIPs: ["198.19.3.0/24"], persistentKeepalive: 0 });
      expect(peers.get(b)!.presharedKey).toBeUndefined();
      // b takes 198.19.2.0/24 from a; a's PSK is cleared; then b goes.
      await fx.wireguard.setPeers(fx.device, [
        { op: "set", peer: { publicKey: b, allowedIPs: ["198.19.2.0/24", "198.19.3.0/24"], persistentKeepalive: 0 } },
        { op: "set", peer: { publicKey: a, endpoint: "198.18.0.2:51820", allowedIPs: ["2001:2:0:102::/64"], persistentKeepalive: 25 } },
      ]);
      peers = await byKey();
      expect(peers.get(a)!.allowedIPs).toEqual(["2001:2:0:102::/64"]);
      expect(peers.get(a)!.presharedKey).toBeUndefined();
      expect(peers.get(b)).toMatchObject({ endpoint: "[2001:2::3]:51821", allowedIPs: ["198.19.2.0/24", "198.19.3.0/24"] });
      await fx.wireguard.setPeers(fx.device, [{ op: "remove", publicKey: b }]);
      expect([...(await byKey()).keys()]).toEqual([a]);
      await fx.daemons.stop(spec);
    });

    it("a device no wireguard-go serves: show is undefined, writes fail with KERNEL_NOT_FOUND", async () => {
      const missing = `${fx.device.slice(0, 12)}nx`;
      expect(await fx.wireguard.show(missing)).toBeUndefined();
      const key = secretFile(join(fx.dir, "priv.key"), keyPair().privateKey);
      await expect(fx.wireguard.configure(missing, { privateKeyFile: key, listenPort: 51999 })).rejects.toMatchObject({ code: "KERNEL_NOT_FOUND" });
      await expect(fx.wireguard.setPeers(missing, [{ op: "remove", publicKey: keyPair().publicKey }])).rejects.toMatchObject({ code: "KERNEL_NOT_FOUND" });
    });
  });
}
