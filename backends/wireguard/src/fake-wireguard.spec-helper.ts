/**
 * A stateful stand-in for wireguard-go and wg on a FakeKernel, for unit and conformance tests: `wireguard-go -f
 * <dev>` creates the TUN in the kernel and a device table, `wg show|set` read and write that table the way the
 * real tools do (dump format, allowed-ips moving between peers, "Unable to access interface" for a missing
 * socket), `ps`/`kill` see the fake processes by PID. Tests assert on the final table, not on calls.
 */
import { appendFileSync, readFileSync } from "node:fs";
import type { ChildHandle, RunOptions, SpawnOptions } from "@weft/kernel";
import { type FakeKernel, FakeProcessRunner } from "@weft/kernel-testing";
import { publicKeyOf } from "./keys.js";

export interface FakePeer {
  publicKey: string;
  presharedKey?: string;
  endpoint?: string;
  allowedIPs: string[];
  persistentKeepalive: number;
}

export interface FakeDevice {
  readonly name: string;
  readonly pid: number;
  privateKey?: string;
  listenPort: number;
  readonly peers: Map<string, FakePeer>;
  /** `wg` processes that wrote to this device (to check "one process per pass"). */
  setCalls: number;
}

const NO_DEVICE = { exitCode: 1, stderr: "Unable to access interface: No such file or directory\n" };

/** The UAPI sockets of one machine (shared by all its network namespaces, as /var/run/wireguard is). */
export class FakeWireguardHost {
  readonly devices = new Map<string, FakeDevice>();
  private readonly handles = new Map<number, ChildHandle>();
  /** Starts still to fail (wireguard-go exits 1 after logging `failure`), as a TUN or socket problem would. */
  private failing = 0;
  private failure = "";

  /** The next `count` wireguard-go starts write `message` to their log and exit with code 1. */
  failStarts(count: number, message: string): void {
    this.failing = count;
    this.failure = message;
  }

  /** A ProcessRunner for an agent whose network namespace is `kernel`. */
  runner(kernel: FakeKernel): FakeProcessRunner {
    const host = this;
    class Runner extends FakeProcessRunner {
      override spawn(file: string, args: readonly string[], options: SpawnOptions = {}): ChildHandle {
        const failsBefore = host.failing;
        const handle = super.spawn(file, args, options);
        if (file === "wireguard-go" && host.failing === failsBefore) host.started(kernel, args[args.length - 1]!, handle);
        return handle;
      }
    }
    const r = new Runner();
    r.onSpawn("wireguard-go", (_args, options) => {
      if (this.failing === 0) return undefined;
      this.failing--;
      // What the real one prints before a setup failure: its banner, then one error line.
      if (options.stdoutFile) appendFileSync(options.stdoutFile, `┌────┐\n│ banner │\n└────┘\nERROR: (weft-wg) ${new Date().toISOString()} ${this.failure}\n`);
      return { exitCode: 1 };
    });
    r.on("wg", (args, options) => this.wg(args, options));
    r.on("ps", (args) => {
      const pid = Number(args[args.length - 1]);
      const dev = [...this.devices.values()].find((d) => d.pid === pid);
      return dev ? { stdout: `Ssl  wireguard-go -f ${dev.name}\n` } : { exitCode: 1 };
    });
    r.on("kill", (args) => {
      const handle = this.handles.get(Number(args[args.length - 1]));
      if (!handle) return { exitCode: 1, stderr: "kill: No such process\n" };
      handle.kill(args[0] === "-KILL" ? "SIGKILL" : "SIGTERM");
      return {};
    });
    return r;
  }

  /** Ends a device's wireguard-go as a crash would (the TUN goes with it). */
  crash(name: string): void {
    const d = this.devices.get(name);
    if (d) this.handles.get(d.pid)?.kill("SIGKILL");
  }

  private started(kernel: FakeKernel, name: string, handle: ChildHandle): void {
    void kernel.listLinks().then((links) => {
      if (links.some((l) => l.name === name) || this.devices.has(name)) {
        // The real one fails on a TUN it cannot attach to, or a socket name in use.
        handle.kill("SIGTERM");
        return;
      }
      kernel.addExternalLink({ name, kind: "tun", tun: { mode: "tun" }, mtu: 1420 });
      this.devices.set(name, { name, pid: handle.pid, listenPort: 0, peers: new Map(), setCalls: 0 });
      this.handles.set(handle.pid, handle);
    });
    void handle.exited.then(async () => {
      this.handles.delete(handle.pid);
      if (this.devices.get(name)?.pid !== handle.pid) return;
      this.devices.delete(name);
      await kernel.apply([{ op: "link.del", name }]);
    });
  }

  private wg(args: readonly string[], _options: RunOptions) {
    const [verb, name] = args;
    const dev = name ? this.devices.get(name) : undefined;
    if (!dev) return NO_DEVICE;
    if (verb === "show") {
      if (args[2] === "listen-port") return { stdout: `${dev.listenPort}\n` };
      if (args[2] === "public-key") return { stdout: dev.privateKey ? `${publicKeyOf(dev.privateKey)}\n` : "(none)\n" };
      if (args[2] !== "dump") return { exitCode: 1, stderr: "Invalid show subcommand\n" };
      const head = [dev.privateKey ?? "(none)", dev.privateKey ? publicKeyOf(dev.privateKey) : "(none)", String(dev.listenPort), "off"].join("\t");
      const peers = [...dev.peers.values()].map((p) =>
        [p.publicKey, p.presharedKey ?? "(none)", p.endpoint ?? "(none)", p.allowedIPs.join(",") || "(none)", "0", "0", "0", p.persistentKeepalive ? String(p.persistentKeepalive) : "off"].join("\t"),
      );
      return { stdout: [head, ...peers].map((l) => `${l}\n`).join("") };
    }
    if (verb !== "set") return { exitCode: 1, stderr: `Invalid subcommand: '${verb}'\n` };
    dev.setCalls++;
    const readKey = (file: string) => readFileSync(file, "utf8").trim() || undefined;
    let i = 2;
    let peer: FakePeer | undefined;
    while (i < args.length) {
      const word = args[i++]!;
      const value = args[i];
      if (!peer && word === "private-key") dev.privateKey = readKey(args[i++]!);
      else if (!peer && word === "listen-port") dev.listenPort = Number(args[i++]);
      else if (word === "peer") {
        const pk = args[i++]!;
        peer = dev.peers.get(pk) ?? { publicKey: pk, allowedIPs: [], persistentKeepalive: 0 };
        dev.peers.set(pk, peer);
      } else if (peer && word === "remove") dev.peers.delete(peer.publicKey);
      else if (peer && word === "endpoint") (peer.endpoint = value), i++;
      else if (peer && word === "persistent-keepalive") (peer.persistentKeepalive = value === "off" ? 0 : Number(value)), i++;
      else if (peer && word === "preshared-key") {
        const k = readKey(value!);
        if (k) peer.presharedKey = k;
        else delete peer.presharedKey;
        i++;
      } else if (peer && word === "allowed-ips") {
        const ips = value!.split(",").filter(Boolean);
        // An allowed IP belongs to one peer: giving it to this one takes it from any other.
        for (const other of dev.peers.values()) if (other !== peer) other.allowedIPs = other.allowedIPs.filter((x) => !ips.includes(x));
        peer.allowedIPs = ips;
        i++;
      } else return { exitCode: 1, stderr: `Invalid argument: ${word}\n` };
    }
    return {};
  }
}
