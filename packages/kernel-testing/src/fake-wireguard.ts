/**
 * FakeWireGuard: the WireGuardPort over an in-memory model of wireguard-go and its UAPI sockets, for unit
 * tests. A FakeWireGuardHost is one machine's MOUNT namespace (its /var/run/wireguard, shared by every network
 * namespace on it, as the real directory is); it installs a fake `wireguard-go` in a FakeDaemonTable:
 *   - `wireguard-go -f <dev>` started through FakeManagedDaemons creates the TUN in the starting agent's
 *     FakeKernel and a device in the host's table; its exit (stop, crash) removes both. It fails (exit 1,
 *     with an error line in its log) when the name's socket is taken or a non-TUN link has the name (a
 *     persistent TUN of the name is attached to, as the real one does);
 *   - `show`/`configure`/`setPeers` read and write that table the way wg does: the dump's fields, allowed IPs
 *     moving between peers, a PSK read from its file (/dev/null clears it), KERNEL_NOT_FOUND for a device no
 *     wireguard-go serves, and a device of another network namespace answering when the name is shared.
 * Tests assert on the host's `devices` (final state); `setCalls` counts `wg set` runs per device, for the
 * "one process per pass" property.
 */
import { readFileSync } from "node:fs";
import { createPrivateKey, createPublicKey } from "node:crypto";
import {
  KernelError,
  type ManagedDaemonSpec,
  type WgDump,
  type WireGuardDeviceConfig,
  type WireGuardPeerChange,
  type WireGuardPort,
  wireguardGoDaemonSpec,
} from "@weft/kernel";
import type { FakeKernel } from "./fake-kernel.js";
import { FakeDaemonTable, type FakeDaemonProcess, FakeManagedDaemons, type FakeManagedDaemonsOptions } from "./fake-managed-daemons.js";

/** A peer as the fake wireguard-go holds it. */
export interface FakeWgPeer {
  publicKey: string;
  /** The key itself (a secret in real life). */
  presharedKey?: string;
  endpoint?: string;
  allowedIPs: string[];
  persistentKeepalive: number;
}

/** A device served by a fake wireguard-go. */
export interface FakeWgDevice {
  readonly name: string;
  /** The fake wireguard-go process serving it. */
  readonly pid: number;
  /** The network namespace its TUN is in. */
  readonly kernel: FakeKernel;
  privateKey?: string;
  listenPort: number;
  readonly peers: Map<string, FakeWgPeer>;
  /** `wg set` runs that wrote to this device (to check "one process per pass"). */
  setCalls: number;
}

/** PKCS#8 DER prefix of an X25519 private key; the raw 32 bytes follow. */
const X25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");

/** The public key of a wg-format private key, as the real wireguard-go reports it. */
function publicKeyOf(privateKeyB64: string): string {
  const der = Buffer.concat([X25519_PKCS8_PREFIX, Buffer.from(privateKeyB64, "base64")]);
  const jwk = createPublicKey(createPrivateKey({ key: der, format: "der", type: "pkcs8" })).export({ format: "jwk" });
  return Buffer.from(jwk.x!, "base64url").toString("base64");
}

const readKey = (file: string) => readFileSync(file, "utf8").trim() || undefined;

/** One machine's WireGuard sockets and its fake wireguard-go (see the file comment). */
export class FakeWireGuardHost {
  readonly devices = new Map<string, FakeWgDevice>();
  /** Directories bound over /var/run/wireguard with usePrivateSocketDir (one per agent mount namespace). */
  readonly privateSocketDirs = new Set<string>();

  constructor(
    /** The machine's processes; wireguard-go is installed in it. */
    readonly daemons: FakeDaemonTable = new FakeDaemonTable(),
  ) {
    daemons.install("wireguard-go", {
      start: (proc) => this.started(proc),
      exited: (proc) => this.ended(proc),
    });
  }

  /** The next `count` wireguard-go starts log `message` after their banner and exit with code 1. */
  failStarts(count: number, message: string): void {
    this.daemons.failStarts("wireguard-go", count, message);
  }

  /** Ends a device's wireguard-go as a crash would (the TUN goes with it). */
  crash(name: string): Promise<void> {
    const d = this.devices.get(name);
    return d ? this.daemons.crash(d.pid) : Promise.resolve();
  }

  /** The WireGuardPort of an agent whose network namespace is `kernel`. */
  port(kernel: FakeKernel): FakeWireGuard {
    return new FakeWireGuard(this, kernel);
  }

  /**
   * The two ports an agent on this host uses: a NEW FakeManagedDaemons on the host's process table (a
   * restarted agent adopts what runs) and a FakeWireGuard.
   */
  agent(kernel: FakeKernel, options: Omit<FakeManagedDaemonsOptions, "kernel"> = {}): { daemons: FakeManagedDaemons; wireguard: FakeWireGuard } {
    return { daemons: new FakeManagedDaemons(this.daemons, { ...options, kernel }), wireguard: this.port(kernel) };
  }

  private async started(proc: FakeDaemonProcess): Promise<void | { exitCode: number }> {
    const name = proc.args[proc.args.length - 1] ?? "";
    const kernel = proc.kernel;
    proc.log("┌──────────────────────────────────────────────────────┐");
    proc.log("│   Running wireguard-go is not required (fake banner) │");
    proc.log("└──────────────────────────────────────────────────────┘");
    if (!kernel) {
      proc.log(`ERROR: (${name}) no network namespace to create the TUN in (FakeManagedDaemons needs { kernel })`);
      return { exitCode: 1 };
    }
    if (this.devices.has(name)) {
      proc.log(`ERROR: (${name}) UAPI listen error: unix socket in use`);
      return { exitCode: 1 };
    }
    // A persistent TUN of the name (`ip tuntap add`) is attached to, as the real one does; otherwise it makes one.
    const existing = (await kernel.listLinks()).find((l) => l.name === name);
    if (existing && existing.kind !== "tun") {
      proc.log(`ERROR: (${name}) Failed to create TUN device: device or resource busy`);
      return { exitCode: 1 };
    }
    if (!existing) kernel.addExternalLink({ name, kind: "tun", tun: { mode: "tun" }, mtu: 1420 });
    this.devices.set(name, { name, pid: proc.pid, kernel, listenPort: 0, peers: new Map(), setCalls: 0 });
  }

  private async ended(proc: FakeDaemonProcess): Promise<void> {
    const name = proc.args[proc.args.length - 1] ?? "";
    const d = this.devices.get(name);
    if (d?.pid !== proc.pid) return;
    this.devices.delete(name);
    await d.kernel.apply([{ op: "link.del", name }]);
  }
}

/** The WireGuardPort of one agent on a FakeWireGuardHost. */
export class FakeWireGuard implements WireGuardPort {
  constructor(
    readonly host: FakeWireGuardHost,
    readonly kernel: FakeKernel,
  ) {}

  async show(device: string): Promise<WgDump | undefined> {
    const d = this.host.devices.get(device);
    if (!d) return undefined;
    return {
      ...(d.privateKey ? { publicKey: publicKeyOf(d.privateKey) } : {}),
      listenPort: d.listenPort,
      peers: [...d.peers.values()].map((p) => ({
        publicKey: p.publicKey,
        ...(p.presharedKey ? { presharedKey: p.presharedKey } : {}),
        ...(p.endpoint ? { endpoint: p.endpoint } : {}),
        allowedIPs: [...p.allowedIPs].sort(),
        latestHandshake: 0,
        persistentKeepalive: p.persistentKeepalive,
      })),
    };
  }

  async configure(device: string, config: WireGuardDeviceConfig): Promise<void> {
    const d = this.device(device, `wg set ${device} private-key ${config.privateKeyFile} listen-port ${config.listenPort}`);
    if (!Number.isInteger(config.listenPort) || config.listenPort < 0 || config.listenPort > 65535) {
      throw new KernelError("KERNEL_INVALID", `wg set ${device} listen-port ${config.listenPort} exited 1: Invalid port`);
    }
    d.privateKey = readKey(config.privateKeyFile);
    d.listenPort = config.listenPort;
  }

  async setPeers(device: string, changes: readonly WireGuardPeerChange[]): Promise<void> {
    if (changes.length === 0) return;
    const d = this.device(device, `wg set ${device} (${changes.length} peer change(s))`);
    d.setCalls++;
    for (const c of changes) {
      if (c.op === "remove") {
        d.peers.delete(c.publicKey);
        continue;
      }
      const p = c.peer;
      const peer = d.peers.get(p.publicKey) ?? { publicKey: p.publicKey, allowedIPs: [], persistentKeepalive: 0 };
      d.peers.set(p.publicKey, peer);
      if (p.endpoint) peer.endpoint = p.endpoint;
      peer.persistentKeepalive = p.persistentKeepalive;
      const psk = p.presharedKeyFile ? readKey(p.presharedKeyFile) : undefined;
      if (psk) peer.presharedKey = psk;
      else delete peer.presharedKey;
      const ips = [...p.allowedIPs];
      // An allowed IP belongs to one peer: giving it to this one takes it from any other.
      for (const other of d.peers.values()) if (other !== peer) other.allowedIPs = other.allowedIPs.filter((x) => !ips.includes(x));
      peer.allowedIPs = ips;
    }
  }

  daemonSpec(device: string, runDir: string): ManagedDaemonSpec {
    return wireguardGoDaemonSpec(device, runDir, async () => this.host.devices.has(device));
  }

  async usePrivateSocketDir(dir: string): Promise<void> {
    this.host.privateSocketDirs.add(dir);
  }

  private device(device: string, command: string): FakeWgDevice {
    const d = this.host.devices.get(device);
    if (!d) throw new KernelError("KERNEL_NOT_FOUND", `${command} exited 1: Unable to access interface: No such file or directory`);
    return d;
  }
}
