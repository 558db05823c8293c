/**
 * Guards for real-kernel tests, and unique names for the objects those tests create.
 * Pure Node: nothing here starts a process, so it is cheap to call at module load time.
 */
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, join } from "node:path";

export type RealKernelStatus = { ok: true } | { ok: false; reason: string };

/** True when `tool` is an executable file in one of the PATH directories (or is an executable path itself). */
export function onPath(tool: string): boolean {
  const candidates = tool.includes("/")
    ? [tool]
    : (process.env.PATH ?? "").split(delimiter).filter((d) => d !== "").map((d) => join(d, tool));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      if (statSync(c).isFile()) return true;
    } catch {
      // not here; keep looking
    }
  }
  return false;
}

/**
 * Can this process build real network namespaces? Needs root, `ip`, and each named tool (e.g. "etcd",
 * "bridge", "ping") on PATH. The reason names what is missing and how to get it.
 */
export function realKernelStatus(tools: readonly string[] = []): RealKernelStatus {
  const problems: string[] = [];
  const uid = typeof process.getuid === "function" ? process.getuid() : -1;
  if (uid !== 0) problems.push(`not root (uid ${uid}); run the netns tier as root`);
  const missing = ["ip", ...tools].filter((t, i, all) => all.indexOf(t) === i && !onPath(t));
  if (missing.length > 0) problems.push(`missing on PATH: ${missing.join(", ")}`);
  return problems.length === 0 ? { ok: true } : { ok: false, reason: problems.join("; ") };
}

/** Longest Linux interface name (IFNAMSIZ - 1). Namespace names follow the same limit here for symmetry. */
export const MAX_IFNAME = 15;

const BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz";
// Starts at a random point so two processes with equal PID bits still walk different sequences.
let counter = Math.floor(Math.random() * 36 ** 6);

function base36(value: number, width: number): string {
  let out = "";
  let v = Math.floor(Math.abs(value));
  for (let i = 0; i < width; i++) {
    out = BASE36[v % 36] + out;
    v = Math.floor(v / 36);
  }
  return out;
}

function randomBase36(width: number): string {
  let out = "";
  for (let i = 0; i < width; i++) out += BASE36[Math.floor(Math.random() * 36)];
  return out;
}

/**
 * `prefix` followed by `len` base36 characters (default 8, shortened so the whole name fits 15 characters).
 * The suffix mixes PID bits, a per-process counter (random start) and randomness, so names never repeat
 * within a process (until the counter wraps at 36^(len/2)) and are very unlikely to collide across processes.
 * Lower-case letters and digits only: valid as an interface, netns, bridge or file name.
 */
export function uniqueName(prefix: string, len = 8): string {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(prefix)) {
    throw new Error(`uniqueName: prefix "${prefix}" must be lower-case letters, digits and '-'; use e.g. "wt"`);
  }
  const width = Math.min(Math.floor(len), MAX_IFNAME - prefix.length);
  if (width < 4) {
    throw new Error(
      `uniqueName: prefix "${prefix}" with len ${len} leaves ${width} unique characters (need >= 4, total <= ${MAX_IFNAME}); use a shorter prefix`,
    );
  }
  // width 4: 1 pid + 2 counter + 1 random; 6: 1+3+2; 8 (default): 2+4+2; 10: 2+5+3.
  const pidWidth = width >= 8 ? 2 : 1;
  const countWidth = Math.floor(width / 2);
  const n = counter++;
  return prefix + base36(process.pid, pidWidth) + base36(n, countWidth) + randomBase36(width - pidWidth - countWidth);
}
