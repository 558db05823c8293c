/**
 * WireguardBackend: pod traffic between nodes encrypted by WireGuard, run in userspace by wireguard-go (there is
 * no WireGuard kernel module here; reference/linux-lab.md §5, docs/adr/0008-wireguard-go.md).
 *
 * What it encapsulates: inner IP packets in WireGuard over UDP (ListenPort 51820; 51821 for the IPv6 device),
 * 80 bytes per packet (WIREGUARD_OVERHEAD), between the nodes' public addresses. Keys: one X25519 pair per node
 * kept in <STATE_DIR>/wg-private.key (0600); the public key and port are the BackendData, exactly Flannel's
 * `{"PublicKey": "...", "Port": 51820}`.
 *
 * Local objects (owner "local"), per device — `weft-wg` (IPv4, or both families in Mode auto/ipv4/ipv6) and
 * `weft-wg-v6` (IPv6 in Mode separate, the default):
 *   wg-device  the wireguard-go process and its UAPI configuration (private key, listen port); its own
 *              reconciler (device.ts), which the engine runs BEFORE links, addresses and routes (its `before`):
 *              nothing can be put on the TUN before wireguard-go has created it, and the kinds after it read
 *              the kernel again once it wrote;
 *   link       the TUN wireguard-go made, declared as kind "tun" so the links reconciler sets its MTU (underlay
 *              − 80) and brings it up, and so the prune never deletes it as "owned but undeclared";
 *   address    the lease subnet's network address as /32 (/128): the source for host → pod traffic, host-sized so
 *              the kernel adds no connected route for the subnet.
 *
 * Per peer (owner = the peer's subnet key):
 *   wg-peer    one WireGuard peer per device it shares a family with: public key, endpoint PublicIP:Port (the
 *              peer's advertised port), allowed-ips = its pod subnet(s), keepalive, PSK; all peer changes of a
 *              pass go to the WireGuardPort in ONE write per device (peers.ts);
 *   route      the peer's subnet via the device (per peer rather than Flannel's one route for the whole
 *              Network: a subnet without a peer is unreachable instead of silently dropped by WireGuard).
 * Order in a pass: wg-device, then links/addresses/routes, then wg-peer (after wg-device and routes). A packet
 * routed into the device before its peer exists is dropped by WireGuard (no allowed-ips match) — the same as
 * "not yet programmed". No process handling or tool output here: wg and wireguard-go are behind the
 * WireGuardPort and the ManagedDaemonPort (@weft/kernel).
 *
 * close("restart") leaves everything, wireguard-go included (started detached), for the next agent to adopt
 * through the UAPI socket; close("teardown") retracts it all: peers, routes and address go, the device's
 * wireguard-go is ended by PID and its TUN removed.
 */
import "reflect-metadata";
import { rmSync } from "node:fs";
import { join } from "node:path";
import {
  type AddressSpec,
  type Backend,
  BACKEND_CONFIG,
  type BackendData,
  DATAPATH,
  type Datapath,
  type ExternalInterface,
  type Family,
  type IPAddress,
  type IPNet,
  type JsonValue,
  type Lease,
  type LinkSpec,
  type LocalLease,
  LOGGER,
  type Logger,
  type NetworkConfig,
  type Peer,
  PeerDeclarations,
  type PeerDescription,
  type PeerStatus,
  type RouteSpec,
  STATE_DIR,
  WeftError,
  leaseSubnet,
  sleep,
  subnetKey,
} from "@weft/core";
import { KERNEL_VIEW, type KernelView, WIREGUARD, WIREGUARD_SOCKET_DIR, type WireGuardPort } from "@weft/kernel";
import { inject, injectable } from "tsyringe";
import { WIREGUARD_OVERHEAD, type WireguardConfig, encodeWireguardLeaseData, wireguardLeaseDataSchema } from "./config.js";
import { WG_DEVICE_KIND, type WgDeviceSpec, logFile } from "./device.js";
import { PSK_FILE, keyDigest, loadOrCreateKeyPair, writePskFile } from "./keys.js";
import { WG_PEER_KIND, type WgPeerSpec } from "./peers.js";

const FAMILY_NAME: Record<Family, string> = { v4: "IPv4", v6: "IPv6" };
const LOCAL_OWNER = "local";
/** How often registerSubnet tries to start wireguard-go before giving up, and the backoff step between tries. */
export const START_ATTEMPTS = 3;
const START_RETRY_MS = 500;

/** One WireGuard device the configuration asks for. */
export interface WireguardDevicePlan {
  readonly name: string;
  /** Pod address families it carries (both in the single-tunnel modes). */
  readonly families: readonly Family[];
  readonly listenPort: number;
  readonly mtu: number;
}

/** `weft-wg` for IPv4 or the single tunnel, `weft-wg-v6` for IPv6 in Mode separate. */
export function wireguardDeviceName(family: Family | "single"): string {
  return family === "v6" ? "weft-wg-v6" : "weft-wg";
}

const ifaceAddress = (iface: ExternalInterface, f: Family) => (f === "v4" ? (iface.extAddr ?? iface.ifaceAddr) : (iface.extV6Addr ?? iface.ifaceV6Addr));

/**
 * Everything wireguard can check from the configuration and the interface alone: the devices, their ports and
 * MTUs, an address peers can reach per endpoint family. The module's preflight runs it before the agent takes a
 * lease; registerSubnet builds its devices from it. Throws config-class WeftErrors naming the key and the fix.
 */
export function planWireguardDevices(config: WireguardConfig, net: NetworkConfig, iface: ExternalInterface): WireguardDevicePlan[] {
  const families = (["v4", "v6"] as const).filter((f) => (f === "v4" ? net.enableIPv4 : net.enableIPv6));
  const underlayMtu = config.mtu || iface.mtu;
  const checkMtu = (name: string, carries: readonly Family[]) => {
    const mtu = underlayMtu - WIREGUARD_OVERHEAD.v6;
    const minimum = carries.includes("v6") ? 1280 : 68;
    if (mtu < minimum) {
      throw new WeftError(
        "BACKEND_CONFIG_INVALID",
        `wireguard: ${name} would get MTU ${mtu} (underlay ${underlayMtu} − ${WIREGUARD_OVERHEAD.v6}), below ${carries.includes("v6") ? "IPv6" : "IPv4"}'s minimum ${minimum}: raise Backend.MTU or the MTU of ${iface.name}`,
      );
    }
    return mtu;
  };
  const needAddress = (f: Family, why: string) => {
    if (!ifaceAddress(iface, f)) {
      const fam = FAMILY_NAME[f];
      throw new WeftError(
        "CONFIG_INVALID",
        `wireguard: ${why} but interface ${iface.name} has no ${fam} address for peers to reach: give it one, set --public-ip${f === "v6" ? "v6" : ""}, or change ${f === "v4" ? "EnableIPv4" : "EnableIPv6"}/Backend.Mode`,
      );
    }
  };
  if (config.mode === "separate") {
    if (families.length === 2 && config.listenPort === config.listenPortV6) {
      throw new WeftError(
        "BACKEND_CONFIG_INVALID",
        `net-conf.json: Backend.ListenPort and Backend.ListenPortV6 are both ${config.listenPort}: in Mode separate with both families the two devices need different UDP ports`,
      );
    }
    return families.map((f) => {
      needAddress(f, `Enable${FAMILY_NAME[f]} is on (Mode separate tunnels ${FAMILY_NAME[f]} over ${FAMILY_NAME[f]})`);
      const name = wireguardDeviceName(f);
      return { name, families: [f], listenPort: f === "v4" ? config.listenPort : config.listenPortV6, mtu: checkMtu(name, [f]) };
    });
  }
  if (config.mode === "ipv4") needAddress("v4", "Backend.Mode is ipv4");
  if (config.mode === "ipv6") needAddress("v6", "Backend.Mode is ipv6");
  if (config.mode === "auto" && !ifaceAddress(iface, "v4") && !ifaceAddress(iface, "v6")) needAddress("v4", "Backend.Mode is auto");
  const name = wireguardDeviceName("single");
  return families.length ? [{ name, families, listenPort: config.listenPort, mtu: checkMtu(name, families) }] : [];
}

const isRfc1918 = (ip: IPAddress) => /^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)/.test(ip.toString());
const isUla = (ip: IPAddress) => /^f[cd]/i.test(ip.toString());
const endpointOf = (ip: IPAddress, port: number) => (ip.family === "v6" ? `[${ip}]:${port}` : `${ip}:${port}`);

interface LocalDevice extends WireguardDevicePlan {
  readonly subnets: ReadonlyMap<Family, IPNet>;
}

@injectable()
export class WireguardBackend implements Backend {
  private readonly devices: LocalDevice[] = [];
  private iface?: ExternalInterface;
  private pskFile?: string;
  private readonly peerObjects: PeerDeclarations;

  constructor(
    @inject(DATAPATH) private readonly datapath: Datapath,
    @inject(LOGGER) private readonly logger: Logger,
    @inject(BACKEND_CONFIG) private readonly config: WireguardConfig,
    @inject(STATE_DIR) private readonly stateDir: string,
    @inject(KERNEL_VIEW) private readonly kernel: KernelView,
    @inject(WIREGUARD) private readonly wireguard: WireGuardPort,
  ) {
    this.peerObjects = new PeerDeclarations(this.datapath);
  }

  async registerSubnet(local: LocalLease): Promise<BackendData> {
    const { lease, config: net, iface } = local;
    const plans = planWireguardDevices(this.config, net, iface);
    this.iface = iface;
    const keys = loadOrCreateKeyPair(this.stateDir, this.logger);
    this.pskFile = this.config.psk ? writePskFile(this.stateDir, this.config.psk) : undefined;
    // A PSK taken out of the config leaves no copy behind (peers drop theirs on the next pass: drift).
    if (!this.config.psk) rmSync(join(this.stateDir, PSK_FILE), { force: true });

    this.devices.length = 0;
    for (const p of plans) {
      const subnets = new Map<Family, IPNet>();
      for (const f of p.families) {
        const s = leaseSubnet(lease, f);
        if (s) subnets.set(f, s);
      }
      if (subnets.size) this.devices.push({ ...p, subnets });
    }
    if (this.devices.length === 0) {
      throw new WeftError("CONFIG_INVALID", `wireguard: the lease ${subnetKey(lease)} has no subnet in an enabled address family`);
    }
    const wgDevices: WgDeviceSpec[] = this.devices.map((d) => ({ name: d.name, listenPort: d.listenPort, publicKey: keys.publicKey, privateKeyFile: keys.privateKeyFile }));
    const links: LinkSpec[] = this.devices.map((d) => ({ name: d.name, kind: "tun", mtu: d.mtu, up: true }));
    const addresses: AddressSpec[] = this.devices.flatMap((d) => [...d.subnets.values()].map((s) => ({ dev: d.name, address: `${s.ip}/${s.ip.bits}` })));

    // One declaration: the engine runs the wg-device kind (wireguard-go makes the TUN) before the links and
    // addresses kinds that act on the TUN.
    this.datapath.declare(LOCAL_OWNER, { links, addresses, extra: { [WG_DEVICE_KIND]: wgDevices } });
    // A start that fails is retried a few times before the agent gives up (each failure is logged with what
    // wireguard-go said): a missing binary fails every time, a transient failure should not crash-loop the pod.
    try {
      for (let attempt = 1; ; attempt++) {
        await this.datapath.flush();
        if (await this.verifyDevices(keys.publicKey, attempt === START_ATTEMPTS)) break;
        await sleep(START_RETRY_MS * attempt);
      }
    } catch (err) {
      // Unwound: whatever the pass made without a working device (the links kind's bare TUN of the name, its
      // address) goes; a foreign device is never touched (its kind refuses it).
      this.datapath.retract(LOCAL_OWNER);
      await this.datapath.flush().catch(() => undefined);
      throw err;
    }

    const data: { v4?: JsonValue; v6?: JsonValue } = {};
    for (const d of this.devices) {
      for (const f of d.subnets.keys()) data[f] = encodeWireguardLeaseData({ publicKey: keys.publicKey, port: d.listenPort });
    }
    this.logger.info("wireguard devices ready", {
      devices: this.devices.map((d) => `${d.name} port ${d.listenPort} mtu ${d.mtu}`),
      mode: this.config.mode,
      publicKey: keys.publicKey,
    });
    return data;
  }

  async addPeer(peer: Peer): Promise<PeerStatus> {
    return this.peerObjects.apply(peer, this.describePeer(peer));
  }

  async removePeer(peer: Lease): Promise<void> {
    this.peerObjects.remove(peer);
  }

  /**
   * What no two peers may share (the agent's PeerSet settles it, @weft/reconcile PeerIdentityClaims): the public
   * key per device. A WireGuard peer is keyed by its key, so two leases with one key would make its endpoint and
   * allowed IPs flip between them at every pass; the agent programs one and skips the other with one line.
   * Never throws; a peer whose data does not parse claims nothing (it is skipped anyway).
   */
  peerIdentities(peer: Peer): string[] {
    const out: string[] = [];
    for (const dev of this.devices) {
      if (!dev.families.some((f) => peer.subnets.has(f))) continue;
      const family = this.endpointFamily(dev, peer);
      if (!family) continue;
      const endpoint = peer.endpoint(family, wireguardLeaseDataSchema);
      if (!("status" in endpoint)) out.push(`wireguard ${dev.name} PublicKey ${endpoint.data.publicKey}`);
    }
    return out;
  }

  async close(mode: "restart" | "teardown"): Promise<void> {
    if (mode === "restart") return; // wireguard-go, its peers and routes stay; the next agent adopts them
    this.peerObjects.clear();
    this.datapath.retract(LOCAL_OWNER);
    await this.datapath.flush();
  }

  /**
   * Peers will send to the key we publish: the device must exist here and answer with that key (as vxlan checks
   * its MAC). A socket answering with another key is another node's device (docs/adr/0008-wireguard-go.md).
   */
  private async verifyDevices(publicKey: string, last: boolean): Promise<boolean> {
    const present = new Set((await this.kernel.listLinks()).map((l) => l.name));
    for (const d of this.devices) {
      const dump = await this.wireguard.show(d.name).catch(() => undefined);
      const answered = dump ? (dump.publicKey ?? "(none)") : undefined;
      if (answered === publicKey && present.has(d.name)) continue;
      if (answered !== undefined && answered !== publicKey) {
        throw new WeftError(
          "KERNEL_FAILED",
          `wireguard: ${WIREGUARD_SOCKET_DIR}/${d.name}.sock answers with another public key than this node's: another agent on this machine runs ${d.name} ` +
            `in another network namespace (the socket directory is per mount namespace). Give each agent its own mount namespace with a private ` +
            `${WIREGUARD_SOCKET_DIR} (docs/adr/0008-wireguard-go.md), or end that wireguard-go if it is a leftover`,
        );
      }
      if (!last) return false;
      throw new WeftError(
        "KERNEL_FAILED",
        `wireguard: device ${d.name} could not be started in ${START_ATTEMPTS} attempts (see the "kernel object not programmed" warnings of kind ${WG_DEVICE_KIND} and ${logFile(this.stateDir, d.name)}): ` +
          `are wireguard-go and wg (wireguard-tools) installed, and is /dev/net/tun available?`,
      );
    }
    return true;
  }

  /**
   * The objects for one peer, or why it cannot be programmed. The agent screened it (same type, no overlap, a
   * family in common); here the endpoint family, wireguard's own data and the objects. Never throws.
   */
  private describePeer(peer: Peer): PeerDescription {
    const routes: RouteSpec[] = [];
    const peers: WgPeerSpec[] = [];
    for (const dev of this.devices) {
      const allowed = dev.families.flatMap((f) => peer.subnets.get(f) ?? []);
      if (allowed.length === 0) continue;
      // The family whose PublicIP and BackendData the tunnel uses.
      const endpointFamily = this.endpointFamily(dev, peer);
      if (!endpointFamily) {
        const fams = dev.families.length === 1 ? dev.families[0]! : this.config.mode === "ipv6" ? "v6" : "v4";
        return peer.skipped(`has no ${fams === "v4" ? "PublicIP" : "PublicIPv6"} to send WireGuard to`);
      }
      const endpoint = peer.endpoint(endpointFamily, wireguardLeaseDataSchema);
      if ("status" in endpoint) return endpoint;
      const { publicIP, data } = endpoint;
      peers.push({
        dev: dev.name,
        publicKey: data.publicKey,
        // Flannel leases from before 2025 carry no port: the peer listens where we do.
        endpoint: endpointOf(publicIP, data.port ?? dev.listenPort),
        allowedIPs: allowed.map((s) => s.toString()).sort(),
        persistentKeepalive: this.config.persistentKeepalive,
        ...(this.config.psk && this.pskFile ? { presharedKeyDigest: keyDigest(this.config.psk), presharedKeyFile: this.pskFile } : {}),
      });
      for (const s of allowed) routes.push({ family: s.ip.family, dst: s.toString(), dev: dev.name });
    }
    return { objects: { routes, extra: { [WG_PEER_KIND]: peers } } };
  }

  /**
   * Which underlay family reaches the peer on `dev`. Mode separate: the device's own family. ipv4/ipv6: that
   * family. auto (Flannel's rule, flannel.md §3.3.5): IPv4 unless the peer has IPv6 and either its IPv4 is
   * RFC 1918-private or we have no IPv4, and both IPv6 addresses are global (not ULA).
   */
  private endpointFamily(dev: LocalDevice, peer: Lease): Family | undefined {
    const has = (f: Family) => (f === "v4" ? peer.attrs.publicIP : peer.attrs.publicIPv6) !== undefined;
    const want: Family = this.config.mode === "separate" ? dev.families[0]! : this.config.mode === "ipv6" ? "v6" : "v4";
    if (this.config.mode !== "auto") return has(want) ? want : undefined;
    const v4 = peer.attrs.publicIP;
    const v6 = peer.attrs.publicIPv6;
    const ourV4 = this.iface && ifaceAddress(this.iface, "v4");
    const ourV6 = this.iface && ifaceAddress(this.iface, "v6");
    if (!v6) return v4 ? "v4" : undefined;
    if (v4 && ourV4 && !isRfc1918(v4)) return "v4";
    if (ourV6 && !isUla(v6) && !isUla(ourV6)) return "v6";
    return v4 && ourV4 ? "v4" : "v6";
  }
}
