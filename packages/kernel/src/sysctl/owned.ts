/**
 * Owned sysctls: Weft sets a sysctl and remembers the value it found there before it first changed the key,
 * so that removing the setting (a retracted declaration, teardown) puts the node back as it was. The record
 * lives in the agent's state (a small JSON file in the state dir, 0600), so an agent restarted between the
 * change and the removal still restores the value the node had before Weft, not the value Weft set.
 *
 * Rules:
 *   - the original is recorded BEFORE the write (a crash between the two leaves a record whose restore is a
 *     no-op, never a change without a record);
 *   - a key already at the wanted value is not recorded (Weft did not change it, so it has nothing to restore);
 *   - a second `set` of a recorded key keeps the first original;
 *   - restoring a key that no longer exists (a per-device key whose device is gone) just drops the record.
 * Reads and writes go through the KernelPort, so the FakeKernel models every step.
 */
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SerialQueue } from "@weft/core";
import { KernelError, type KernelPort } from "../port.js";
import { InvalidValue, sysctlKey } from "../linux/validate.js";

/** Where the originals are kept: key (dotted form) → the value found before Weft first changed it. */
export interface SysctlRecords {
  load(): Promise<Record<string, string>>;
  save(records: Readonly<Record<string, string>>): Promise<void>;
}

/** The file the records live in, inside the agent's state dir. */
export const SYSCTL_RECORDS_FILE = "sysctls.json";

/**
 * Records in `<stateDir>/sysctls.json`, written 0600 through a temporary file and rename (never half-written).
 * A missing file is no records; an unreadable one is an error naming the file and the fix.
 */
export class FileSysctlRecords implements SysctlRecords {
  readonly path: string;
  constructor(readonly stateDir: string) {
    this.path = join(stateDir, SYSCTL_RECORDS_FILE);
  }

  async load(): Promise<Record<string, string>> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
      throw err;
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
    const records = (data as { originals?: unknown } | undefined)?.originals;
    if (!records || typeof records !== "object" || Object.values(records).some((x) => typeof x !== "string")) {
      throw new KernelError("KERNEL_FAILED", `${this.path}: not a sysctl record file ({"originals": {key: value}}); restore the keys it named by hand and delete it`);
    }
    return { ...(records as Record<string, string>) };
  }

  async save(records: Readonly<Record<string, string>>): Promise<void> {
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.${process.pid}.tmp`;
    try {
      await writeFile(tmp, `${JSON.stringify({ originals: records }, null, 2)}\n`, { mode: 0o600 });
      await chmod(tmp, 0o600);
      await rename(tmp, this.path);
    } catch (err) {
      // A full disk: no temp file left behind; the previous record stays whole.
      await rm(tmp, { force: true });
      throw err;
    }
  }
}

/** Records kept in memory only (tests; a state that must not outlive the process). */
export class MemorySysctlRecords implements SysctlRecords {
  private records: Record<string, string> = {};
  async load(): Promise<Record<string, string>> {
    return { ...this.records };
  }
  async save(records: Readonly<Record<string, string>>): Promise<void> {
    this.records = { ...records };
  }
}

/** A sysctl Weft changed and has not restored yet. */
export interface OwnedSysctl {
  /** Dotted key, e.g. `net.ipv4.conf.eth0.rp_filter`. */
  readonly key: string;
  /** The value before Weft first changed it. */
  readonly original: string;
}

/**
 * The canonical form of a key, or a KERNEL_INVALID error naming it: dotted (`net.ipv4.conf.eth0.rp_filter`),
 * or the slash form when a segment holds a dot (`net/ipv4/conf/weft.1/rp_filter`), so both spellings of one
 * key share one record.
 */
export function canonicalSysctlKey(key: string): string {
  try {
    const parts = sysctlKey(key);
    return parts.join(parts.some((p) => p.includes(".")) ? "/" : ".");
  } catch (err) {
    if (err instanceof InvalidValue) throw new KernelError("KERNEL_INVALID", `${err.message}; nothing was changed`);
    throw err;
  }
}

/** Sets sysctls on a KernelPort and restores what they were before. One per agent (per state dir). */
export class OwnedSysctls {
  private readonly queue = new SerialQueue();

  constructor(
    private readonly kernel: KernelPort,
    private readonly records: SysctlRecords,
  ) {}

  /** The current value of `key` (KERNEL_NOT_FOUND when the key does not exist). */
  async get(key: string): Promise<string> {
    return (await this.kernel.getSysctl(canonicalSysctlKey(key))).trim();
  }

  /**
   * Sets `key` to `value`. The first time Weft changes the key, the value found there is recorded first. A key
   * already at `value` is left alone (and not recorded).
   */
  set(key: string, value: string): Promise<void> {
    return this.queue.run(async () => {
      const k = canonicalSysctlKey(key);
      const current = (await this.kernel.getSysctl(k)).trim();
      if (current === value.trim()) return;
      const records = await this.records.load();
      if (records[k] === undefined) {
        records[k] = current;
        await this.records.save(records);
      }
      await this.kernel.setSysctl(k, value);
    });
  }

  /** Puts `key` back to the value recorded before Weft first changed it, and forgets the record. No record: nothing. */
  restore(key: string): Promise<void> {
    return this.queue.run(async () => {
      const k = canonicalSysctlKey(key);
      const records = await this.records.load();
      const original = records[k];
      if (original === undefined) return;
      try {
        const current = (await this.kernel.getSysctl(k)).trim();
        if (current !== original) await this.kernel.setSysctl(k, original);
      } catch (err) {
        // The key is gone (its device was deleted): nothing left to restore.
        if (!(err instanceof KernelError && err.code === "KERNEL_NOT_FOUND")) throw err;
      }
      delete records[k];
      await this.records.save(records);
    });
  }

  /** The keys Weft changed and has not restored, with their originals, sorted by key. */
  async owned(): Promise<OwnedSysctl[]> {
    const records = await this.records.load();
    return Object.keys(records)
      .sort()
      .map((key) => ({ key, original: records[key]! }));
  }
}

/** The OwnedSysctls of an agent: over its KernelPort, with the records in its state dir. */
export function ownedSysctls(kernel: KernelPort, stateDir: string): OwnedSysctls {
  return new OwnedSysctls(kernel, new FileSysctlRecords(stateDir));
}
