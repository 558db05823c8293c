/**
 * The node's WireGuard key pair and the pre-shared key file.
 *
 * The private key is generated in Node (X25519 is WireGuard's curve; the raw 32 bytes in base64 are `wg genkey`'s
 * format) and kept in <STATE_DIR>/wg-private.key, mode 0600 in a 0700 directory, so a restarted agent publishes
 * the same public key and peers' entries stay valid. `wg` reads keys from files, never from argv (argv is
 * world-readable in /proc), so the PSK goes to <STATE_DIR>/wg-psk.key the same way. Neither is ever logged.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Logger, WeftError } from "@weft/core";
import { isWireguardKey } from "./config.js";

export const PRIVATE_KEY_FILE = "wg-private.key";
export const PSK_FILE = "wg-psk.key";

/** PKCS#8 DER prefix of an X25519 private key; the raw 32 bytes follow. */
const X25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");

/** A fresh private key in wg format (base64 of the raw 32 bytes). */
export function generatePrivateKey(): string {
  const { privateKey } = generateKeyPairSync("x25519");
  const jwk = privateKey.export({ format: "jwk" });
  return Buffer.from(jwk.d!, "base64url").toString("base64");
}

/** The public key of a wg-format private key (what `wg pubkey` prints). */
export function publicKeyOf(privateKeyB64: string): string {
  const der = Buffer.concat([X25519_PKCS8_PREFIX, Buffer.from(privateKeyB64, "base64")]);
  const jwk = createPublicKey(createPrivateKey({ key: der, format: "der", type: "pkcs8" })).export({ format: "jwk" });
  return Buffer.from(jwk.x!, "base64url").toString("base64");
}

/** A short digest of a secret, to compare a configured key with what a device holds without keeping both around. */
export function keyDigest(key: string): string {
  return createHash("sha256").update(key.trim()).digest("hex").slice(0, 16);
}

function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/** Writes a secret file atomically with mode 0600. */
function writeSecret(path: string, content: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    // A new file ("wx"), so the 0600 mode applies from the first byte; a failed write (a full disk) leaves no
    // temp file holding part of a key, and the previous file stays whole.
    rmSync(tmp, { force: true });
    writeFileSync(tmp, content, { mode: 0o600, flag: "wx" });
    chmodSync(tmp, 0o600);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Loads the node's key pair from `stateDir`, creating it the first time. */
export function loadOrCreateKeyPair(stateDir: string, logger: Logger): { privateKeyFile: string; publicKey: string } {
  ensurePrivateDir(stateDir);
  const file = join(stateDir, PRIVATE_KEY_FILE);
  if (existsSync(file)) {
    const key = readFileSync(file, "utf8").trim();
    if (isWireguardKey(key)) {
      chmodSync(file, 0o600);
      return { privateKeyFile: file, publicKey: publicKeyOf(key) };
    }
    logger.warn("wireguard: the private key file is not a WireGuard key; generating a new one (peers pick up the new public key from the lease)", { file });
  }
  const key = generatePrivateKey();
  writeSecret(file, `${key}\n`);
  const publicKey = publicKeyOf(key);
  logger.info("wireguard: generated a new key pair", { file, publicKey });
  return { privateKeyFile: file, publicKey };
}

/** Writes the PSK file for `wg` (mode 0600) and returns its path. */
export function writePskFile(stateDir: string, psk: string): string {
  if (!isWireguardKey(psk)) throw new WeftError("BACKEND_CONFIG_INVALID", "Backend.PSK is not a WireGuard pre-shared key (value not shown): use the output of `wg genpsk`");
  ensurePrivateDir(stateDir);
  const file = join(stateDir, PSK_FILE);
  writeSecret(file, `${psk}\n`);
  return file;
}
