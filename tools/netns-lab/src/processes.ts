/** Looking at processes a test started (a daemon that must outlive its agent, or must be gone), by PID. */
import { existsSync, readFileSync } from "node:fs";
import { sleep } from "@weft/core";

/** Whether `pid` is alive and not a zombie (a detached daemon is reaped by init, not by the test). */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** The PID a PID file holds (its first line as a number), or undefined when there is no such file. */
export function pidInFile(file: string): number | undefined {
  return existsSync(file) ? Number(readFileSync(file, "utf8").trim()) : undefined;
}

/**
 * Ends, by PID, each of `pids` that is alive and still runs `program` (SIGTERM), then waits up to 5 s for them
 * to go: for daemons that outlive their agent by design, once a test's cluster is destroyed.
 */
export async function stopDaemons(pids: Iterable<number>, program: string): Promise<void> {
  const list = [...pids];
  for (const pid of list) {
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      continue;
    }
    if (processAlive(pid) && cmdline.includes(program)) process.kill(pid, "SIGTERM");
  }
  for (let i = 0; i < 50 && list.some(processAlive); i++) await sleep(100);
}
