/**
 * Delegate mode (the configuration has "delegate"): weft-cni works exactly like Flannel's meta-plugin
 * (flannel.md §5.3). It renders a configuration for another plugin (the reference `bridge` by default, with
 * `host-local` IPAM over the node's subnet), saves it to <dataDir>/<container id>, runs that plugin, and prints
 * its result. DEL runs the plugin with the SAVED configuration, so it is right even if the subnet file changed.
 *
 * The delegate is found in CNI_PATH and started through the ProcessRunner port with the runtime's own CNI_*
 * environment and the rendered configuration on stdin. File calls are synchronous, as in the IPAM store (a
 * one-shot process; no thread-pool round trips).
 */
import { accessSync, closeSync, constants, existsSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ProcessRunner } from "@weft/kernel";
import type { CniEnv, WeftNetConf } from "./config.js";
import { CniError, CniErrorCode, showText, showValue } from "./errors.js";
import type { Attachment } from "./ipam/allocator.js";
import { dataDirExists, ensureDataDir } from "./ipam/store.js";
import type { SubnetFile } from "./subnet-file.js";

/** The delegate's configuration, Flannel's rules: name, type, ipMasq, mtu, isGateway, ipam, cniVersion. */
export function renderDelegate(conf: WeftNetConf, subnet: SubnetFile): Record<string, unknown> {
  const d: Record<string, unknown> = { ...conf.delegate };
  d.name = conf.name;
  d.cniVersion = conf.cniVersion;
  if (d.type === undefined) d.type = "bridge";
  // If the agent masquerades, the bridge must not do it a second time.
  if (d.ipMasq === undefined) d.ipMasq = !subnet.ipMasq;
  if (d.mtu === undefined) d.mtu = conf.mtu ?? subnet.mtu;
  if (d.type === "bridge" && d.isGateway === undefined) d.isGateway = true;
  if (conf.raw.runtimeConfig !== undefined) d.runtimeConfig = conf.raw.runtimeConfig;

  const ipam: Record<string, unknown> = { ...conf.ipam.raw };
  if (ipam.type === undefined) ipam.type = "host-local";
  if (ipam.ranges === undefined && ipam.subnet === undefined) {
    const ranges: Array<Array<{ subnet: string }>> = [];
    if (subnet.ipv4) ranges.push([{ subnet: subnet.ipv4.subnet.toString() }]);
    if (subnet.ipv6) ranges.push([{ subnet: subnet.ipv6.subnet.toString() }]);
    ipam.ranges = ranges;
  }
  const routes: unknown[] = Array.isArray(ipam.routes) ? [...(ipam.routes as unknown[])] : [];
  if (subnet.ipv4) routes.push({ dst: subnet.ipv4.network.toString() });
  if (subnet.ipv6) routes.push({ dst: subnet.ipv6.network.toString() });
  ipam.routes = routes;
  d.ipam = ipam;
  return d;
}

/** The first executable file named `type` in CNI_PATH. */
export function findPlugin(type: string, path: readonly string[]): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(type) || type === "." || type === "..") {
    throw new CniError(CniErrorCode.INVALID_NETWORK_CONFIG, `invalid network config: "delegate.type" ${showValue(type)} is not a plugin name`);
  }
  for (const dir of path) {
    const file = join(dir, type);
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return file;
    } catch {
      // not in this directory
    }
  }
  throw new CniError(
    CniErrorCode.INVALID_NETWORK_CONFIG,
    `invalid network config: "delegate.type" is "${showText(type)}", but no executable "${showText(type)}" is in CNI_PATH ` +
      `(${path.length > 0 ? showText(path.join(":"), 200) : "empty"}); install the reference plugins (containernetworking-plugins) ` +
      `into the CNI bin dir or change delegate.type`,
  );
}

function writeAtomic(dir: string, name: string, text: string): void {
  ensureDataDir(dir, "dataDir", 0o700);
  const tmp = join(dir, `.${name}.tmp.${process.pid}`);
  const fd = openSync(tmp, "w", 0o600);
  try {
    writeFileSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, name));
}

/** Removes a file; a missing one is fine, `tolerant` also swallows every other error. */
function removeFile(path: string, tolerant = false): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if (!tolerant && (err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}

interface DelegateOutcome {
  readonly stdout: string;
}

/** Runs the delegate plugin; a failure becomes a CniError carrying the delegate's own code and message. */
export async function execDelegate(
  runner: ProcessRunner,
  env: CniEnv,
  command: string,
  netconf: Record<string, unknown>,
): Promise<DelegateOutcome> {
  const type = typeof netconf.type === "string" ? netconf.type : "bridge";
  const file = findPlugin(type, env.path);
  const r = await runner.run(file, [], {
    input: JSON.stringify(netconf),
    env: {
      CNI_COMMAND: command,
      CNI_CONTAINERID: env.containerID,
      CNI_NETNS: env.netns,
      CNI_IFNAME: env.ifname,
      CNI_ARGS: env.args,
      CNI_PATH: env.path.join(":"),
    },
    reject: false,
    timeoutMs: 120_000,
  });
  if (r.exitCode === 0) return { stdout: r.stdout };
  let code: number = CniErrorCode.INTERNAL;
  let msg = r.stderr.trim().split("\n")[0] || `exit code ${r.exitCode}`;
  let details: string | undefined;
  try {
    const e = JSON.parse(r.stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof e.code === "number") code = e.code;
    if (typeof e.msg === "string") msg = e.msg;
    if (typeof e.details === "string" && e.details) details = e.details;
  } catch {
    // not an error JSON: keep stderr's first line
  }
  throw new CniError(code, `delegate plugin ${type} ${command} failed: ${msg}`, details);
}

export async function addDelegate(conf: WeftNetConf, env: CniEnv, subnet: SubnetFile, runner: ProcessRunner): Promise<string> {
  const netconf = renderDelegate(conf, subnet);
  // A saved config means an earlier ADD of this container was never deleted (a runtime retrying after a timeout):
  // that attachment may be live. Keep its saved config (DEL needs it), and never undo it on failure.
  const live = existsSync(join(conf.dataDir, env.containerID));
  if (!live) writeAtomic(conf.dataDir, env.containerID, JSON.stringify(netconf));
  try {
    return (await execDelegate(runner, env, "ADD", netconf)).stdout;
  } catch (err) {
    if (!live) {
      // Undo what the delegate may have left half done, then forget the saved config.
      await execDelegate(runner, env, "DEL", netconf).catch(() => undefined);
      removeFile(join(conf.dataDir, env.containerID), true);
    }
    throw err;
  }
}

function readSaved(conf: WeftNetConf, containerID: string): Record<string, unknown> | undefined {
  if (!dataDirExists(conf.dataDir, "dataDir")) return undefined;
  let text: string;
  try {
    text = readFileSync(join(conf.dataDir, containerID), "utf8");
  } catch (err) {
    // Not there, or a directory in its place: nothing saved that could be used.
    if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "EISDIR") return undefined;
    throw err;
  }
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** DEL with the saved config; nothing saved (or unreadable) is success, as the spec and Flannel have it. */
export async function delDelegate(conf: WeftNetConf, env: CniEnv, runner: ProcessRunner): Promise<void> {
  const saved = readSaved(conf, env.containerID);
  if (saved) await execDelegate(runner, env, "DEL", saved);
  removeFile(join(conf.dataDir, env.containerID));
}

/** CHECK: the delegate's CHECK with the saved config and the runtime's prevResult. */
export async function checkDelegate(conf: WeftNetConf, env: CniEnv, runner: ProcessRunner): Promise<void> {
  const saved = readSaved(conf, env.containerID);
  if (!saved) {
    // The spec's "container unknown" (3): nothing was ADDed for it here.
    throw new CniError(CniErrorCode.UNKNOWN_CONTAINER, `CHECK of ${env.containerID}: no saved delegate config in ${conf.dataDir}; the container was not added by weft-cni`);
  }
  await execDelegate(runner, env, "CHECK", { ...saved, ...(conf.prevResult !== undefined ? { prevResult: conf.prevResult } : {}) });
}

/** GC: DEL (with its saved config) every container not among the valid attachments, then drop its file. */
export async function gcDelegate(conf: WeftNetConf, env: CniEnv, valid: readonly Attachment[], runner: ProcessRunner): Promise<string[]> {
  let names: string[];
  if (!dataDirExists(conf.dataDir, "dataDir")) return [];
  try {
    names = readdirSync(conf.dataDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const keep = new Set(valid.map((a) => a.containerID));
  const removed: string[] = [];
  for (const id of names) {
    if (id.startsWith(".") || keep.has(id)) continue;
    const saved = readSaved(conf, id);
    if (saved && saved.name !== conf.name) continue; // another network's attachment sharing the directory
    if (saved) {
      // Flannel's saved file records no interface name; Kubernetes pods always use eth0.
      await execDelegate(runner, { ...env, containerID: id, ifname: "eth0", netns: "" }, "DEL", saved).catch(() => undefined);
    }
    removeFile(join(conf.dataDir, id), true);
    removed.push(id);
  }
  return removed;
}
