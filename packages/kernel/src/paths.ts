/**
 * Path checks for the files and directories Weft writes (state dir, subnet.env, CNI data dirs).
 *
 * Why this exists: Node 20's `mkdirSync(p, { recursive: true })` loops forever at 100 % CPU under /proc (the
 * kernel answers ENOENT for a parent that exists, so Node retries the parent forever). So Weft never creates
 * directories recursively: every path is checked first (no component is a non-directory, nothing lives on a
 * pseudo filesystem such as /proc or /sys, the place we write is writable), and missing directories are then
 * created one component at a time with plain `mkdirSync`. A refusal is a ConfigError with one line naming the
 * field, the value and the fix, raised before anything was created.
 */
import { accessSync, constants, mkdirSync, realpathSync, statSync, statfsSync } from "node:fs";
import { dirname, isAbsolute, resolve, sep } from "node:path";
import { ConfigError, describeValue } from "@weft/core";

/** Directory prefixes (after resolving symlinks) that are kernel pseudo filesystems, never a place for files. */
const PSEUDO_PREFIXES = ["/proc", "/sys", "/dev/pts", "/dev/mqueue", "/dev/hugepages"] as const;

/**
 * The kernel pseudo filesystem an absolute path names by its text alone (`/proc`, `/sys`, ...), or undefined.
 * For a quick refusal before anything touches the path; {@link ensureDirectory} also checks what the path
 * resolves to.
 */
export function pseudoFilesystemPrefix(path: string): string | undefined {
  const normal = "/" + path.split("/").filter((p) => p !== "" && p !== ".").join("/");
  return PSEUDO_PREFIXES.find((prefix) => normal === prefix || normal.startsWith(`${prefix}/`));
}

/** statfs `f_type` magic numbers of pseudo filesystems (linux/magic.h). */
const PSEUDO_MAGIC: ReadonlyMap<number, string> = new Map([
  [0x9fa0, "proc"],
  [0x62656572, "sysfs"],
  [0x64626720, "debugfs"],
  [0x74726163, "tracefs"],
  [0x73636673, "securityfs"],
  [0x27e0eb, "cgroup"],
  [0x63677270, "cgroup2"],
  [0xcafe4a11, "bpf"],
  [0x62656570, "configfs"],
  [0x6165676c, "pstore"],
  [0xde5e81e4, "efivarfs"],
  [0x1cd1, "devpts"],
  [0xf97cff8c, "selinuxfs"],
  [0x65735543, "fusectl"],
  [0x42494e4d, "binfmt_misc"],
  [0x19800202, "mqueue"],
  [0x6e736673, "nsfs"],
]);

interface PathWalk {
  /** The absolute, normalised path. */
  readonly absolute: string;
  /** The deepest component that exists (at least "/"). */
  readonly deepestExisting: string;
  /** Whether the full path exists, and if so whether it is a directory. */
  readonly leaf: "missing" | "directory" | "other";
  /** Components below deepestExisting that do not exist yet, outermost first. */
  readonly missing: readonly string[];
}

function refuse(field: string, path: string, problem: string, fix: string): never {
  throw new ConfigError(field, field, `${describeValue(path)} ${problem}: ${fix}`);
}

/** Walks `path` from the root with stat (no loop that can spin), refusing a non-directory component. */
function walk(path: string, field: string): PathWalk {
  if (typeof path !== "string" || path === "") refuse(field, String(path), "is empty", `set ${field} to an absolute path`);
  if (path.includes("\0")) refuse(field, path, "contains a NUL character", `set ${field} to a plain absolute path`);
  if (path.length > 4096) refuse(field, path, "is longer than 4096 characters (PATH_MAX)", `choose a shorter path for ${field}`);
  const absolute = isAbsolute(path) ? resolve(path) : resolve(process.cwd(), path);
  const parts = absolute.split(sep).filter((p) => p !== "");
  let current = "/";
  let deepestExisting = "/";
  const missing: string[] = [];
  let leaf: PathWalk["leaf"] = "directory";
  for (let i = 0; i < parts.length; i++) {
    const next = current === "/" ? `/${parts[i]}` : `${current}/${parts[i]}`;
    if (missing.length > 0) {
      missing.push(next);
      current = next;
      continue;
    }
    let st;
    try {
      st = statSync(next, { throwIfNoEntry: false });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? "error";
      if (code === "ENOTDIR") refuse(field, path, `cannot be used: ${current} is not a directory`, `choose a path whose parent components are directories`);
      if (code === "ELOOP") refuse(field, path, `cannot be used: ${next} is a symlink loop`, `fix the symlink or choose another path`);
      if (code === "EACCES") refuse(field, path, `cannot be used: ${current} is not searchable (EACCES)`, `run as root or choose a path this user can reach`);
      refuse(field, path, `cannot be used: stat ${next} failed (${code})`, `choose another path for ${field}`);
    }
    if (st === undefined) {
      missing.push(next);
      leaf = "missing";
    } else if (st.isDirectory()) {
      deepestExisting = next;
    } else if (i === parts.length - 1) {
      leaf = "other";
    } else {
      refuse(field, path, `cannot be used: ${next} exists and is not a directory`, `remove ${next} or choose another path for ${field}`);
    }
    current = next;
  }
  return { absolute, deepestExisting, leaf, missing };
}

/** Refuses a path that resolves into a pseudo filesystem (/proc, /sys, cgroup, ...). */
function refusePseudo(walked: PathWalk, path: string, field: string): void {
  let real: string;
  try {
    real = realpathSync(walked.deepestExisting);
  } catch {
    real = walked.deepestExisting;
  }
  for (const prefix of PSEUDO_PREFIXES) {
    if (real === prefix || real.startsWith(`${prefix}/`)) {
      refuse(field, path, `is on ${prefix}, a kernel pseudo filesystem`, `choose a directory on a real filesystem, e.g. under /var/lib or /run`);
    }
  }
  try {
    const type = statfsSync(real).type;
    const name = PSEUDO_MAGIC.get(type);
    if (name !== undefined) {
      refuse(field, path, `is on a ${name} pseudo filesystem (${real})`, `choose a directory on a real filesystem, e.g. under /var/lib or /run`);
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    // statfs unavailable: the prefix check above stands.
  }
}

function refuseUnwritable(dir: string, path: string, field: string): void {
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    const fix = code === "EROFS" ? `${dir} is on a read-only filesystem; choose a writable location` : `make ${dir} writable for this user or choose another path`;
    refuse(field, path, `cannot be written: ${dir} is not writable (${code})`, fix);
  }
}

/**
 * Makes sure `path` is a directory, creating missing components one at a time (never a recursive mkdir).
 * Refuses, before creating anything, a path with a non-directory component, one on a pseudo filesystem
 * (/proc, /sys, ...) or one under a directory that is not writable. Throws a ConfigError whose one line names
 * `field` (e.g. `--state-dir`), the value and the fix.
 */
export function ensureDirectory(path: string, field: string, mode = 0o755): void {
  const walked = walk(path, field);
  if (walked.leaf === "other") refuse(field, path, "exists and is not a directory", `remove it or choose a directory path for ${field}`);
  refusePseudo(walked, path, field);
  if (walked.missing.length > 0) refuseUnwritable(walked.deepestExisting, path, field);
  for (const dir of walked.missing) {
    try {
      mkdirSync(dir, { mode });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? "error";
      if (code === "EEXIST" && statSync(dir, { throwIfNoEntry: false })?.isDirectory()) continue; // created meanwhile
      refuse(field, path, `cannot be created: mkdir ${dir} failed (${code})`, `create it by hand or choose another path for ${field}`);
    }
  }
}

/**
 * Checks, without creating or writing anything, that a file can be written at `path` (atomically, via a temp
 * file and rename in its directory): the path is not a directory, no component is a non-directory, it is not
 * on a pseudo filesystem, and the deepest existing directory is writable. Throws a ConfigError naming `field`.
 */
export function checkWritableFilePath(path: string, field: string): void {
  const walked = walk(path, field);
  if (walked.leaf === "directory") refuse(field, path, "is a directory", `set ${field} to a file path such as ${walked.absolute === "/" ? "" : walked.absolute}/subnet.env`);
  refusePseudo(walked, path, field);
  refuseUnwritable(walked.leaf === "missing" ? walked.deepestExisting : dirname(walked.absolute), path, field);
}
