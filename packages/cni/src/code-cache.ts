/**
 * A V8 code cache for the plugin's own code. Node 20 has no compile cache for user code (module.enableCompileCache
 * came in Node 22), so every pod ADD compiled the whole bundle again, and every function it ran lazily: ~5 ms of
 * the ~55 ms an ADD costs here (docs/adr/0006-cni-latency.md). The executable (./loader.ts) therefore carries the
 * plugin's code as a string and compiles it with vm.Script, feeding it the bytecode a previous run left.
 *
 * What V8 checks before it accepts a cache, and what it does not (V8 11, Node 20):
 * - it checks its own version, the V8 flags in force, and the source's LENGTH, not its content. A cache made for
 *   another source of the same length would be accepted and run wrong bytecode. So a cache file is named by a
 *   hash of the payload (computed at build time), never reused across builds;
 * - a cache is only as good as the functions that were compiled when it was made: one taken right after compile
 *   holds the top level only and saves nothing here (measured), so it is taken at exit, after the command ran,
 *   and one file is kept per command (a DEL's cache lacks ADD's functions). It is written only after a
 *   successful run, so a failed early exit (no subnet file yet) cannot leave a cache that lacks the real work;
 * - bytecode is code: whoever can write the cache can run code as the plugin (root). The directory is created
 *   0700 and a cache is read only from a directory owned by this user that no one else can write to.
 * A rejected, missing or unreadable cache only costs the compile; nothing here can make a run fail.
 */
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Script } from "node:vm";

/** Where the plugin keeps its code caches unless WEFT_CNI_CODE_CACHE_DIR says otherwise ("off": none). */
export const DEFAULT_CODE_CACHE_DIR = "/var/cache/weft/cni";

const PREFIX = "weft-cni-";

/** What every cache file of this build of the payload on this Node starts with. */
function ownPrefix(payloadId: string): string {
  return `${PREFIX}${payloadId}-${process.version}-${process.arch}-`;
}

/** The cache file for one build of the payload, this Node, and one command. */
export function codeCachePath(dir: string, payloadId: string, command: string): string {
  return join(dir, `${ownPrefix(payloadId)}${command}.v8`);
}

export type CodeCacheStatus = "used" | "rejected" | "missing" | "untrusted" | "off";

/** Whether `dir` may hold code this process runs: a directory owned by this user that no one else can write to. */
function dirTrust(dir: string): "trusted" | "absent" | "untrusted" {
  try {
    const st = statSync(dir);
    const uid = process.getuid?.();
    return st.isDirectory() && (uid === undefined || st.uid === uid) && (st.mode & 0o022) === 0 ? "trusted" : "untrusted";
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ENOENT" ? "absent" : "untrusted";
  }
}

/** Compiles `source` with the cache at `path` when there is a usable one. */
export function compileWithCodeCache(source: string, filename: string, path: string | undefined, dir: string | undefined): { script: Script; status: CodeCacheStatus } {
  if (path === undefined) return { script: new Script(source, { filename }), status: "off" };
  const trust = dir === undefined ? "trusted" : dirTrust(dir);
  if (trust === "untrusted") return { script: new Script(source, { filename }), status: "untrusted" };
  let cachedData: Buffer | undefined;
  if (trust === "trusted") {
    try {
      cachedData = readFileSync(path);
    } catch {
      // none yet
    }
  }
  const script = new Script(source, { filename, ...(cachedData ? { cachedData } : {}) });
  return { script, status: cachedData === undefined ? "missing" : script.cachedDataRejected ? "rejected" : "used" };
}

/**
 * Writes the script's current code cache to `path` (temporary file + rename: concurrent plugins never see half
 * a file) and removes caches of other builds and Node versions. Returns an error text instead of throwing: a cache that cannot be
 * written must not fail the CNI command that has already succeeded.
 */
export function saveCodeCache(script: Script, dir: string, path: string, payloadId: string): string | undefined {
  try {
    // Never a recursive mkdir into a pseudo filesystem: Node 20's spins forever under /proc.
    if (/^\/+(proc|sys)(\/|$)/.test(dir)) return `${dir} is on a kernel pseudo filesystem; not writing a code cache there`;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (dirTrust(dir) !== "trusted") return `${dir} is not a directory owned by this user and closed to others; not writing a code cache there`;
    const tmp = `${path}.${process.pid}.tmp`;
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeFileSync(fd, script.createCachedData());
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    for (const name of readdirSync(dir)) {
      // Caches of other builds or another Node are never valid again (an upgrade); this build's other commands and
      // temporary files (a concurrent writer's) stay.
      if (name.startsWith(PREFIX) && !name.startsWith(ownPrefix(payloadId))) {
        try {
          unlinkSync(join(dir, name));
        } catch {
          // another plugin process removed it first
        }
      }
    }
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}
