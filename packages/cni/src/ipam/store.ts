/**
 * host-local's on-disk store, byte for byte (checked against /usr/lib/cni/host-local 1.1.1):
 *
 *   <dataDir>/<network name>/
 *     198.19.1.2              one file per reserved address (IPv6 in RFC 5952 form, e.g. 2001:2:0:1::2),
 *                             mode 0644, content "<container id>\r\n<ifname>"
 *     last_reserved_ip.<n>    the last address handed out from range set n (no newline)
 *     lock                    host-local's flock target (empty; created so the layout matches)
 *     weft.lock               weft-cni's O_EXCL mutex while an operation runs (see lock.ts)
 *
 * Reservation files written by older host-local versions hold only the container id; they are matched on the id.
 *
 * The file calls are synchronous, behind async methods: the plugin is a one-shot process with nothing else to
 * do meanwhile, and each fs/promises call is a thread-pool round trip (the first one starts the pool), which
 * made the IPAM step of an ADD several times slower (docs/adr/0006-cni-latency.md). The methods stay async so
 * the lock can wait for a holder without blocking, and so a future store may do real I/O.
 */
import { closeSync, constants, mkdirSync, openSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { IPAddress, isWeftError } from "@weft/core";
import { ensureDirectory } from "@weft/kernel";
import { CniError, CniErrorCode, showText } from "../errors.js";
import { FileLock, type LockOptions } from "./lock.js";

/** host-local's separator between container id and ifname. */
export const LINE_BREAK = "\r\n";
export const DEFAULT_IPAM_DATA_DIR = "/var/lib/cni/networks";
const LAST_RESERVED_PREFIX = "last_reserved_ip.";

export interface Reservation {
  readonly ip: IPAddress;
  readonly containerID: string;
  /** Absent for reservations written before host-local recorded the interface. */
  readonly ifname?: string;
}

export function parseReservation(content: string): { containerID: string; ifname?: string } {
  const [id = "", ifname] = content.trim().split(/\r?\n/);
  return ifname === undefined || ifname.trim() === "" ? { containerID: id.trim() } : { containerID: id.trim(), ifname: ifname.trim() };
}

export function matches(r: { containerID: string; ifname?: string }, containerID: string, ifname: string): boolean {
  return r.containerID === containerID.trim() && (r.ifname === undefined || r.ifname === ifname);
}

/**
 * Creates `dir` and its missing parents (0755 or `mode`) without Node's recursive mkdir (which spins forever under
 * /proc on Node 20), after refusing a path with a non-directory component or on a pseudo filesystem. A refusal
 * is code 7 (invalid network config) with one line naming `field` (the config key), the value and the fix.
 */
export function ensureDataDir(dir: string, field: string, mode = 0o755): void {
  try {
    ensureDirectory(dir, field, mode);
  } catch (err) {
    if (isWeftError(err)) throw new CniError(CniErrorCode.INVALID_NETWORK_CONFIG, `invalid network config: ${err.message}`, undefined, { cause: err });
    throw err;
  }
}

/**
 * Whether an existing data directory is there to read from (false when it does not exist: nothing was saved).
 * A path that exists and is not a directory, or has a non-directory component, is code 7 naming `field`.
 */
export function dataDirExists(dir: string, field: string): boolean {
  try {
    if (statSync(dir).isDirectory()) return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return false;
    if (code !== "ENOTDIR") throw err;
    throw new CniError(CniErrorCode.INVALID_NETWORK_CONFIG, `invalid network config: ${field}: "${showText(dir)}" cannot be used: a component of it is not a directory; choose a directory path`);
  }
  throw new CniError(CniErrorCode.INVALID_NETWORK_CONFIG, `invalid network config: ${field}: "${showText(dir)}" exists and is not a directory; remove it or choose a directory path`);
}

export class HostLocalStore {
  readonly dir: string;
  private readonly mutex: FileLock;

  constructor(
    readonly dataDir: string,
    network: string,
  ) {
    this.dir = join(dataDir, network);
    this.mutex = new FileLock(join(this.dir, "weft.lock"));
  }

  /** Creates the directory (0755) and host-local's `lock` file, then runs `fn` under the mutex. */
  async locked<T>(fn: () => Promise<T>, opts?: LockOptions): Promise<T> {
    // The data dir is checked and created a component at a time; the network's directory is one plain mkdir.
    ensureDataDir(this.dataDir, "ipam.dataDir");
    try {
      mkdirSync(this.dir, { mode: 0o755 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      if (!statSync(this.dir).isDirectory()) {
        throw new CniError(
          CniErrorCode.INVALID_NETWORK_CONFIG,
          `invalid network config: ${this.dir} (ipam.dataDir and the network name) exists and is not a directory; remove it or choose another ipam.dataDir`,
        );
      }
    }
    closeSync(openSync(join(this.dir, "lock"), constants.O_RDONLY | constants.O_CREAT, 0o644));
    return this.mutex.with(fn, opts);
  }

  private ipPath(ip: IPAddress): string {
    return join(this.dir, ip.toString());
  }

  /** Creates the reservation file exclusively. False when the address is already reserved. */
  async reserve(ip: IPAddress, containerID: string, ifname: string, rangeIndex: number): Promise<boolean> {
    let fd: number;
    try {
      fd = openSync(this.ipPath(ip), constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw err;
    }
    try {
      writeFileSync(fd, `${containerID.trim()}${LINE_BREAK}${ifname}`);
    } catch (err) {
      closeSync(fd);
      try {
        unlinkSync(this.ipPath(ip));
      } catch {
        // best effort: the write failed, the reservation must not stay half-written
      }
      throw err;
    }
    closeSync(fd);
    writeFileSync(join(this.dir, `${LAST_RESERVED_PREFIX}${rangeIndex}`), ip.toString(), { mode: 0o644 });
    return true;
  }

  async lastReserved(rangeIndex: number): Promise<IPAddress | undefined> {
    try {
      return IPAddress.tryParse(readFileSync(join(this.dir, `${LAST_RESERVED_PREFIX}${rangeIndex}`), "utf8").trim());
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  /** Every reservation in the directory (files whose name is an IP address). */
  async list(): Promise<Reservation[]> {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const out: Reservation[] = [];
    for (const name of names) {
      const ip = IPAddress.tryParse(name);
      if (!ip || ip.toString() !== name) continue; // lock, weft.lock, last_reserved_ip.N, strays
      let content: string;
      try {
        content = readFileSync(join(this.dir, name), "utf8");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "EISDIR") continue;
        throw err;
      }
      out.push({ ip, ...parseReservation(content) });
    }
    return out;
  }

  async byContainer(containerID: string, ifname: string): Promise<Reservation[]> {
    return (await this.list()).filter((r) => matches(r, containerID, ifname));
  }

  /** Removes one reservation file; true when it existed. */
  async remove(ip: IPAddress): Promise<boolean> {
    try {
      unlinkSync(this.ipPath(ip));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw err;
    }
  }
}
