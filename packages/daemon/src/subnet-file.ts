/**
 * subnet.env on disk: written atomically (temp file, fsync, rename), mode 0644, parent created 0755 one
 * component at a time (ensureDirectory: never Node's recursive mkdir, which spins forever on /proc). The path
 * is checked before anything is written, a temp file is never left behind, and a failed write leaves the
 * previous subnet.env intact.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { type SubnetEnv, WeftError, errorMessage, formatSubnetEnv, parseSubnetEnv } from "@weft/core";
import { checkWritableFilePath, ensureDirectory } from "@weft/kernel";

/**
 * Writes subnet.env atomically. Throws a ConfigError naming `--subnet-file` when the path cannot hold a file
 * (a directory, a pseudo filesystem, a component that is a file), or a WeftError when the write fails (disk
 * full, I/O error); in both cases the previous file is untouched and no temp file remains.
 */
export function writeSubnetFile(path: string, values: Parameters<typeof formatSubnetEnv>[0]): void {
  checkWritableFilePath(path, "--subnet-file");
  const text = formatSubnetEnv(values);
  const dir = dirname(path);
  ensureDirectory(dir, "--subnet-file", 0o755);
  const tmp = join(dir, `.${process.pid}.${Date.now()}.subnet.env.tmp`);
  let renamed = false;
  try {
    const fd = openSync(tmp, "wx", 0o644);
    try {
      const buf = Buffer.from(text, "utf8");
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    renamed = true;
  } catch (err) {
    throw new WeftError("CONFIG_INVALID", `--subnet-file: writing ${path} failed (${errorMessage(err)}); the previous file is unchanged: free space or fix the directory`, { cause: err });
  } finally {
    if (!renamed) {
      try {
        unlinkSync(tmp);
      } catch {
        // never created
      }
    }
  }
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
