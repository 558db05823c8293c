/**
 * LinuxWireGuard: the WireGuardPort on wireguard-go and `wg` (wireguard-tools), run through the ProcessRunner
 * with argv arrays. Reads with `wg show <dev> dump` (parsed in wg-dump.ts), writes with ONE `wg set` per call,
 * keys as files. Errors are classified once, here, by the shared tool-error rules plus wg's own texts.
 */
import { mkdirSync, readFileSync, readlinkSync, realpathSync } from "node:fs";
import { type Logger, WeftError } from "@weft/core";
import type { ManagedDaemonSpec } from "../daemon/port.js";
import type { ProcessRunner } from "../process.js";
import { type ToolErrorRules, toolError } from "../tool-errors.js";
import { WIREGUARD_SOCKET_DIR, type WireGuardDeviceConfig, type WireGuardPeerChange, type WireGuardPeerConfig, type WireGuardPort } from "./port.js";
import { type WgDump, parseWgDump } from "./wg-dump.js";

/**
 * wg's texts for a device nobody serves: "no such device", whatever errno it prints (without a socket wg falls
 * back to the kernel's netlink family, which does not exist here: "Protocol not supported").
 */
export const WG_ERROR_RULES: ToolErrorRules = [[/Unable to (access|modify) interface: (Protocol not supported|No such device|No such file or directory)|No such device/i, "KERNEL_NOT_FOUND"]];

/** How long wireguard-go may take to open its socket (53–70 ms measured; linux-lab §5). */
export const WIREGUARD_GO_READY_TIMEOUT_MS = 5000;

/** Options of LinuxWireGuard. */
export interface LinuxWireGuardOptions {
  readonly runner: ProcessRunner;
  /** The private socket directory bind is logged at info. */
  readonly logger?: Logger;
}

/** The argv words that configure one peer (keys as files: `/dev/null`, an empty key file, clears a PSK). */
export function wgPeerArgs(p: WireGuardPeerConfig): string[] {
  return [
    "peer",
    p.publicKey,
    ...(p.endpoint ? ["endpoint", p.endpoint] : []),
    "persistent-keepalive",
    p.persistentKeepalive > 0 ? String(p.persistentKeepalive) : "off",
    "allowed-ips",
    p.allowedIPs.join(","),
    "preshared-key",
    p.presharedKeyFile ?? "/dev/null",
  ];
}

/** The WireGuardPort on wireguard-go and wg (see the file comment). */
export class LinuxWireGuard implements WireGuardPort {
  private readonly runner: ProcessRunner;
  private readonly logger: Logger | undefined;

  constructor(options: LinuxWireGuardOptions) {
    this.runner = options.runner;
    this.logger = options.logger;
  }

  async show(device: string): Promise<WgDump | undefined> {
    const args = ["show", device, "dump"];
    const r = await this.runner.run("wg", args, { reject: false });
    if (r.exitCode === 0) return parseWgDump(r.stdout);
    const err = toolError("wg", args, r, { rules: WG_ERROR_RULES });
    if (err.code === "KERNEL_NOT_FOUND") return undefined;
    throw err;
  }

  async configure(device: string, config: WireGuardDeviceConfig): Promise<void> {
    await this.wg(["set", device, "private-key", config.privateKeyFile, "listen-port", String(config.listenPort)]);
  }

  async setPeers(device: string, changes: readonly WireGuardPeerChange[]): Promise<void> {
    if (changes.length === 0) return;
    const args = ["set", device];
    for (const c of changes) args.push(...(c.op === "set" ? wgPeerArgs(c.peer) : ["peer", c.publicKey, "remove"]));
    await this.wg(args, `wg set ${device} (${changes.length} peer change(s))`);
  }

  daemonSpec(device: string, runDir: string): ManagedDaemonSpec {
    return {
      name: device,
      command: "wireguard-go",
      // Foreground: our child (reaped by us, not left a zombie for init), detached into its own session.
      args: ["-f", device],
      runDir,
      detached: true,
      readyTimeoutMs: WIREGUARD_GO_READY_TIMEOUT_MS,
      readiness: "its UAPI socket answered",
      ready: async () => (await this.runner.run("wg", ["show", device, "listen-port"], { reject: false })).exitCode === 0,
    };
  }

  async usePrivateSocketDir(dir: string): Promise<void> {
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
        `a private WireGuard socket directory was asked for, but the agent is not in a mount namespace of its own (it shares ${shared === 1 ? "PID 1's" : "its parent's"}, or it cannot tell): ` +
          `binding over ${WIREGUARD_SOCKET_DIR} would hide this machine's WireGuard sockets; run the agent in its own mount namespace (ip netns exec gives it one)`,
      );
    }
    mkdirSync(WIREGUARD_SOCKET_DIR, { recursive: true, mode: 0o755 });
    const target = realpathSync(WIREGUARD_SOCKET_DIR);
    // mountinfo field 5 is the mount point. Already bound (an agent restarted in the same namespace): done.
    if (readFileSync("/proc/self/mountinfo", "utf8").split("\n").some((l) => l.split(" ")[4] === target)) return;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const args = ["--bind", dir, target];
    const r = await this.runner.run("mount", args, { reject: false });
    if (r.exitCode !== 0) throw toolError("mount", args, r);
    this.logger?.info("wireguard: private UAPI socket directory", { dir, mountedOn: target });
  }

  private async wg(args: string[], command?: string): Promise<void> {
    const r = await this.runner.run("wg", args, { reject: false });
    if (r.exitCode !== 0) throw toolError("wg", args, r, { rules: WG_ERROR_RULES, ...(command ? { command } : {}) });
  }
}
