/**
 * `weft-cni install`: what Flannel's two init containers do (flannel.md §5.2), as a mode of the same binary:
 * put the plugin into the CNI bin dir and a conflist into the CNI conf dir.
 *
 *   weft-cni install --bin-dir /opt/cni/bin --conf-dir /etc/cni/net.d
 *                    [--conflist FILE] [--conf-name 10-weft.conflist] [--node /abs/path/to/node]
 *
 * The plugin is two files (docs/adr/0006-cni-latency.md):
 * - `weft`: the C shim (dist/weft-cni-shim, next to this executable after symlinks), which forwards each request to weftd;
 * - `weft-cni`: this Node.js bundle, the shim's fallback when weftd does not answer. Its absolute path is written
 *   into the installed shim's FALLBACK slot here, at install time: the shim never looks it up.
 * Every write is atomic (a temporary file in the target directory, fsync, rename) and the fallback goes first, so
 * kubelet never execs or parses a half-written file, and an installed `weft` always finds its fallback.
 *
 * The fallback's first line is `#!/usr/bin/env node`, so the node running the kubelet needs `node` (>= 20) on
 * PATH; `--node` rewrites that line to an absolute interpreter path instead.
 */
import { realpathSync } from "node:fs";
import { open, readFile, rename, unlink, mkdir } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";

export const DEFAULT_CONFLIST_NAME = "10-weft.conflist";
/** The shim's file name in dist/ (built by `npm run shim`), installed as `weft`. */
export const SHIM_FILE = "weft-cni-shim";
/** The Node plugin's name in the CNI bin dir: the shim's fallback. */
export const FALLBACK_NAME = "weft-cni";
/** The marker that starts the shim's fallback slot (FALLBACK_MARKER in shim/weft-cni-shim.c) and its size. */
export const FALLBACK_MARKER = "@@WEFT-CNI-FALLBACK-PATH@@";
export const FALLBACK_SLOT_SIZE = 4096;

/**
 * A copy of the shim binary with `fallback` written into its slot: the marker followed by zero bytes up to the
 * slot's size (the marker also appears as a constant elsewhere in the binary; the slot is the one followed by
 * zeros).
 */
export function patchShim(shim: Uint8Array, fallback: string): Buffer {
  const out = Buffer.from(shim);
  const marker = Buffer.from(FALLBACK_MARKER, "latin1");
  const path = Buffer.from(fallback, "utf8");
  if (!fallback.startsWith("/")) throw new UsageError(`the fallback path ${JSON.stringify(fallback)} must be absolute`);
  if (path.includes(0) || marker.length + path.length + 1 > FALLBACK_SLOT_SIZE) {
    throw new UsageError(`the fallback path ${fallback} is longer than the shim's slot (${FALLBACK_SLOT_SIZE - marker.length - 1} bytes); use a shorter --bin-dir`);
  }
  for (let at = out.indexOf(marker); at >= 0; at = out.indexOf(marker, at + 1)) {
    const rest = out.subarray(at + marker.length, at + FALLBACK_SLOT_SIZE);
    if (rest.length === FALLBACK_SLOT_SIZE - marker.length && rest.every((b) => b === 0)) {
      path.copy(out, at + marker.length);
      return out;
    }
  }
  throw new UsageError(`the shim has no empty fallback slot (${FALLBACK_MARKER} followed by zeros): rebuild it with \`npm run build\` in packages/cni`);
}

/**
 * What an installed `weft` is, read back from its bytes (the inverse of {@link patchShim}, for `weftctl doctor`):
 * `{ fallback: "/abs/path" }` for the shim with a fallback written into its slot, `{ fallback: undefined }` for the
 * shim with an empty slot (built but never installed by `weft-cni install`: it has nothing to run when weftd is
 * down), and undefined when `bin` has no slot at all (not the shim: the Node plugin itself, or another program).
 */
export function readShimFallback(bin: Uint8Array): { readonly fallback: string | undefined } | undefined {
  const buf = Buffer.from(bin.buffer, bin.byteOffset, bin.byteLength);
  const marker = Buffer.from(FALLBACK_MARKER, "latin1");
  for (let at = buf.indexOf(marker); at >= 0; at = buf.indexOf(marker, at + 1)) {
    const rest = buf.subarray(at + marker.length, at + FALLBACK_SLOT_SIZE);
    if (rest.length !== FALLBACK_SLOT_SIZE - marker.length) continue;
    const end = rest.indexOf(0);
    // The slot: an absolute path then zeros to its end, or zeros only. The marker's other copy (the constant the
    // shim compares with) is followed by a NUL and other strings.
    if (end < 0 || !rest.subarray(end).every((b) => b === 0)) continue;
    if (end === 0) return { fallback: undefined };
    if (rest[0] === 0x2f) return { fallback: rest.subarray(0, end).toString("utf8") };
  }
  return undefined;
}

/** The default network: Flannel's (name cbr0, then portmap) with the weft plugin in place of flannel. */
export function defaultConflist(): Record<string, unknown> {
  return {
    name: "cbr0",
    cniVersion: "1.0.0",
    // Runtimes with libcni >= 1.2 pick the newest they support (STATUS and GC need 1.1.0).
    cniVersions: ["1.0.0", "1.1.0"],
    plugins: [
      { type: "weft", isDefaultGateway: true, hairpinMode: true },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  };
}

export interface InstallOptions {
  readonly binDir: string;
  readonly confDir: string;
  readonly conflist?: string;
  readonly confName: string;
  readonly node?: string;
}

export class UsageError extends Error {
  override readonly name = "UsageError";
}

export const INSTALL_USAGE =
  "usage: weft-cni install --bin-dir DIR --conf-dir DIR [--conflist FILE] [--conf-name NAME] [--node /path/to/node]";

export function parseInstallArgs(argv: readonly string[]): InstallOptions {
  const opts: { binDir?: string; confDir?: string; conflist?: string; confName?: string; node?: string } = {};
  const keys: Record<string, keyof typeof opts> = {
    "--bin-dir": "binDir",
    "--conf-dir": "confDir",
    "--conflist": "conflist",
    "--conf-name": "confName",
    "--node": "node",
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf("=");
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const key = keys[flag];
    if (!key) throw new UsageError(`unknown argument ${JSON.stringify(arg)}; ${INSTALL_USAGE}`);
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined || value === "") throw new UsageError(`${flag} needs a value; ${INSTALL_USAGE}`);
    opts[key] = value;
  }
  if (!opts.binDir) throw new UsageError(`--bin-dir is required (e.g. /opt/cni/bin); ${INSTALL_USAGE}`);
  if (!opts.confDir) throw new UsageError(`--conf-dir is required (e.g. /etc/cni/net.d); ${INSTALL_USAGE}`);
  const confName = opts.confName ?? DEFAULT_CONFLIST_NAME;
  if (confName.includes("/") || !/\.(conflist|conf|json)$/.test(confName)) {
    throw new UsageError(`--conf-name ${JSON.stringify(confName)} must be a file name ending in .conflist (runtimes ignore other names)`);
  }
  if (opts.node !== undefined && !opts.node.startsWith("/")) throw new UsageError(`--node must be an absolute path, got ${JSON.stringify(opts.node)}`);
  return {
    binDir: opts.binDir,
    confDir: opts.confDir,
    confName,
    ...(opts.conflist ? { conflist: opts.conflist } : {}),
    ...(opts.node ? { node: opts.node } : {}),
  };
}

/** Writes `data` to `dir/name` through a temporary file in the same directory and a rename. */
export async function writeFileAtomic(dir: string, name: string, data: string | Uint8Array, mode: number): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const target = join(dir, name);
  const tmp = join(dir, `.${name}.tmp.${process.pid}.${Date.now()}`);
  const fh = await open(tmp, "w", mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(mode);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  await rename(tmp, target);
  return target;
}

/** Validates a conflist's text: JSON with name and a non-empty plugins array. Returns it normalised. */
export function checkConflist(text: string, source: string): string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${source} is not valid JSON: ${(err as Error).message}`);
  }
  const o = v as { name?: unknown; plugins?: unknown };
  if (typeof v !== "object" || v === null || typeof o.name !== "string" || !Array.isArray(o.plugins) || o.plugins.length === 0) {
    throw new UsageError(`${source} is not a conflist: it needs a "name" and a non-empty "plugins" array`);
  }
  return `${JSON.stringify(v, null, 2)}\n`;
}

/**
 * Installs the Node plugin `self` as the fallback, the shim (default: dist/weft-cni-shim next to `self`) as
 * `weft` pointing at it, and the conflist; returns the paths written.
 */
export async function install(opts: InstallOptions, self: string, shimFile: string = join(dirname(realpathSync(self)), SHIM_FILE)): Promise<{ plugin: string; fallback: string; conflist: string }> {
  let shim: Buffer;
  try {
    shim = await readFile(shimFile);
  } catch (err) {
    throw new Error(`the shim ${shimFile} cannot be read (${(err as Error).message}); build it with \`npm run build\` in packages/cni (needs a C compiler: gcc, libc6-dev)`);
  }
  const fallbackPath = join(resolve(opts.binDir), FALLBACK_NAME);
  const patched = patchShim(shim, fallbackPath);
  let code = await readFile(self, "utf8");
  if (opts.node) {
    const body = code.startsWith("#!") ? code.slice(code.indexOf("\n") + 1) : code;
    code = `#!${opts.node}\n${body}`;
  }
  const conflistText = opts.conflist ? checkConflist(await readFile(opts.conflist, "utf8"), opts.conflist) : `${JSON.stringify(defaultConflist(), null, 2)}\n`;
  // The fallback first: from the moment the new `weft` is in place, what it executes exists.
  const fallback = await writeFileAtomic(opts.binDir, FALLBACK_NAME, code, 0o755);
  const plugin = await writeFileAtomic(opts.binDir, "weft", patched, 0o755);
  const conflist = await writeFileAtomic(opts.confDir, opts.confName, conflistText, 0o644);
  return { plugin, fallback, conflist };
}

export function describeInstall(r: { plugin: string; fallback: string; conflist: string }): string {
  return `installed ${basename(r.plugin)} as ${r.plugin} (the shim; it forwards to weftd), its fallback as ${r.fallback}, and the network config as ${r.conflist}`;
}
