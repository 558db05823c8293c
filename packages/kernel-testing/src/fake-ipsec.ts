/**
 * FakeIpsec: the IpsecPort over in-memory charons, for unit tests. Each VICI socket path is one charon; a socket
 * answers only while its charon "runs" (`serve`/`stop`, or the charon FakeProgram for FakeManagedDaemons, which
 * starts serving the socket named in the process's STRONGSWAN_CONF and, in libipsec mode, creates `ipsec0` in the
 * process's FakeKernel; its exit takes the socket, the SAs and ipsec0 away, as a real charon's does).
 *
 * It keeps charon's rules the contract checks: load by name replaces, unknown proposals are refused with charon's
 * own words, shared keys are listed by id only, unload ends the SAs. SAs: an initiated connection is CONNECTING
 * until a charon on another socket has the mirror connection (local/remote swapped) and the same shared key;
 * then both sides report it ESTABLISHED with an INSTALLED CHILD_SA (ESP in UDP when either side forces it or
 * the datapath is libipsec). Tests assert on `charons` (the final state), not on calls.
 */
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { type IpsecConnection, type IpsecPort, type IpsecSa, KernelError, type KernelEspSupport, LIBIPSEC_DEVICE, LIBIPSEC_MTU } from "@weft/kernel";
import type { FakeProgram } from "./fake-managed-daemons.js";

/** One fake charon: what it has loaded and which SAs it has. */
export interface FakeCharon {
  readonly socket: string;
  serving: boolean;
  libipsec: boolean;
  readonly conns: Map<string, IpsecConnection>;
  /** Shared keys by id: a digest of the secret (the fake keeps no secret either). */
  readonly keys: Map<string, string>;
  /**
   * Connections with an IKE_SA (initiated here, or answered here); `spis` (in, out) once its CHILD_SA is up, new
   * ones for every SA (a restarted charon's SAs never reuse the old SPIs).
   */
  readonly sas: Map<string, { initiator: boolean; spis?: readonly [number, number] }>;
}

/** Algorithm keywords charon knows, enough for the proposals Weft and its tests use. */
const KNOWN_ALGS = new Set([
  "aes128", "aes192", "aes256", "aes128gcm8", "aes128gcm12", "aes128gcm16", "aes192gcm16", "aes256gcm16", "aes128ctr", "aes256ctr",
  "chacha20poly1305", "3des", "sha1", "sha256", "sha384", "sha512", "md5", "prfsha1", "prfsha256", "prfsha384", "prfsha512", "aesxcbc",
  "modp1024", "modp1536", "modp2048", "modp3072", "modp4096", "modp6144", "modp8192", "ecp256", "ecp384", "ecp521", "x25519", "curve25519",
  "x448", "esn", "noesn",
]);

const validProposal = (p: string) => p.split("-").every((t) => KNOWN_ALGS.has(t.toLowerCase()));
const digest = (s: string) => createHash("sha256").update(s).digest("hex");
const transient = (socket: string, what: string) =>
  new KernelError("KERNEL_TRANSIENT", `${what}: charon is not answering on ${socket} (ECONNREFUSED); is it running?`);

/** Options of FakeIpsec. */
export interface FakeIpsecOptions {
  /** Whether the kernel has ESP (kernelEsp); default false, as on the machines Weft is developed on. */
  readonly kernelEsp?: boolean;
}

export class FakeIpsec implements IpsecPort {
  /** Every charon ever served, by socket path. */
  readonly charons = new Map<string, FakeCharon>();
  private readonly esp: boolean;
  /** SPIs handed out to CHILD_SAs, counting up (charon's come from the kernel; these only need to be unique). */
  private nextSpi = 0xc0000001;

  constructor(options: FakeIpsecOptions = {}) {
    this.esp = options.kernelEsp ?? false;
  }

  /** Starts answering on `socket` with an empty charon (a fresh start loses everything a previous one had). */
  serve(socket: string, libipsec = true): FakeCharon {
    const c: FakeCharon = { socket, serving: true, libipsec, conns: new Map(), keys: new Map(), sas: new Map() };
    this.charons.set(socket, c);
    return c;
  }

  /** The charon on `socket` ends (crash or stop): nothing answers there, its SAs are gone on both sides. */
  stop(socket: string): void {
    const c = this.charons.get(socket);
    if (!c) return;
    c.serving = false;
    for (const name of [...c.sas.keys()]) this.dropSa(c, name);
  }

  /**
   * The program to install as `charon` in a FakeDaemonTable: a start serves the socket named in the
   * STRONGSWAN_CONF file it was given (and makes ipsec0 in libipsec mode); its exit stops it.
   */
  charonProgram(): FakeProgram {
    const socketOf = (env: Readonly<Record<string, string>>) => {
      const conf = env.STRONGSWAN_CONF ? readFileSync(env.STRONGSWAN_CONF, "utf8") : "";
      const socket = /socket\s*=\s*unix:\/\/(\S+)/.exec(conf)?.[1];
      return { socket, libipsec: /\bkernel-libipsec\b/.test(conf) };
    };
    return {
      start: (proc) => {
        const { socket, libipsec } = socketOf(proc.env);
        if (!socket) return { exitCode: 1 };
        proc.log("charon (fake) starting");
        this.serve(socket, libipsec);
        if (libipsec && proc.kernel && !proc.kernel.snapshot().links.some((l) => l.name === LIBIPSEC_DEVICE)) {
          proc.kernel.addExternalLink({ name: LIBIPSEC_DEVICE, kind: "tun", mtu: LIBIPSEC_MTU, up: true });
        }
        return undefined;
      },
      exited: async (proc) => {
        const { socket, libipsec } = socketOf(proc.env);
        if (socket) this.stop(socket);
        if (libipsec && proc.kernel) await proc.kernel.apply([{ op: "link.del", name: LIBIPSEC_DEVICE }]);
      },
    };
  }

  private charon(socket: string, what: string): FakeCharon {
    const c = this.charons.get(socket);
    if (!c || !c.serving) throw transient(socket, what);
    return c;
  }

  async version(socket: string): Promise<string> {
    this.charon(socket, "charon version");
    return "charon 5.9.8 (fake)";
  }

  async loadConnection(socket: string, conn: IpsecConnection): Promise<void> {
    const what = `load IPsec connection ${conn.name}`;
    const c = this.charon(socket, what);
    if (conn.ikeProposal && !validProposal(conn.ikeProposal)) throw new KernelError("KERNEL_INVALID", `${what}: charon refused: invalid value for: proposals, config discarded`);
    if (conn.espProposal && !validProposal(conn.espProposal)) throw new KernelError("KERNEL_INVALID", `${what}: charon refused: invalid value for: esp_proposals, config discarded`);
    c.conns.set(conn.name, { ...conn, localTs: [...conn.localTs], remoteTs: [...conn.remoteTs] });
    if (conn.initiator) c.sas.set(conn.name, { initiator: true });
  }

  async unloadConnection(socket: string, name: string): Promise<void> {
    const c = this.charon(socket, `unload IPsec connection ${name}`);
    if (c.sas.has(name)) this.dropSa(c, name);
    if (!c.conns.delete(name)) throw new KernelError("KERNEL_NOT_FOUND", `unload IPsec connection ${name}: not loaded`);
  }

  async listConnections(socket: string): Promise<IpsecConnection[]> {
    const c = this.charon(socket, "list IPsec connections");
    return [...c.conns.values()].map((x) => ({ name: x.name, localAddr: x.localAddr, remoteAddr: x.remoteAddr, localTs: [...x.localTs], remoteTs: [...x.remoteTs] }));
  }

  async listSas(socket: string): Promise<IpsecSa[]> {
    const c = this.charon(socket, "list IPsec SAs");
    const out: IpsecSa[] = [];
    for (const [name, sa] of c.sas) {
      const conn = c.conns.get(name);
      if (!conn) continue;
      const peer = this.mirror(c, conn);
      const up = peer !== undefined;
      if (up && !peer.charon.sas.has(peer.conn.name)) peer.charon.sas.set(peer.conn.name, { initiator: false });
      if (up && !sa.spis) sa.spis = [this.nextSpi++, this.nextSpi++];
      out.push({
        connection: name,
        state: up ? "ESTABLISHED" : "CONNECTING",
        localAddr: conn.localAddr,
        remoteAddr: conn.remoteAddr,
        initiator: sa.initiator,
        children: up
          ? [
              {
                name,
                state: "INSTALLED",
                localTs: [...conn.localTs],
                remoteTs: [...conn.remoteTs],
                encap: c.libipsec || peer.charon.libipsec || !!conn.encap || !!peer.conn.encap,
                ...(conn.reqid !== undefined ? { reqid: conn.reqid } : {}),
                spiIn: sa.spis![0],
                spiOut: sa.spis![1],
              },
            ]
          : [],
      });
    }
    return out;
  }

  async initiate(socket: string, name: string): Promise<void> {
    const c = this.charon(socket, `initiate IPsec connection ${name}`);
    if (!c.conns.has(name)) throw new KernelError("KERNEL_INVALID", `initiate IPsec connection ${name}: charon refused: CHILD_SA config '${name}' not found`);
    c.sas.set(name, { initiator: true });
  }

  async loadSharedKey(socket: string, id: string, secret: string): Promise<void> {
    this.charon(socket, `load IPsec shared key ${id}`).keys.set(id, digest(secret));
  }

  async unloadSharedKey(socket: string, id: string): Promise<void> {
    if (!this.charon(socket, `unload IPsec shared key ${id}`).keys.delete(id)) throw new KernelError("KERNEL_NOT_FOUND", `unload IPsec shared key ${id}: not loaded`);
  }

  async listSharedKeys(socket: string): Promise<string[]> {
    return [...this.charon(socket, "list IPsec shared keys").keys.keys()];
  }

  /** Run directories a private PID file was asked for (the fake machine has no /var/run to bind over). */
  readonly privatePidFiles = new Set<string>();

  async usePrivatePidFile(runDir: string): Promise<void> {
    this.privatePidFiles.add(runDir);
  }

  async kernelEsp(): Promise<KernelEspSupport> {
    return this.esp ? { available: true } : { available: false, reason: "kernel lacks ESP: ip xfrm state add ... proto esp: Requested type not found. (fake)" };
  }

  /** The serving charon with the mirror of `conn` and a common shared key, if any. */
  private mirror(c: FakeCharon, conn: IpsecConnection): { charon: FakeCharon; conn: IpsecConnection } | undefined {
    const ours = new Set(c.keys.values());
    for (const other of this.charons.values()) {
      if (other === c || !other.serving) continue;
      if (![...other.keys.values()].some((k) => ours.has(k))) continue;
      for (const o of other.conns.values()) {
        if (o.localAddr === conn.remoteAddr && o.remoteAddr === conn.localAddr && same(o.localTs, conn.remoteTs) && same(o.remoteTs, conn.localTs)) {
          return { charon: other, conn: o };
        }
      }
    }
    return undefined;
  }

  private dropSa(c: FakeCharon, name: string): void {
    const conn = c.conns.get(name);
    c.sas.delete(name);
    if (!conn) return;
    const peer = this.mirror(c, conn);
    if (peer && !peer.charon.sas.get(peer.conn.name)?.initiator) peer.charon.sas.delete(peer.conn.name);
  }
}

const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().every((x, i) => x === [...b].sort()[i]);
