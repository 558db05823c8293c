/** subnet.env on disk: written atomically (temp file, fsync, rename), mode 0644, parent created 0755. */
import { mkdirSync, openSync, readFileSync, renameSync, writeSync, fsyncSync, closeSync, existsSync, unlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { type SubnetEnv, formatSubnetEnv, parseSubnetEnv } from "@weft/core";

export function writeSubnetFile(path: string, values: Parameters<typeof formatSubnetEnv>[0]): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const tmp = join(dir, `.${process.pid}.${Date.now()}.subnet.env.tmp`);
  const fd = openSync(tmp, "w", 0o644);
  try {
    writeSync(fd, formatSubnetEnv(values));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** The previous agent's file, if any and readable; a malformed file is treated as absent (and reported). */
export function readSubnetFile(path: string): { env?: SubnetEnv; error?: string } {
  if (!existsSync(path)) return {};
  try {
    return { env: parseSubnetEnv(readFileSync(path, "utf8")) };
  } catch (err) {
    return { error: `${path}: ${(err as Error).message}` };
  }
}

export function removeSubnetFile(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}
