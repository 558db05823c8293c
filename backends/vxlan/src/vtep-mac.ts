/**
 * The VTEP MAC of a vxlan device must survive restarts: every peer holds a permanent neighbour and FDB entry
 * naming it, so a new MAC would blackhole traffic from every peer until each one has seen the new lease
 * (Flannel issues #1795, #533). Weft keeps it in `<STATE_DIR>/vxlan-<VNI>[-v6].mac` (mode 0600), written
 * once, atomically.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Family, type Logger, WeftError, errorMessage, normalizeMac } from "@weft/core";
import { isUnicastMac } from "./config.js";

/** A random locally administered unicast MAC: bit 0 of the first byte clear (unicast), bit 1 set (local). */
export function randomLocalMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
}

export function vtepMacFile(stateDir: string, vni: number, family: Family): string {
  return join(stateDir, `vxlan-${vni}${family === "v6" ? "-v6" : ""}.mac`);
}

/**
 * The MAC stored for this device; else `fallback` (e.g. the VtepMAC of this node's previous lease, which
 * peers already know) or a new random one, which is then stored.
 */
export function loadOrCreateVtepMac(stateDir: string, vni: number, family: Family, logger: Logger, fallback?: string): string {
  const file = vtepMacFile(stateDir, vni, family);
  let text: string | undefined;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new WeftError("CONFIG_INVALID", `cannot read the VTEP MAC file ${file}: ${errorMessage(err)}: fix its permissions or the --state-dir flag`, { cause: err });
    }
  }
  if (text !== undefined) {
    const mac = normalizeMac(text.trim());
    if (mac && isUnicastMac(mac)) return mac;
    logger.warn(`VTEP MAC file ${file} holds ${JSON.stringify(text.trim())}, not a unicast MAC; writing a new one (peers relearn it from the lease)`);
  }
  const mac = fallback && isUnicastMac(fallback) ? fallback : randomLocalMac();
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    writeFileSync(tmp, `${mac}\n`, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  } catch (err) {
    // Never leave a half-written file behind (a full disk fails the write after the open created it).
    rmSync(tmp, { force: true });
    throw new WeftError("CONFIG_INVALID", `cannot write the VTEP MAC file ${file}: ${errorMessage(err)}: fix the --state-dir flag or its permissions`, { cause: err });
  }
  return mac;
}
