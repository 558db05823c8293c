/**
 * What a running process uses, read from /proc (Linux): resident memory, CPU time, open file descriptors and
 * threads. For benchmarks and soak runs that watch a process they started (by PID); only this package reads /proc.
 */
import { readFileSync, readdirSync } from "node:fs";

/** One sample of a process's resource use. */
export interface ProcessStats {
  readonly pid: number;
  /** Resident set size in bytes (VmRSS). */
  readonly rssBytes: number;
  /** CPU time used so far, user + system, in seconds. */
  readonly cpuSeconds: number;
  /** Open file descriptors (entries of /proc/<pid>/fd). */
  readonly openFds: number;
  readonly threads: number;
}

/** Clock ticks per second of /proc/<pid>/stat's times (USER_HZ: 100 on every Linux this runs on). */
const USER_HZ = 100;

/**
 * Reads `pid`'s resource use, or undefined when there is no such process (or it is a zombie). Needs the right to
 * read the process's /proc entries (root, or the same user).
 */
export function readProcessStats(pid: number): ProcessStats | undefined {
  if (!Number.isInteger(pid) || pid <= 0) throw new RangeError(`readProcessStats: pid ${pid} is not a positive integer`);
  const dir = `/proc/${pid}`;
  try {
    const stat = readFileSync(`${dir}/stat`, "utf8");
    // Fields after the command name (which may hold spaces and parentheses): state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z") return undefined;
    const status = readFileSync(`${dir}/status`, "utf8");
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
    return {
      pid,
      rssBytes: kib("VmRSS") * 1024,
      cpuSeconds: (Number(fields[11]) + Number(fields[12])) / USER_HZ,
      openFds: readdirSync(`${dir}/fd`).length,
      threads: kib("Threads"),
    };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ESRCH") return undefined;
    throw err;
  }
}
