/**
 * A cross-process mutex for the IPAM directory, without flock (Node has none): an O_CREAT|O_EXCL lock file that
 * holds "<pid> <process start time> <random token>". Decision record: docs/adr/0005-cni-ipam-lock.md.
 *
 * - Acquire: create the file exclusively; on EEXIST, poll with a capped, jittered backoff until `timeoutMs`.
 * - Stale: the owner PID does not exist, or exists with another start time (PID reused), or the file has no
 *   owner line and is older than EMPTY_GRACE_MS (a process died between create and write).
 * - Breaking a stale lock renames it to a unique name first and then checks that what it moved is the stale
 *   owner's file; if a live owner raced in, the file is linked back.
 * - Release unlinks the file only while it still carries our token.
 *
 * Correctness of allocation never rests on this lock alone: every reservation file is itself created with
 * O_EXCL (as host-local does), so two allocators, or weft-cni and host-local sharing a directory under different
 * lock schemes, can never hand out one address twice. The lock keeps last_reserved_ip and the per-container scan
 * consistent.
 *
 * File calls are synchronous (see store.ts for why); only the wait for another holder is asynchronous.
 */
import { closeSync, linkSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { CniError, CniErrorCode } from "../errors.js";

/** A lock file with no owner line younger than this belongs to a process that is still writing it. */
export const EMPTY_GRACE_MS = 10_000;

let ownStart: string | undefined;

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or "" when unreadable. */
function startTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[19] ?? "";
  } catch {
    return "";
  }
}

function ownerAlive(pid: number, start: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    // EPERM: exists, owned by someone else
  }
  const now = startTime(pid);
  // Without /proc (or a start time recorded) fall back to the PID check alone.
  return now === "" || start === "" || now === start;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * A value no other holder of the lock has: it only has to tell our own lock file from another's (the line also
 * carries PID and start time), so it needs no cryptographic randomness, and node:crypto is not loaded for it
 * (~2 ms per plugin start).
 */
function uniqueToken(): string {
  return `${process.hrtime.bigint().toString(36)}${Math.floor(Math.random() * 2 ** 48).toString(36)}`;
}

export interface LockOptions {
  /** Give up after this long (code 11, try again later). Default 30 s. */
  readonly timeoutMs?: number;
}

export class FileLock {
  private token: string | undefined;

  constructor(readonly path: string) {}

  /** Runs `fn` while holding the lock. */
  async with<T>(fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
    await this.acquire(opts);
    try {
      return await fn();
    } finally {
      await this.release();
    }
  }

  async acquire(opts: LockOptions = {}): Promise<void> {
    if (this.token) throw new Error(`FileLock ${this.path}: already held by this handle`);
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const deadline = performance.now() + timeoutMs;
    ownStart ??= startTime(process.pid);
    const token = uniqueToken();
    const line = `${process.pid} ${ownStart} ${token}\n`;
    let delay = 1;
    for (;;) {
      try {
        const fd = openSync(this.path, "wx", 0o644);
        try {
          writeFileSync(fd, line);
        } finally {
          closeSync(fd);
        }
        this.token = token;
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      const holder = await this.inspect();
      if (holder.stale) {
        await this.breakStale(holder.content);
        continue;
      }
      if (performance.now() >= deadline) {
        throw new CniError(
          CniErrorCode.TRY_AGAIN_LATER,
          `IPAM lock ${this.path} is held by ${holder.pid ? `pid ${holder.pid}` : "another process"} for more than ` +
            `${Math.round(timeoutMs / 1000)} s; try again later (if no weft-cni process is running, delete the file)`,
        );
      }
      await sleep(delay + Math.random() * delay);
      delay = Math.min(delay * 2, 25);
    }
  }

  async release(): Promise<void> {
    const token = this.token;
    if (!token) return;
    this.token = undefined;
    try {
      const content = readFileSync(this.path, "utf8");
      if (content.includes(token)) unlinkSync(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }

  private async inspect(): Promise<{ stale: boolean; content: string; pid?: number }> {
    let content: string;
    let mtimeMs: number;
    try {
      content = readFileSync(this.path, "utf8");
      mtimeMs = statSync(this.path).mtimeMs;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { stale: false, content: "" }; // just released
      throw err;
    }
    const [pidText, start = ""] = content.trim().split(/\s+/);
    const pid = Number(pidText);
    if (!Number.isInteger(pid) || pid <= 0) return { stale: Date.now() - mtimeMs > EMPTY_GRACE_MS, content };
    return { stale: !ownerAlive(pid, start), content, pid };
  }

  private async breakStale(observed: string): Promise<void> {
    const aside = `${this.path}.stale.${process.pid}.${uniqueToken()}`;
    try {
      renameSync(this.path, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return; // someone else broke or released it
      throw err;
    }
    let moved = observed;
    try {
      moved = readFileSync(aside, "utf8");
    } catch {
      // gone already: treat it as what we saw
    }
    if (moved !== observed) {
      // A live owner took the lock between our read and the rename: give it back. If yet another process has
      // created a new lock meanwhile, link fails with EEXIST and both proceed; reservations stay unique (O_EXCL).
      try {
        linkSync(aside, this.path);
      } catch {
        // EEXIST: see above
      }
    }
    try {
      unlinkSync(aside);
    } catch {
      // already gone
    }
  }
}
