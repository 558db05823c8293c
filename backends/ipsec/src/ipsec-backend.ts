/**
 * IpsecBackend: pod traffic between nodes in IKEv2/ESP tunnels negotiated by strongSwan's charon with a
 * pre-shared key (Flannel's ipsec backend, reference/flannel.md §3.4, on Weft's ports; docs/backends/ipsec.md).
 *
 * What it encapsulates: pod packets in ESP tunnel mode between the nodes' PublicIPs, 77 bytes per packet, + 8 in
 * UDP 4500 (UDPEncap, and always in libipsec mode). Two datapaths, chosen at start (Backend.Mode, default auto:
 * kernel when this kernel has ESP, IpsecPort.kernelEsp):
 *   kernel    charon installs SAs and policies into XFRM, and routes into table 220 (install_routes);
 *   libipsec  charon's kernel-libipsec does ESP in userspace through the TUN `ipsec0` (MTU fixed at 1400);
 *             Weft routes each peer subnet via ipsec0.
 *
 * Local objects (owner "local"):
 *   ipsec-charon  the node's charon: own strongswan.conf (STRONGSWAN_CONF), VICI socket and run directory
 *                 <STATE_DIR>/ipsec, detached so an agent restart adopts it with its SAs;
 *   ipsec-secret  the PSK, loaded over VICI (never argv, never logged) from a 0600 file: PSKFile, or a copy of
 *                 the inline PSK in <STATE_DIR>/ipsec/psk.
 *   ipsec-xfrm    kernel mode only: no XFRM state or policy with Weft's reqids that charon does not hold (what a
 *                 charon killed with -9 leaves); every CHILD_SA carries reqidFor(peer subnet) (./xfrm-sweep.ts).
 * Per peer (owner = the peer's subnet key):
 *   ipsec-conn    one connection per node pair; the node with the LOWER PublicIP initiates (start_action start),
 *                 the other only responds, so a pair never gets duplicate CHILD_SAs;
 *   route         libipsec only: the peer's subnet dev ipsec0 (after ipsec-charon, which creates ipsec0).
 * Order in a pass: ipsec-charon, then routes (core kinds), then ipsec-secret and ipsec-xfrm, then ipsec-conn.
 *
 * close("restart") leaves charon and its SAs running for the next agent (restart without traffic loss); a full
 * reconcile then finds everything as desired and writes nothing. close("teardown") retracts everything: the
 * connections are unloaded, the key unloaded, charon stopped by PID (which removes ipsec0 and its routes).
 * Stale `weft-` connections and keys in this node's charon are pruned by the reconcilers like any owned object.
 */
import "reflect-metadata";
import { createHash } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type Backend,
  BACKEND_CONFIG,
  type BackendData,
  type BackendStatus,
  DATAPATH,
  type Datapath,
  type ExternalInterface,
  type IPNet,
  type Lease,
  type LocalLease,
  LOGGER,
  type Logger,
  type NetworkConfig,
  Peer,
  PeerDeclarations,
  type PeerStatus,
  type RouteSpec,
  STATE_DIR,
  WeftError,
  createToken,
  subnetKey,
} from "@weft/core";
import { type CharonDatapath, KernelError, LIBIPSEC_DEVICE, LIBIPSEC_MTU, type IpsecConnection, locateCharon } from "@weft/kernel";
import { inject, injectable } from "tsyringe";
import { IKE_PROPOSAL, IPSEC_TYPE, type IpsecConfig, ipsecOverhead, readPsk } from "./config.js";
import { CHARON_KIND, CONN_KIND, type CharonHandle, type CharonSpec, type ConnSpec, OWNED_PREFIX, SECRET_KIND, type SecretSpec } from "./reconcilers.js";
import { NO_LEFTOVERS, XFRM_KIND, reqidFor } from "./xfrm-sweep.js";

/** The agent's CharonHandle (one per agent container; shared by the backend and the three reconcilers). */
export const CHARON_HANDLE = createToken<CharonHandle>("weft.ipsec.charon");

const LOCAL_OWNER = "local";
/** Where the node's charon keeps its files, under STATE_DIR. */
export const IPSEC_RUN_DIR = "ipsec";
const PSK_COPY = "psk";
/** The throw-away connection registerSubnet loads to check the proposals (not a peer's). */
const PROPOSAL_CHECK = `${OWNED_PREFIX}proposal-check`;

/**
 * What the operator sees in /status (`backend`) and /metrics: the datapath and what decided it, and three gauges:
 * `connections_desired` (peers this node has a connection for), `connections_loaded` (Weft's connections charon
 * has loaded) and `sas_up` (of those, the ones with an ESTABLISHED IKE_SA and an INSTALLED CHILD_SA). A charon that
 * does not answer loads nothing and has no SA up: both read 0.
 */
export interface IpsecStatus extends BackendStatus {
  readonly datapath?: CharonDatapath;
  readonly gauges: { readonly connections_desired: number; readonly connections_loaded: number; readonly sas_up: number };
}

const ipv4 = (ip: string) => ip.split(".").reduce((n, o) => n * 256 + Number(o), 0);

/** The pair's initiator: the node with the lower PublicIP (numerically). */
export function initiates(local: string, remote: string): boolean {
  return ipv4(local) < ipv4(remote);
}

/** A connection's name: `weft-<peer IP>-<digest of everything in it>`, so any change is a new object. */
export function connectionName(c: Omit<IpsecConnection, "name">): string {
  const d = createHash("sha256").update(JSON.stringify([c.localAddr, c.remoteAddr, c.localTs, c.remoteTs, c.ikeProposal, c.espProposal, !!c.encap, !!c.initiator, c.reqid])).digest("hex");
  return `${OWNED_PREFIX}${c.remoteAddr}-${d.slice(0, 10)}`;
}

/** The shared key's id: a digest of the key (never the key), so a new key is a new object. */
export function secretId(psk: string): string {
  return `${OWNED_PREFIX}psk-${createHash("sha256").update(`weft-ipsec-psk\0${psk}`).digest("hex").slice(0, 16)}`;
}

/**
 * Checks that need no lease and change nothing (the module's preflight): IPv4 only, an IPv4 address for peers,
 * charon installed, the PSK readable, and an underlay that can carry libipsec's fixed 1400-byte ipsec0.
 */
export function preflightIpsec(config: IpsecConfig, net: NetworkConfig, iface: ExternalInterface): void {
  if (net.enableIPv6) {
    throw new WeftError("CONFIG_INVALID", "ipsec: IPv6 is not supported (IPv4 only, like Flannel's ipsec): set EnableIPv6 to false, or use Backend.Type wireguard for IPv6");
  }
  if (!(iface.extAddr ?? iface.ifaceAddr)) {
    throw new WeftError("CONFIG_INVALID", `ipsec: interface ${iface.name} has no IPv4 address for peers to reach: give it one or set --public-ip`);
  }
  readPsk(config);
  locateCharon();
  if (config.mode !== "kernel" && iface.mtu < LIBIPSEC_MTU + ipsecOverhead(config, "v4")) {
    throw new WeftError(
      "CONFIG_INVALID",
      `ipsec: interface ${iface.name} has MTU ${iface.mtu}, below the ${LIBIPSEC_MTU + ipsecOverhead(config, "v4")} that libipsec's fixed ${LIBIPSEC_MTU}-byte ${LIBIPSEC_DEVICE} needs (Backend.Mode ${config.mode}): raise the MTU, or set Backend.Mode kernel where the kernel has ESP`,
    );
  }
}

@injectable()
export class IpsecBackend implements Backend {
  private readonly peerObjects: PeerDeclarations;
  private localAddr?: string;
  private localSubnet?: IPNet;
  private datapathMode?: CharonDatapath;
  private modeReason?: string;

  constructor(
    @inject(DATAPATH) private readonly datapath: Datapath,
    @inject(LOGGER) private readonly logger: Logger,
    @inject(BACKEND_CONFIG) private readonly config: IpsecConfig,
    @inject(STATE_DIR) private readonly stateDir: string,
    @inject(CHARON_HANDLE) private readonly charon: CharonHandle,
  ) {
    this.peerObjects = new PeerDeclarations(this.datapath);
  }

  /** The datapath, its reason and the connection/SA gauges (IpsecStatus), read from charon over VICI now. */
  async status(): Promise<IpsecStatus> {
    const { loaded, up } = await this.liveCounts();
    return {
      ...(this.datapathMode ? { datapath: this.datapathMode } : {}),
      ...(this.modeReason ? { reason: this.modeReason } : {}),
      gauges: { connections_desired: this.peerObjects.size, connections_loaded: loaded, sas_up: up },
    };
  }

  /** Weft's connections in charon (the start-time proposal check left out) and those with an SA carrying traffic. */
  private async liveCounts(): Promise<{ loaded: number; up: number }> {
    if (!this.datapathMode) return { loaded: 0, up: 0 };
    const socket = this.charon.socket;
    const ours = (name: string) => name.startsWith(OWNED_PREFIX) && name !== PROPOSAL_CHECK;
    try {
      const [conns, sas] = await Promise.all([this.charon.ipsec.listConnections(socket), this.charon.ipsec.listSas(socket)]);
      const loaded = new Set(conns.map((c) => c.name).filter(ours));
      const up = new Set(sas.filter((sa) => loaded.has(sa.connection) && sa.state === "ESTABLISHED" && sa.children.some((ch) => ch.state === "INSTALLED")).map((sa) => sa.connection));
      return { loaded: loaded.size, up: up.size };
    } catch {
      // charon not answering (crashed, being restarted): nothing is loaded or up; the reconcile repairs it.
      return { loaded: 0, up: 0 };
    }
  }

  async registerSubnet(local: LocalLease): Promise<BackendData> {
    const { lease, config: net, iface } = local;
    preflightIpsec(this.config, net, iface);
    const subnet = lease.subnet;
    if (!subnet) throw new WeftError("CONFIG_INVALID", `ipsec: the lease ${subnetKey(lease)} has no IPv4 subnet (ipsec is IPv4 only)`);
    this.localAddr = (iface.extAddr ?? iface.ifaceAddr)!.toString();
    this.localSubnet = subnet;

    const psk = readPsk(this.config);
    const datapath = await this.chooseDatapath();
    const secret: SecretSpec = { id: secretId(psk), file: this.pskFile(psk) };
    const charon: CharonSpec = { name: "charon", datapath };
    // Kernel mode: no XFRM leftovers with Weft's reqids (a charon killed with -9 leaves its states and policies).
    const xfrm: Record<string, readonly unknown[]> = datapath === "kernel" ? { [XFRM_KIND]: [NO_LEFTOVERS] } : {};
    this.datapath.declare(LOCAL_OWNER, { extra: { [CHARON_KIND]: [charon], [SECRET_KIND]: [secret], ...xfrm } });
    await this.datapath.flush();
    await this.verifyCharon();
    await this.checkProposals();
    this.logger.info("ipsec ready", { datapath, reason: this.modeReason, socket: this.charon.socket, espProposal: this.config.espProposal, udpEncap: this.config.udpEncap });
    // Flannel's ipsec publishes no backend data: a peer needs only the PublicIP and subnet of the lease.
    return {};
  }

  async addPeer(peer: Peer): Promise<PeerStatus> {
    // The agent hands a screened Peer; a bare Lease (a caller from before the agent screened) is viewed as one.
    const p = peer instanceof Peer ? peer : Peer.of(peer);
    return this.peerObjects.apply(p, this.describePeer(p));
  }

  async removePeer(peer: Lease): Promise<void> {
    this.peerObjects.remove(peer);
  }

  async close(mode: "restart" | "teardown"): Promise<void> {
    if (mode === "restart") return; // charon and its SAs stay up; the next agent adopts them
    this.peerObjects.clear();
    this.datapath.retract(LOCAL_OWNER);
    await this.datapath.flush();
    rmSync(join(this.charon.files.runDir, PSK_COPY), { force: true });
  }

  private describePeer(peer: Peer): { objects: { routes: RouteSpec[]; extra: Record<string, ConnSpec[]> } } | { status: Exclude<PeerStatus, { state: "programmed" }> } {
    const subnet = peer.subnets.get("v4");
    if (!subnet || !this.localSubnet || !this.localAddr) return peer.skipped("has no IPv4 subnet (ipsec is IPv4 only)");
    const ep = peer.endpoint("v4");
    if ("status" in ep) return ep;
    const remoteAddr = ep.publicIP.toString();
    if (remoteAddr === this.localAddr) return peer.skipped(`has this node's own PublicIP ${remoteAddr}: two nodes cannot share one tunnel endpoint`);
    const spec: Omit<IpsecConnection, "name"> = {
      localAddr: this.localAddr,
      remoteAddr,
      localTs: [this.localSubnet.toString()],
      remoteTs: [subnet.toString()],
      ikeProposal: IKE_PROPOSAL,
      espProposal: this.config.espProposal,
      encap: this.config.udpEncap,
      initiator: initiates(this.localAddr, remoteAddr),
      // Weft's ownership mark on the CHILD_SA's XFRM states and policies (kernel mode; see xfrm-sweep.ts).
      reqid: reqidFor(subnet.toString()),
    };
    const routes: RouteSpec[] = this.datapathMode === "libipsec" ? [{ family: "v4", dst: subnet.toString(), dev: LIBIPSEC_DEVICE }] : [];
    const conn: ConnSpec = { name: connectionName(spec), ...spec, ...(spec.initiator ? { sa: "start" } : {}) };
    return { objects: { routes, extra: { [CONN_KIND]: [conn] } } };
  }

  private async chooseDatapath(): Promise<CharonDatapath> {
    const esp = await this.charon.ipsec.kernelEsp();
    let mode: CharonDatapath;
    if (this.config.mode === "kernel") {
      if (!esp.available) {
        throw new WeftError("CONFIG_INVALID", `ipsec: Backend.Mode is kernel but ${esp.reason ?? "this kernel lacks ESP"}: set Backend.Mode to libipsec or auto (userspace ESP through ${LIBIPSEC_DEVICE})`);
      }
      mode = "kernel";
      this.modeReason = "Backend.Mode kernel";
    } else if (this.config.mode === "libipsec") {
      mode = "libipsec";
      this.modeReason = "Backend.Mode libipsec";
    } else {
      mode = esp.available ? "kernel" : "libipsec";
      this.modeReason = esp.available ? "auto: the kernel has ESP" : `auto: ${esp.reason ?? "kernel lacks ESP"}`;
    }
    this.datapathMode = mode;
    return mode;
  }

  /** The 0600 file the key is loaded from: PSKFile as given, or a copy of the inline PSK in the run directory. */
  private pskFile(psk: string): string {
    if (this.config.pskFile) {
      rmSync(join(this.charon.files.runDir, PSK_COPY), { force: true });
      return this.config.pskFile;
    }
    mkdirSync(this.charon.files.runDir, { recursive: true, mode: 0o700 });
    const file = join(this.charon.files.runDir, PSK_COPY);
    writeFileSync(file, psk, { mode: 0o600 });
    return file;
  }

  /** charon answers on its socket with the key loaded, or a one-line error with what charon said last. */
  private async verifyCharon(): Promise<void> {
    try {
      await this.charon.ipsec.version(this.charon.socket);
      return;
    } catch {
      // fall through: say why
    }
    const tail = await this.charon.daemons.logTail({ name: "charon", runDir: this.charon.files.runDir });
    throw new WeftError(
      "KERNEL_FAILED",
      `ipsec: charon is not answering on ${this.charon.socket} (see the "kernel object not programmed" warnings of kind ${CHARON_KIND}${tail ? `; charon said: ${tail}` : ""})`,
    );
  }

  /**
   * Loads and unloads one throw-away connection with the configured proposals: an unknown ESPProposal is refused
   * by charon here, at start, as one line naming the key, instead of failing every peer later.
   */
  private async checkProposals(): Promise<void> {
    const probe: IpsecConnection = {
      name: PROPOSAL_CHECK,
      localAddr: this.localAddr!,
      remoteAddr: "198.18.255.254",
      localTs: [this.localSubnet!.toString()],
      remoteTs: ["198.18.255.254/32"],
      ikeProposal: IKE_PROPOSAL,
      espProposal: this.config.espProposal,
      encap: this.config.udpEncap,
    };
    try {
      await this.charon.ipsec.loadConnection(this.charon.socket, probe);
    } catch (err) {
      if (!(err instanceof KernelError) || err.code !== "KERNEL_INVALID") throw err;
      // Leave nothing behind: the agent exits on this error.
      this.datapath.retract(LOCAL_OWNER);
      await this.datapath.flush();
      rmSync(join(this.charon.files.runDir, PSK_COPY), { force: true });
      const said = err.message.replace(/^.*charon refused: /, "");
      throw new WeftError(
        "BACKEND_CONFIG_INVALID",
        `ipsec: Backend.ESPProposal "${this.config.espProposal}" is refused by charon (${said}): use one this charon supports (\`swanctl --list-algs\`), e.g. aes128gcm16-sha256-prfsha256-ecp256`,
      );
    }
    await this.charon.ipsec.unloadConnection(this.charon.socket, probe.name);
  }
}
