/**
 * Kind "wg-device": a WireGuard device run by a wireguard-go process, as a reconciled kernel object. This file
 * only describes and diffs; the tools are behind ports: WireGuardPort (`wg`, the UAPI socket directory) and
 * ManagedDaemonPort (wireguard-go's process: PID file, adoption, restart backoff, stop by PID), both in
 * @weft/kernel.
 *
 * What wireguard-go does that shapes this reconciler (details in @weft/kernel's wireguard/port.ts):
 *   - It creates the TUN itself (and deletes it when it ends): this kind comes BEFORE links, addresses and
 *     routes in a pass (`before`), and the engine reads those kinds again after it wrote, so the links kind
 *     finds the TUN and only sets its MTU and brings it up.
 *   - The UAPI socket directory is one per MOUNT namespace: a socket that answers while no wireguard-go this
 *     agent (or an earlier one) recorded is alive is another agent's device ("foreign"), reported and left
 *     alone (docs/adr/0008-wireguard-go.md). With PRIVATE_SOCKET_DIR_ENV each agent binds its own directory.
 *   - A TUN of the name left without a live wireguard-go is deleted before a new start (the daemon's `prepare`).
 *   - wireguard-go runs detached: close("restart") keeps the tunnel up and the next agent adopts the process
 *     by the PID in <STATE_DIR>/<ifname>.pid; teardown ends it by that PID. Never by name.
 *
 * Desired: name, listen port, and the public key of the private key file. Actual: the same, read back from the
 * device. Drift in port or key is fixed in place (configure rebinds the UDP socket live); a dead device is
 * restarted.
 */
import { join } from "node:path";
import { type Logger, WeftError, isWeftError } from "@weft/core";
import {
  type KernelPort,
  type ManagedDaemonPort,
  type ManagedDaemonSpec,
  type OpResult,
  WIREGUARD_SOCKET_DIR,
  type WgDump,
  type WireGuardPort,
  asKernelError,
  daemonLogFile,
  daemonPidFile,
  KernelError,
} from "@weft/kernel";
import type { Drift, ObjectReconciler } from "@weft/reconcile";

export const WG_DEVICE_KIND = "wg-device";
/** Every name a wireguard device of Weft's may have (for prune and `weftd --teardown`, which declare none). */
export const WG_DEVICE_NAMES = ["weft-wg", "weft-wg-v6"] as const;
/** Where wireguard-go and wg put and look for UAPI sockets; hard-coded in both. */
export const SOCKET_DIR = WIREGUARD_SOCKET_DIR;
/**
 * Environment variable for labs that run several agents on one machine, one per network namespace: when it is
 * "1", the agent bind-mounts <STATE_DIR>/wireguard-sockets over /var/run/wireguard in its OWN mount namespace
 * (`ip netns exec` gives each command one), so every node has its own socket directory and `weft-wg` is free
 * in each. Refused when the agent shares PID 1's mount namespace (it would hide the machine's sockets).
 * See docs/adr/0008-wireguard-go.md.
 */
export const PRIVATE_SOCKET_DIR_ENV = "WEFT_WIREGUARD_PRIVATE_SOCKET_DIR";

export interface WgDeviceSpec {
  readonly name: string;
  readonly listenPort: number;
  /** The public key of `privateKeyFile`: what the device must report. */
  readonly publicKey: string;
  /** Path of the private key (0600); only in desired objects. */
  readonly privateKeyFile?: string;
  /** Read back only: "running" (socket answers, our wireguard-go), "dead" (link without a live wireguard-go), "foreign". */
  readonly state?: "running" | "dead" | "foreign";
}

export type WgDeviceOp =
  | { readonly op: "wg-device.start"; readonly spec: WgDeviceSpec }
  | { readonly op: "wg-device.configure"; readonly spec: WgDeviceSpec }
  | { readonly op: "wg-device.stop"; readonly name: string };

/** `<stateDir>/<ifname>.pid`: the PID of the device's wireguard-go. */
export const pidFile = (stateDir: string, name: string) => daemonPidFile({ name, runDir: stateDir });
/** `<stateDir>/<ifname>.log`: what the device's wireguard-go printed. */
export const logFile = (stateDir: string, name: string) => daemonLogFile({ name, runDir: stateDir });

export class WgDeviceReconciler implements ObjectReconciler<WgDeviceSpec, WgDeviceOp> {
  readonly kind = WG_DEVICE_KIND;
  /** wireguard-go creates (and on exit deletes) the TUN: everything that hangs off it comes after. */
  readonly before = ["links", "addresses", "routes"] as const;

  private socketDir?: Promise<void>;

  constructor(
    private readonly wireguard: WireGuardPort,
    private readonly daemons: ManagedDaemonPort,
    /** The agent's network namespace: a TUN left without a wireguard-go is deleted through it. */
    private readonly kernel: KernelPort,
    private readonly logger: Logger,
    private readonly stateDir: string,
    /** Bind a private socket directory first (PRIVATE_SOCKET_DIR_ENV). */
    private readonly privateSocketDir = false,
  ) {}

  /** Makes sure `wg` and wireguard-go see this agent's socket directory (once; retried after a failure). */
  ensureSocketDir(): Promise<void> {
    if (!this.privateSocketDir) return Promise.resolve();
    this.socketDir ??= this.wireguard.usePrivateSocketDir(join(this.stateDir, "wireguard-sockets")).catch((err: unknown) => {
      this.socketDir = undefined;
      if (isWeftError(err, "CONFIG_INVALID")) {
        throw new WeftError("CONFIG_INVALID", `${PRIVATE_SOCKET_DIR_ENV}=1: ${err.message}, or unset ${PRIVATE_SOCKET_DIR_ENV}`, { cause: err });
      }
      throw err;
    });
    return this.socketDir;
  }

  /** The managed daemon that serves device `name`. */
  private daemon(name: string): ManagedDaemonSpec {
    return {
      ...this.wireguard.daemonSpec(name, this.stateDir),
      // A TUN of the name without a live wireguard-go (it died, or the links kind made one): replaced.
      prepare: async () => {
        if (!(await this.kernel.listLinks()).some((l) => l.name === name)) return;
        const [r] = await this.kernel.apply([{ op: "link.del", name }]);
        if (r && !r.ok && r.error.code !== "KERNEL_NOT_FOUND") throw r.error;
      },
    };
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
      const dump = await this.show(name, desired.length > 0);
      if (!dump) {
        // No live wireguard-go for this name; a TUN left with the name cannot be adopted, only replaced.
        if (links.has(name)) out.push({ name, listenPort: 0, publicKey: "", state: "dead" });
        continue;
      }
      // A socket answers. It is ours only if the wireguard-go this agent (or an earlier one) recorded is alive:
      // the socket directory is shared by every network namespace in the mount namespace, so it may be the
      // device of another agent on this machine. That one is reported and never touched (never reconfigured:
      // that would overwrite another node's key).
      if (!(await this.daemons.find(this.daemon(name))).running) {
        out.push({ name, listenPort: 0, publicKey: "", state: "foreign" });
        continue;
      }
      out.push({ name, listenPort: dump.listenPort, publicKey: dump.publicKey ?? "", state: "running" });
    }
    return out;
  }

  /**
   * The device as wg reads it. Without wg installed, nothing can be configured (a desired device fails, loudly),
   * but a teardown on such a machine still finds a leftover TUN (as "dead") and ends its wireguard-go by PID.
   */
  private async show(name: string, needed: boolean): Promise<WgDump | undefined> {
    try {
      return await this.wireguard.show(name);
    } catch (err) {
      if (needed || !isWeftError(err, "PROCESS_MISSING")) throw err;
      return undefined;
    }
  }

  /** Whether `name`'s UAPI socket is served by the wireguard-go Weft recorded (peers may be read and written). */
  async owns(name: string): Promise<boolean> {
    await this.ensureSocketDir();
    return (await this.daemons.find(this.daemon(name))).running;
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
      `${SOCKET_DIR}/${d.name}.sock answers, but not from the wireguard-go recorded in ${pidFile(this.stateDir, d.name)}: ` +
      `another agent on this machine probably runs ${d.name} in another network namespace (the socket directory is shared per ` +
      `mount namespace). Run each agent in its own mount namespace with a private ${SOCKET_DIR} (docs/adr/0008-wireguard-go.md), ` +
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
        else await this.daemons.stop(this.daemon(op.name));
        results.push({ ok: true });
      } catch (err) {
        results.push({ ok: false, error: asKernelError(err, `${op.op} ${op.op === "wg-device.stop" ? op.name : op.spec.name}`) });
      }
    }
    return results;
  }

  /** Adopts or (re)starts the device's wireguard-go (a hung one is replaced), then configures it. */
  private async start(spec: WgDeviceSpec): Promise<void> {
    const st = await this.daemons.ensure(this.daemon(spec.name));
    if (!st.adopted) this.logger.info("wireguard-go started", { device: spec.name, pid: st.pid, log: logFile(this.stateDir, spec.name) });
    await this.configure(spec);
  }

  private async configure(spec: WgDeviceSpec): Promise<void> {
    if (!spec.privateKeyFile) throw new KernelError("KERNEL_INVALID", `${spec.name}: no private key file to configure`);
    await this.wireguard.configure(spec.name, { privateKeyFile: spec.privateKeyFile, listenPort: spec.listenPort });
  }
}
