/**
 * WireGuardPort: WireGuard devices run by wireguard-go (there is no WireGuard kernel module here; linux-lab §5,
 * docs/adr/0008-wireguard-go.md), read and configured through their UAPI sockets with `wg` (wireguard-tools).
 *
 * What wireguard-go and wg do that surprises:
 *   - The device is a TUN that `wireguard-go -f <ifname>` creates in the network namespace it runs in; killing
 *     wireguard-go deletes the TUN and its socket, deleting the TUN ends wireguard-go. A TUN of that name left
 *     without a wireguard-go cannot be attached to: it must be deleted before a new start.
 *   - The UAPI socket is /var/run/wireguard/<ifname>.sock, hard-coded in both tools. That directory is one per
 *     MOUNT namespace, not per network namespace: two agents on one machine with the same device name would
 *     talk to each other's device unless each binds a private directory over it (`usePrivateSocketDir`).
 *   - Without a socket, `wg` falls back to the kernel's netlink family, which does not exist here: a missing
 *     device reads as "Unable to access interface: Protocol not supported" (classified KERNEL_NOT_FOUND).
 *   - `allowed-ips` in `wg set` replaces a peer's list, and an allowed IP given to one peer is taken from any
 *     other peer that had it. Keys go to `wg` as files (argv is world-readable in /proc), never as arguments.
 *   - Changing `listen-port` rebinds the UDP socket live.
 */
import { createToken } from "@weft/core";
import type { ManagedDaemonSpec } from "../daemon/port.js";
import type { WgDump } from "./wg-dump.js";

/** Where wireguard-go and wg put and look for UAPI sockets; hard-coded in both. */
export const WIREGUARD_SOCKET_DIR = "/var/run/wireguard";

/** The configuration of one peer, as `setPeers` writes it (every field replaces what the peer had). */
export interface WireGuardPeerConfig {
  readonly publicKey: string;
  /** `198.18.0.2:51820` or `[2001:2::2]:51821`; left as it is when undefined. */
  readonly endpoint?: string;
  /** CIDRs; replaces the peer's list (and takes each from any other peer that had it). */
  readonly allowedIPs: readonly string[];
  /** Seconds; 0 = off. */
  readonly persistentKeepalive: number;
  /** A file (0600) holding the pre-shared key; undefined clears the peer's PSK. */
  readonly presharedKeyFile?: string;
}

/** One peer change of a `setPeers` call. */
export type WireGuardPeerChange =
  | { readonly op: "set"; readonly peer: WireGuardPeerConfig }
  | { readonly op: "remove"; readonly publicKey: string };

/** The interface settings `configure` writes. */
export interface WireGuardDeviceConfig {
  /** A file (0600) holding the device's private key in wg's base64 form. */
  readonly privateKeyFile: string;
  readonly listenPort: number;
}

/**
 * Reads and configures WireGuard devices. Implemented by LinuxWireGuard (wg through the ProcessRunner) and
 * faked by FakeWireGuard in @weft/kernel-testing; both pass the same contract suite. Errors are KernelErrors
 * (KERNEL_NOT_FOUND when no wireguard-go answers for the device), or WeftError PROCESS_MISSING naming
 * wireguard-tools when `wg` is not installed.
 */
export interface WireGuardPort {
  /**
   * The device as its wireguard-go reports it (`wg show <dev> dump`): own public key, listen port, peers (a
   * peer's pre-shared key is in it: compare it, never log it). Undefined when no wireguard-go answers for it.
   */
  show(device: string): Promise<WgDump | undefined>;
  /** Sets the private key (read from its file) and the listen port. */
  configure(device: string, config: WireGuardDeviceConfig): Promise<void>;
  /**
   * Applies every change with ONE `wg set` (a 500-node cluster costs one process per pass, not 500). All or
   * nothing as far as the caller can tell: one outcome for the whole call.
   */
  setPeers(device: string, changes: readonly WireGuardPeerChange[]): Promise<void>;
  /**
   * The managed daemon that runs `device` (wireguard-go in the foreground, detached from the agent so the
   * tunnel outlives it), with its PID file and log in `runDir`, ready once its UAPI socket answers. Start it
   * through the ManagedDaemonPort.
   */
  daemonSpec(device: string, runDir: string): ManagedDaemonSpec;
  /**
   * Binds `dir` (created 0700) over /var/run/wireguard in the agent's OWN mount namespace, so agents in
   * different network namespaces on one machine each have their own sockets. Idempotent (a directory already
   * mounted there is left). Refuses with CONFIG_INVALID when the agent shares its parent's or PID 1's mount
   * namespace (the bind would hide the machine's sockets), or when it cannot tell.
   */
  usePrivateSocketDir(dir: string): Promise<void>;
}

/** The agent's WireGuardPort. */
export const WIREGUARD = createToken<WireGuardPort>("weft.wireguard");
