/**
 * Kind "wg-device": a WireGuard device run by a wireguard-go process, as a reconciled kernel object.
 *
 * No WireGuard kernel module here (`ip link add type wireguard` fails), so the device is a TUN created by
 * `wireguard-go -f <ifname>` in the agent's network namespace, configured over its UAPI socket
 * /var/run/wireguard/<ifname>.sock with `wg` (wireguard-tools) through the ProcessRunner.
 *
 * What the kernel (and wireguard-go) do that surprises:
 *   - Killing wireguard-go deletes the TUN and its socket; deleting the TUN ends wireguard-go.
 *   - The socket directory is one per MOUNT namespace, not per network namespace: two agents on one machine
 *     with the same device name in different netns would talk to each other's device. A socket that answers
 *     while this netns has no such link is reported ("foreign") and left alone (docs/adr/0008-wireguard-go.md).
 *   - A TUN of that name without a live wireguard-go (the process died, or the links reconciler re-created
 *     the name) cannot be adopted: wireguard-go refuses to attach to it. It is deleted before a new start.
 *   - wireguard-go is started detached (own session, stdio to <STATE_DIR>/<ifname>.log) so that it outlives the
 *     agent: close("restart") keeps the tunnel up and the next agent adopts the device through its socket.
 *     Its PID is kept in <STATE_DIR>/<ifname>.pid; teardown ends it BY THAT PID, after checking with `ps`
 *     that the PID still is wireguard-go for this device (PIDs are reused). Never by name.
 *
 * Desired: name, listen port, and the public key of the private key file. Actual (`wg show <dev> dump`):
 * the same, read back. Drift in port or key is fixed in place (`wg set ... private-key <file> listen-port N`,
 * which rebinds the UDP socket live); a dead device is restarted.
 */
import { existsSync, mkdirSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type Logger, WeftError, errorMessage, isWeftError } from "@weft/core";
import { type ChildHandle, KernelError, type KernelPort, type OpResult, type ProcessRunner } from "@weft/kernel";
import type { Drift, ObjectReconciler } from "@weft/reconcile";
import { isNoDevice, parseWgDump } from "./wg-dump.js";

export const WG_DEVICE_KIND = "wg-device";
/** Every name a wireguard device of Weft's may have (for prune and `weftd --teardown`, which declare none). */
export const WG_DEVICE_NAMES = ["weft-wg", "weft-wg-v6"] as const;
/** How long wireguard-go may take to open its socket (53–70 ms measured; linux-lab §5). */
const START_TIMEOUT_MS = 5000;
/** Where wireguard-go and wg put and look for UAPI sockets; hard-coded in both. */
export const SOCKET_DIR = "/var/run/wireguard";
/**
 * Environment variable for labs that run several agents on one machine, one per network namespace: when it is
 * "1", the agent bind-mounts <STATE_DIR>/wireguard-sockets over /var/run/wireguard in its OWN mount namespace
 * (`ip netns exec` gives each command one), so every node has its own socket directory and `weft-wg` is free
 * in each. Refused when the agent shares PID 1's mount namespace (it would hide the machine's sockets).
 * See docs/adr/0008-wireguard-go.md.
 */
export const PRIVATE_SOCKET_DIR_ENV = "WEFT_WIREGUARD_PRIVATE_SOCKET_DIR";
const STOP_TIMEOUT_MS = 3000;

export interface WgDeviceSpec {
  readonly name: string;
  readonly listenPort: number;
  /** The public key of `privateKeyFile`: what the device must report. */
  readonly publicKey: string;
  /** Path of the private key (0600); only in desired objects. */
  readonly privateKeyFile?: string;
  /** Read back only: "running" (socket answers, link here), "dead" (link without a live wireguard-go), "foreign". */
  readonly state?: "running" | "dead" | "foreign";
}

export type WgDeviceOp =
  | { readonly op: "wg-device.start"; readonly spec: WgDeviceSpec }
  | { readonly op: "wg-device.configure"; readonly spec: WgDeviceSpec }
  | { readonly op: "wg-device.stop"; readonly name: string };

const firstLine = (s: string) => s.split("\n").find((l) => l.trim() !== "")?.trim() ?? "";

/**
 * What wireguard-go said last, for an error message: its final lines without the boxed "not required" banner
 * it always prints (linux-lab §5). wireguard-go logs no key material, so this is safe to log.
 */
export function wireguardGoLogTail(log: string, lines = 3): string {
  let text: string;
  try {
    text = readFileSync(log, "utf8");
  } catch {
    return "";
  }
  const said = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !/^[\u2500-\u257f]/u.test(l));
  return said.slice(-lines).join(" | ");
}

export const pidFile = (stateDir: string, name: string) => join(stateDir, `${name}.pid`);
export const logFile = (stateDir: string, name: string) => join(stateDir, `${name}.log`);

export class WgDeviceReconciler implements ObjectReconciler<WgDeviceSpec, WgDeviceOp> {
  readonly kind = WG_DEVICE_KIND;
  /** wireguard-go creates (and on exit deletes) the TUN itself. */
  readonly sideEffects = ["links", "addresses", "routes"] as const;
  /** Processes this agent started: ended through their handle (which also reaps them). */
  private readonly children = new Map<string, ChildHandle>();

  private socketDir?: Promise<void>;

  constructor(
    private readonly runner: ProcessRunner,
    private readonly kernel: KernelPort,
    private readonly logger: Logger,
    private readonly stateDir: string,
    /** Bind a private socket directory first (PRIVATE_SOCKET_DIR_ENV). */
    private readonly privateSocketDir = false,
  ) {}

  /** Makes sure `wg` and wireguard-go see this agent's socket directory (once; retried after a failure). */
  ensureSocketDir(): Promise<void> {
    if (!this.privateSocketDir) return Promise.resolve();
    this.socketDir ??= this.bindSocketDir().catch((err: unknown) => {
      this.socketDir = undefined;
      throw err;
    });
    return this.socketDir;
  }

  private async bindSocketDir(): Promise<void> {
    // Its own mount namespace: not the one of its parent, nor of PID 1 (when this container lets us see it).
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
      throw new WeftError(
        "CONFIG_INVALID",
        `${PRIVATE_SOCKET_DIR_ENV}=1 but the agent is not in a mount namespace of its own (it shares ${shared === 1 ? "PID 1's" : "its parent's"}, or it cannot tell): ` +
          `binding over ${SOCKET_DIR} would hide this machine's WireGuard sockets; run the agent in its own mount namespace (ip netns exec gives it one) or unset ${PRIVATE_SOCKET_DIR_ENV}`,
      );
    }
    mkdirSync(SOCKET_DIR, { recursive: true, mode: 0o755 });
    const target = realpathSync(SOCKET_DIR);
    // mountinfo field 5 is the mount point. Already bound (an agent restarted in the same namespace): done.
    if (readFileSync("/proc/self/mountinfo", "utf8").split("\n").some((l) => l.split(" ")[4] === target)) return;
    const dir = join(this.stateDir, "wireguard-sockets");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    await this.runner.run("mount", ["--bind", dir, target]);
    this.logger.info("wireguard: private UAPI socket directory", { dir, mountedOn: target });
  }

  key(d: WgDeviceSpec): string {
    return d.name;
  }

  async listOwned(kernel: KernelPort, desired: readonly WgDeviceSpec[]): Promise<WgDeviceSpec[]> {
    await this.ensureSocketDir();
    const links = new Set((await kernel.listLinks()).map((l) => l.name));
    const names = new Set<string>([...WG_DEVICE_NAMES, ...desired.map((d) => d.name)]);
    const out: WgDeviceSpec[] = [];
    for (const name of names) {
      const r = await this.show(name, desired.length > 0);
      if (r.exitCode !== 0) {
        // No live wireguard-go for this name; a TUN left with the name cannot be adopted, only replaced.
        if (links.has(name)) out.push({ name, listenPort: 0, publicKey: "", state: "dead" });
        continue;
      }
      // A socket answers. It is ours only if the wireguard-go this agent (or an earlier one) recorded is alive:
      // the socket directory is shared by every network namespace in the mount namespace, so it may be the
      // device of another agent on this machine. That one is reported and never touched (never reconfigured:
      // that would overwrite another node's key).
      if (!(await this.recordedPid(name))) {
        out.push({ name, listenPort: 0, publicKey: "", state: "foreign" });
        continue;
      }
      const dump = parseWgDump(r.stdout);
      out.push({ name, listenPort: dump.listenPort, publicKey: dump.publicKey ?? "", state: "running" });
    }
    return out;
  }

  /**
   * `wg show <name> dump`. Without wg installed, nothing can be configured (a desired device fails, loudly), but
   * a teardown on such a machine still finds a leftover TUN (as "dead") and ends its wireguard-go by PID.
   */
  private async show(name: string, needed: boolean): Promise<{ exitCode: number; stdout: string }> {
    try {
      return await this.runner.run("wg", ["show", name, "dump"], { reject: false });
    } catch (err) {
      if (needed || !isWeftError(err) || err.code !== "PROCESS_MISSING") throw err;
      return { exitCode: 1, stdout: "" };
    }
  }

  /** Whether `name`'s UAPI socket is served by the wireguard-go Weft recorded (peers may be read and written). */
  async owns(name: string): Promise<boolean> {
    await this.ensureSocketDir();
    return (await this.recordedPid(name)) !== undefined;
  }

  /** The PID in <STATE_DIR>/<name>.pid when it is a live wireguard-go for `name`; undefined otherwise. */
  private async recordedPid(name: string): Promise<number | undefined> {
    const file = pidFile(this.stateDir, name);
    if (!existsSync(file)) return undefined;
    const pid = Number(readFileSync(file, "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    return (await this.isOurs(pid, name)) ? pid : undefined;
  }

  drift(d: WgDeviceSpec, a: WgDeviceSpec): Drift {
    if (a.state === "dead") return "no wireguard-go answers on its UAPI socket: restart it";
    if (a.state === "foreign") return "the UAPI socket belongs to a wireguard-go this agent did not start";
    const reasons = [
      d.listenPort !== a.listenPort ? `listen-port ${a.listenPort} != ${d.listenPort}` : undefined,
      // Public keys only: the private key is never compared in the open or logged.
      d.publicKey !== a.publicKey ? "private key differs from the node's key file" : undefined,
    ].filter(Boolean);
    return reasons.length ? reasons.join(", ") : undefined;
  }

  refuse(d: WgDeviceSpec, a: WgDeviceSpec): string | undefined {
    if (a.state !== "foreign") return undefined;
    return (
      `/var/run/wireguard/${d.name}.sock answers, but not from the wireguard-go recorded in ${pidFile(this.stateDir, d.name)}: ` +
      `another agent on this machine probably runs ${d.name} in another network namespace (the socket directory is shared per ` +
      `mount namespace). Run each agent in its own mount namespace with a private /var/run/wireguard (docs/adr/0008-wireguard-go.md), ` +
      `or end that wireguard-go if it is a leftover`
    );
  }

  addOps(d: WgDeviceSpec): WgDeviceOp[] {
    return [{ op: "wg-device.start", spec: d }];
  }

  updateOps(d: WgDeviceSpec, a: WgDeviceSpec): WgDeviceOp[] {
    return a.state === "dead" ? [{ op: "wg-device.start", spec: d }] : [{ op: "wg-device.configure", spec: d }];
  }

  removeOps(a: WgDeviceSpec): WgDeviceOp[] {
    return a.state === "foreign" ? [] : [{ op: "wg-device.stop", name: a.name }];
  }

  async apply(ops: readonly WgDeviceOp[]): Promise<OpResult[]> {
    const results: OpResult[] = [];
    await this.ensureSocketDir();
    for (const op of ops) {
      try {
        if (op.op === "wg-device.start") await this.start(op.spec);
        else if (op.op === "wg-device.configure") await this.configure(op.spec);
        else await this.stop(op.name);
        results.push({ ok: true });
      } catch (err) {
        const name = op.op === "wg-device.stop" ? op.name : op.spec.name;
        results.push({
          ok: false,
          error: err instanceof KernelError ? err : new KernelError("KERNEL_FAILED", `${op.op} ${name}: ${errorMessage(err)}`, undefined, { cause: err }),
        });
      }
    }
    return results;
  }

  private async start(spec: WgDeviceSpec): Promise<void> {
    const { name } = spec;
    // A previous wireguard-go for this name that no longer answers (hung), then a TUN left without one.
    await this.stop(name);
    if ((await this.kernel.listLinks()).some((l) => l.name === name)) {
      const [r] = await this.kernel.apply([{ op: "link.del", name }]);
      if (r && !r.ok && r.error.code !== "KERNEL_NOT_FOUND") throw r.error;
    }
    const log = logFile(this.stateDir, name);
    const child = this.runner.spawn("wireguard-go", ["-f", name], { detached: true, stdoutFile: log, stderrFile: log });
    this.children.set(name, child);
    writeFileSync(pidFile(this.stateDir, name), `${child.pid}\n`, { mode: 0o600 });
    let exited: { code: number | null; signal: string | null } | undefined;
    void child.exited.then((e) => {
      exited = e;
      if (this.children.get(name) === child) this.children.delete(name);
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const r = await this.runner.run("wg", ["show", name, "listen-port"], { reject: false });
      if (r.exitCode === 0) break;
      if (exited) {
        const said = wireguardGoLogTail(log);
        throw new KernelError(
          "KERNEL_FAILED",
          `wireguard-go -f ${name} exited (${exited.signal ?? `code ${exited.code}`}) before its UAPI socket answered${said ? `: ${said}` : ""} (${log})`,
        );
      }
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        const said = wireguardGoLogTail(log);
        throw new KernelError(
          "KERNEL_FAILED",
          `wireguard-go -f ${name} did not open /var/run/wireguard/${name}.sock within ${START_TIMEOUT_MS} ms${said ? `; it said: ${said}` : ""} (${log})`,
        );
      }
      await sleep(20);
    }
    this.logger.info("wireguard-go started", { device: name, pid: child.pid, log });
    await this.configure(spec);
  }

  private async configure(spec: WgDeviceSpec): Promise<void> {
    if (!spec.privateKeyFile) throw new KernelError("KERNEL_INVALID", `${spec.name}: no private key file to configure`);
    const args = ["set", spec.name, "private-key", spec.privateKeyFile, "listen-port", String(spec.listenPort)];
    const r = await this.runner.run("wg", args, { reject: false });
    if (r.exitCode !== 0) {
      throw new KernelError(isNoDevice(r.stderr) ? "KERNEL_NOT_FOUND" : "KERNEL_FAILED", `wg ${args.join(" ")} exited ${r.exitCode}: ${firstLine(r.stderr)}`);
    }
  }

  /** Ends this device's wireguard-go, by the PID this agent (or an earlier one) recorded; tolerant when gone. */
  private async stop(name: string): Promise<void> {
    const file = pidFile(this.stateDir, name);
    const child = this.children.get(name);
    if (child) {
      this.children.delete(name);
      child.kill("SIGTERM");
      const ended = await Promise.race([child.exited.then(() => true), sleep(STOP_TIMEOUT_MS).then(() => false)]);
      if (!ended) {
        child.kill("SIGKILL");
        await child.exited;
      }
      rmSync(file, { force: true });
      return;
    }
    const pid = await this.recordedPid(name);
    if (pid !== undefined) {
      await this.runner.run("kill", ["-TERM", String(pid)], { reject: false });
      const deadline = Date.now() + STOP_TIMEOUT_MS;
      while ((await this.isOurs(pid, name)) && Date.now() < deadline) await sleep(20);
      if (await this.isOurs(pid, name)) await this.runner.run("kill", ["-KILL", String(pid)], { reject: false });
      this.logger.info("wireguard-go stopped", { device: name, pid });
    }
    rmSync(file, { force: true });
  }

  /** Is `pid` a live (not zombie) `wireguard-go ... <name>`? PIDs are reused: never signal one blindly. */
  private async isOurs(pid: number, name: string): Promise<boolean> {
    const r = await this.runner.run("ps", ["-o", "stat=,args=", "-p", String(pid)], { reject: false });
    if (r.exitCode !== 0) return false;
    const line = firstLine(r.stdout);
    const [stat = "", ...args] = line.split(/\s+/);
    if (stat.startsWith("Z")) return false; // ended; waiting for its parent (init) to reap it
    return args.some((a) => /(^|\/)wireguard-go$/.test(a)) && args[args.length - 1] === name;
  }
}
