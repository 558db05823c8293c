/**
 * `weft-cni install`: what Flannel's two init containers do (flannel.md §5.2), as a mode of the same binary:
 * copy the plugin into the CNI bin dir as `weft`, and a conflist into the CNI conf dir. Both writes are atomic
 * (a temporary file in the target directory, fsync, rename), so kubelet never execs or parses a half-written
 * file.
 *
 *   weft-cni install --bin-dir /opt/cni/bin --conf-dir /etc/cni/net.d
 *                    [--conflist FILE] [--conf-name 10-weft.conflist] [--node /abs/path/to/node]
 *
 * The plugin is a Node.js bundle. Its first line is `#!/usr/bin/env node`, so the node running the kubelet
 * needs `node` (>= 20) on PATH; `--node` rewrites that line to an absolute interpreter path instead.
 */
import { open, readFile, rename, unlink, mkdir } from "node:fs/promises";
import { basename, join } from "node:path";

export const DEFAULT_CONFLIST_NAME = "10-weft.conflist";

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

/** Installs the plugin file `self` and the conflist; returns the paths written. */
export async function install(opts: InstallOptions, self: string): Promise<{ plugin: string; conflist: string }> {
  let code = await readFile(self, "utf8");
  if (opts.node) {
    const body = code.startsWith("#!") ? code.slice(code.indexOf("\n") + 1) : code;
    code = `#!${opts.node}\n${body}`;
  }
  const conflistText = opts.conflist ? checkConflist(await readFile(opts.conflist, "utf8"), opts.conflist) : `${JSON.stringify(defaultConflist(), null, 2)}\n`;
  const plugin = await writeFileAtomic(opts.binDir, "weft", code, 0o755);
  const conflist = await writeFileAtomic(opts.confDir, opts.confName, conflistText, 0o644);
  return { plugin, conflist };
}

export function describeInstall(r: { plugin: string; conflist: string }): string {
  return `installed ${basename(r.plugin)} as ${r.plugin} and the network config as ${r.conflist}`;
}
