/**
 * LinuxWireGuard: the WireGuardPort on wireguard-go and `wg` (wireguard-tools), run through the ProcessRunner
 * with argv arrays. Reads with `wg show <dev> dump` (parsed in wg-dump.ts), writes with ONE `wg set` per call,
 * keys as files. Errors are classified once, here, by the shared tool-error rules plus wg's own texts.
 */
import { mkdirSync, realpathSync } from "node:fs";
import type { Logger } from "@weft/core";
import type { ManagedDaemonSpec } from "../daemon/port.js";
import { bindMount, isMountPoint, requireOwnMountNamespace } from "../mount-ns.js";
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

/**
 * The managed daemon that runs `device` (WireGuardPort.daemonSpec): wireguard-go in the foreground (our child,
 * reaped by us, not left a zombie for init), detached into its own session so the tunnel outlives the agent,
 * with its PID file and log in `runDir`. `ready` is the adapter's check that its UAPI socket answers.
 */
export function wireguardGoDaemonSpec(device: string, runDir: string, ready: () => Promise<boolean>): ManagedDaemonSpec {
  return {
    name: device,
    command: "wireguard-go",
    args: ["-f", device],
    runDir,
    detached: true,
    readyTimeoutMs: WIREGUARD_GO_READY_TIMEOUT_MS,
    readiness: "its UAPI socket answered",
    ready,
  };
}

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
    return wireguardGoDaemonSpec(device, runDir, async () => (await this.runner.run("wg", ["show", device, "listen-port"], { reject: false })).exitCode === 0);
  }

  async usePrivateSocketDir(dir: string): Promise<void> {
    requireOwnMountNamespace(
      (shares) =>
        `a private WireGuard socket directory was asked for, but the agent is not in a mount namespace of its own (it shares ${shares}, or it cannot tell): ` +
        `binding over ${WIREGUARD_SOCKET_DIR} would hide this machine's WireGuard sockets; run the agent in its own mount namespace (ip netns exec gives it one)`,
    );
    mkdirSync(WIREGUARD_SOCKET_DIR, { recursive: true, mode: 0o755 });
    const target = realpathSync(WIREGUARD_SOCKET_DIR);
    // Already bound (an agent restarted in the same namespace): done.
    if (isMountPoint(target)) return;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    await bindMount(this.runner, dir, target);
    this.logger?.info("wireguard: private UAPI socket directory", { dir, mountedOn: target });
  }

  private async wg(args: string[], command?: string): Promise<void> {
    const r = await this.runner.run("wg", args, { reject: false });
    if (r.exitCode !== 0) throw toolError("wg", args, r, { rules: WG_ERROR_RULES, ...(command ? { command } : {}) });
  }
}
