/**
 * Private bind mounts for the adapters that need one (wireguard-go's UAPI socket directory, charon's PID file).
 * A bind over a machine path is made only when the agent has a mount namespace of its own, where it changes
 * nothing outside the agent, and only once per namespace.
 */
import { readFileSync, readlinkSync } from "node:fs";
import { WeftError } from "@weft/core";
import type { ProcessRunner } from "./process.js";
import { toolError } from "./tool-errors.js";

/**
 * Throws WeftError CONFIG_INVALID, with the line `refusal` makes of whose namespace it shares ("PID 1's" or
 * "its parent's"), unless this process is in a mount namespace of its own: not its parent's, nor PID 1's (when
 * this container lets us see it). Not being able to tell counts as sharing.
 */
export function requireOwnMountNamespace(refusal: (shares: string) => string): void {
  const ns = (pid: number | "self") => {
    try {
      return readlinkSync(`/proc/${pid}/ns/mnt`);
    } catch {
      return undefined;
    }
  };
  const own = ns("self");
  const shared = [process.ppid, 1].find((pid) => ns(pid) === own);
  if (own === undefined || ns(process.ppid) === undefined || shared !== undefined) {
    throw new WeftError("CONFIG_INVALID", refusal(shared === 1 ? "PID 1's" : "its parent's"));
  }
}

/** Whether `path` (resolved, no symlinks) is a mount point in this process's mount namespace. */
export function isMountPoint(path: string): boolean {
  // mountinfo field 5 is the mount point.
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((l) => l.split(" ")[4] === path);
}

/** `mount --bind source target`; a failure is the tool's classified error. */
export async function bindMount(runner: ProcessRunner, source: string, target: string): Promise<void> {
  const args = ["--bind", source, target];
  const r = await runner.run("mount", args, { reject: false });
  if (r.exitCode !== 0) throw toolError("mount", args, r);
}
