/**
 * VxlanBackend: pod traffic between nodes in kernel VXLAN, with every forwarding entry programmed statically
 * (Flannel's third design, flannel.md §3.1.5: no L2/L3-miss handling in the daemon, so a restart of the agent
 * does not disturb traffic).
 *
 * What it encapsulates: inner Ethernet frames in UDP (port 8472 unless Backend.Port says otherwise) between
 * the nodes' public addresses; 50 bytes per packet over an IPv4 underlay, 70 over IPv6 (VXLAN_OVERHEAD).
 *
 * Local objects (owner "local"), per address family of the lease:
 *   link     weft.<VNI> / weft-v6.<VNI>: vxlan, bound to the underlay interface, local = the public address,
 *            learning off, no link-local address (addrgenmode none), VTEP MAC kept across restarts in
 *            <STATE_DIR>, MTU = underlay MTU − overhead, up;
 *   address  the lease subnet's network address as /32 (/128): only the source for host → pod traffic; the
 *            host-sized prefix keeps the kernel from adding a broadcast/connected route for the subnet;
 *   offload  (DisableTxChecksumOffload only) tx-checksum-ip-generic off, re-applied if the device is recreated.
 *
 * Per peer (owner = the peer's subnet key), in the order the engine applies kinds:
 *   1. neighbour  peer subnet network address → peer VtepMAC, permanent: the "gateway" below never needs ARP;
 *   2. fdb        peer VtepMAC → dst peer PublicIP, `self` permanent: where the tunnel sends that MAC;
 *   3. route      peer subnet via the peer subnet network address, dev weft.<VNI>, onlink (the gateway is not
 *                 in any subnet of the device; onlink tells the kernel to trust it), added last so it never
 *                 points at an unresolvable next hop.
 * With DirectRouting, a peer whose PublicIP is inside a subnet connected to the underlay interface gets only a
 * route to its subnet via its PublicIP on that interface: no encapsulation on a shared L2 segment.
 *
 * Adopting an existing device, recreating an incompatible one (VNI, port, local address, underlay device,
 * learning or GBP differ) and re-adding every peer's entries after a recreate are the reconcilers' job: a
 * recreated link loses its neighbours, FDB entries and routes, and the same pass reads them afresh and adds
 * them back.
 */
import "reflect-metadata";
import {
  type Backend,
  BACKEND_CONFIG,
  type BackendData,
  DATAPATH,
  type Datapath,
  type ExternalInterface,
  type Family,
  type FdbSpec,
  type IPAddress,
  type IPNet,
  type JsonValue,
  type Lease,
  type LinkSpec,
  type LocalLease,
  LOGGER,
  type Logger,
  type NeighbourSpec,
  type NetworkConfig,
  type Peer,
  type PeerDescription,
  type PeerStatus,
  type RouteSpec,
  STATE_DIR,
  WEFT_LINK_PREFIX,
  WeftError,
  errorMessage,
  leaseSubnet,
  subnetKey,
  PeerDeclarations,
} from "@weft/core";
import { ConnectedSubnets, ETHTOOL, type EthtoolPort, KERNEL_VIEW, type KernelView } from "@weft/kernel";
import { inject, injectable } from "tsyringe";
import { VXLAN_OVERHEAD, type VxlanConfig, encodeVxlanLeaseData, vxlanLeaseDataSchema } from "./config.js";
import { OFFLOAD_KIND, type OffloadSpec, TX_CHECKSUM_FEATURE } from "./offload.js";
import { loadOrCreateVtepMac } from "./vtep-mac.js";

/** Linux interface names are at most 15 bytes (IFNAMSIZ 16 with the NUL). */
const IFNAME_MAX = 15;

/** `weft.<VNI>` for the IPv4 device, `weft-v6.<VNI>` for the IPv6 one. */
export function vxlanDeviceName(vni: number, family: Family): string {
  return `${WEFT_LINK_PREFIX}${family === "v6" ? "-v6" : ""}.${vni}`;
}

const FAMILY_NAME: Record<Family, string> = { v4: "IPv4", v6: "IPv6" };
const LOCAL_OWNER = "local";

/** One device the configuration asks for, as far as it can be known without a lease. */
export interface VxlanDevicePlan {
  readonly name: string;
  /** The tunnel source: the advertised PublicIP, else the interface address. */
  readonly source: IPAddress;
  readonly mtu: number;
}

/**
 * Everything vxlan can check from the configuration and the interface alone, per enabled family: an address
 * to send VXLAN from, a device name Linux accepts (the VNI is part of it), a device MTU the family allows.
 * The module's preflight runs it before the agent takes a lease; registerSubnet runs it again and builds its
 * devices from the result. Throws ConfigError-class WeftErrors naming the key and the fix.
 */
export function planVxlanDevices(config: VxlanConfig, net: NetworkConfig, iface: ExternalInterface): Map<Family, VxlanDevicePlan> {
  const plans = new Map<Family, VxlanDevicePlan>();
  for (const family of ["v4", "v6"] as const) {
    if (!(family === "v4" ? net.enableIPv4 : net.enableIPv6)) continue;
    const fam = FAMILY_NAME[family];
    const source = family === "v4" ? (iface.extAddr ?? iface.ifaceAddr) : (iface.extV6Addr ?? iface.ifaceV6Addr);
    if (!source) {
      throw new WeftError(
        "CONFIG_INVALID",
        `vxlan: Enable${fam} is on but interface ${iface.name} has no ${fam} address to send VXLAN from: ` +
          `give it one, set --public-ip${family === "v6" ? "v6" : ""}, or turn Enable${fam} off`,
      );
    }
    const name = vxlanDeviceName(config.vni, family);
    if (name.length > IFNAME_MAX) {
      throw new WeftError(
        "BACKEND_CONFIG_INVALID",
        `${net.source}: Backend.VNI ${config.vni} makes the ${fam} device name ${name} longer than Linux's ${IFNAME_MAX} characters: use a VNI below 10000000`,
      );
    }
    const underlayMtu = config.mtu || iface.mtu;
    const mtu = underlayMtu - VXLAN_OVERHEAD[family];
    // IPv6 is switched off on a link below 1280 bytes; an IPv4 link below 68 cannot exist.
    const minimum = family === "v6" ? 1280 : 68;
    if (mtu < minimum) {
      throw new WeftError(
        "BACKEND_CONFIG_INVALID",
        `vxlan: ${name} would get MTU ${mtu} (underlay ${underlayMtu} − ${VXLAN_OVERHEAD[family]}), below ${fam}'s minimum ${minimum}: raise Backend.MTU or the MTU of ${iface.name}`,
      );
    }
    plans.set(family, { name, source, mtu });
  }
  return plans;
}

interface LocalDevice {
  readonly family: Family;
  readonly name: string;
  readonly mac: string;
  readonly subnet: IPNet;
}

@injectable()
export class VxlanBackend implements Backend {
  private readonly devices = new Map<Family, LocalDevice>();
  private iface?: ExternalInterface;
  private connected?: ConnectedSubnets;
  /** The peers declared on the datapath (declare-or-retract bookkeeping shared by every backend). */
  private readonly peerObjects: PeerDeclarations;

  constructor(
    @inject(DATAPATH) private readonly datapath: Datapath,
    @inject(LOGGER) private readonly logger: Logger,
    @inject(BACKEND_CONFIG) private readonly config: VxlanConfig,
    @inject(STATE_DIR) private readonly stateDir: string,
    @inject(KERNEL_VIEW) private readonly kernel: KernelView,
    @inject(ETHTOOL) private readonly ethtool: EthtoolPort,
  ) {
    this.peerObjects = new PeerDeclarations(this.datapath);
  }

  async registerSubnet(local: LocalLease): Promise<BackendData> {
    const { lease, config: net, iface } = local;
    // The agent ran these checks in the module's preflight already; running them again guards other callers
    // and gives the per-family device plan.
    const plans = planVxlanDevices(this.config, net, iface);
    this.iface = iface;
    this.connected = await ConnectedSubnets.read(this.kernel, iface);

    const links: LinkSpec[] = [];
    const addresses: { dev: string; address: string }[] = [];
    const offload: OffloadSpec[] = [];
    const data: { v4?: JsonValue; v6?: JsonValue } = {};
    this.devices.clear();
    for (const [family, { name, source, mtu }] of plans) {
      const subnet = leaseSubnet(lease, family);
      if (!subnet) continue;
      const mac = loadOrCreateVtepMac(this.stateDir, this.config.vni, family, this.logger, this.previousMac(lease, family));
      links.push({
        name,
        kind: "vxlan",
        mtu,
        address: mac,
        up: true,
        addrGenMode: "none",
        vxlan: {
          vni: this.config.vni,
          ...(this.config.port ? { port: this.config.port } : {}),
          local: source.toString(),
          dev: iface.name,
          learning: this.config.learning,
          gbp: this.config.gbp,
        },
      });
      addresses.push({ dev: name, address: `${subnet.ip}/${subnet.ip.bits}` });
      if (this.config.disableTxChecksumOffload) offload.push({ dev: name, feature: TX_CHECKSUM_FEATURE, enabled: false });
      this.devices.set(family, { family, name, mac, subnet });
      data[family] = encodeVxlanLeaseData({ vni: this.config.vni, vtepMAC: mac });
    }
    if (this.devices.size === 0) {
      throw new WeftError("CONFIG_INVALID", `vxlan: the lease ${subnetKey(lease)} has no subnet in an enabled address family`);
    }

    this.datapath.declare(LOCAL_OWNER, { links, addresses, ...(offload.length ? { extra: { [OFFLOAD_KIND]: offload } } : {}) });
    await this.datapath.flush();

    // Peers will send to the MAC we publish; make sure the kernel really has it (as Flannel does).
    const actual = new Map((await this.kernel.listLinks()).map((l) => [l.name, l]));
    for (const d of this.devices.values()) {
      const link = actual.get(d.name);
      if (!link) {
        throw new WeftError("KERNEL_FAILED", `vxlan: device ${d.name} could not be created (see the "kernel object not programmed" warning): is the vxlan kernel module available?`);
      }
      if (link.address !== d.mac) {
        throw new WeftError("KERNEL_FAILED", `vxlan: device ${d.name} has MAC ${link.address ?? "none"}, not the VTEP MAC ${d.mac} this node publishes`);
      }
    }
    if (this.config.disableTxChecksumOffload) await this.verifyOffload();
    this.logger.info("vxlan devices ready", {
      devices: [...this.devices.values()].map((d) => `${d.name} ${d.mac}`),
      vni: this.config.vni,
      directRouting: this.config.directRouting,
    });
    return data;
  }

  async addPeer(peer: Peer): Promise<PeerStatus> {
    // A peer that was fine and now is not (its lease changed) must not keep its old entries; not logged here:
    // the agent logs a peer's state once per change, with this reason.
    return this.peerObjects.apply(peer, this.describePeer(peer));
  }

  async removePeer(peer: Lease): Promise<void> {
    this.peerObjects.remove(peer);
  }

  /**
   * What no two peers may share (the agent's PeerSet settles it, @weft/reconcile PeerIdentityClaims): the
   * VtepMAC per device. FDB entries are keyed by MAC, so two peers with one MAC would make the entry flip between
   * their addresses at every pass ("repairing drift" forever); the agent programs one of them and skips the other
   * with one line. Never throws; a peer whose data does not parse claims nothing (it is skipped anyway).
   */
  peerIdentities(peer: Peer): string[] {
    const out: string[] = [];
    for (const family of peer.subnets.keys()) {
      const dev = this.devices.get(family);
      if (!dev) continue;
      const endpoint = peer.endpoint(family, vxlanLeaseDataSchema);
      if (!("status" in endpoint)) out.push(`vxlan ${dev.name} VtepMAC ${endpoint.data.vtepMAC.toLowerCase()}`);
    }
    return out;
  }

  async close(mode: "restart" | "teardown"): Promise<void> {
    if (mode === "restart") return; // devices and entries stay; the next agent adopts them
    this.peerObjects.clear();
    this.datapath.retract(LOCAL_OWNER);
    await this.datapath.flush();
  }

  /**
   * The objects for one peer, or why it cannot be programmed. The agent screened it (same type, no overlap, a
   * family in common); here only vxlan's own data and choices. Never throws.
   */
  private describePeer(peer: Peer): PeerDescription {
    const iface = this.iface!;
    const neighbours: NeighbourSpec[] = [];
    const fdb: FdbSpec[] = [];
    const routes: RouteSpec[] = [];
    for (const [family, subnet] of peer.subnets) {
      const dev = this.devices.get(family);
      if (!dev) continue;
      const endpoint = peer.endpoint(family, vxlanLeaseDataSchema);
      if ("status" in endpoint) return endpoint;
      const { publicIP, data: vtep } = endpoint;
      if (vtep.vni !== this.config.vni) {
        return peer.skipped(`uses VNI ${vtep.vni}, this node ${this.config.vni}: set the same Backend.VNI on every node`);
      }
      if (vtep.vtepMAC.toLowerCase() === dev.mac.toLowerCase()) {
        // Our own MAC as a peer's FDB entry would send this node's frames to the peer: a copied lease.
        return peer.skipped(`has VtepMAC ${vtep.vtepMAC}, this node's own ${dev.name} MAC (a copied lease?): delete that lease`, "malformed");
      }
      if (this.config.directRouting && this.connected!.contains(publicIP)) {
        routes.push({ family, dst: subnet.toString(), gateway: publicIP.toString(), dev: iface.name });
        continue;
      }
      const gateway = subnet.ip.toString();
      neighbours.push({ dev: dev.name, ip: gateway, lladdr: vtep.vtepMAC, state: "permanent" });
      fdb.push({ dev: dev.name, mac: vtep.vtepMAC, dst: publicIP.toString(), self: true, permanent: true });
      routes.push({ family, dst: subnet.toString(), gateway, dev: dev.name, onlink: true });
    }
    return { objects: { neighbours, fdb, routes } };
  }

  /**
   * The operator asked for the checksum workaround; starting without it in effect would bring back the
   * 63-second stalls silently. Read it back once, like the MAC, and refuse to start when it is not off.
   */
  private async verifyOffload(): Promise<void> {
    for (const d of this.devices.values()) {
      let state: string;
      try {
        const f = (await this.ethtool.features(d.name)).get(TX_CHECKSUM_FEATURE);
        state = !f ? "not reported by ethtool" : f.enabled ? "still on" : "off";
      } catch (err) {
        state = `unreadable (${errorMessage(err)})`;
      }
      if (state !== "off") {
        throw new WeftError(
          "KERNEL_FAILED",
          `vxlan: DisableTxChecksumOffload is set but ${TX_CHECKSUM_FEATURE} on ${d.name} is ${state}: install ethtool, or check that the agent ` +
            `registers the backend module before it creates the datapath engine (the "${OFFLOAD_KIND}" reconciler comes with the module); or set DisableTxChecksumOffload to false`,
        );
      }
    }
  }

  /** The VtepMAC this node published before (kube mode keeps it in the node annotation), if it is usable. */
  private previousMac(lease: Lease, family: Family): string | undefined {
    try {
      const d = vxlanLeaseDataSchema.parse(family === "v4" ? lease.attrs.backendData : lease.attrs.backendV6Data, "own lease");
      return d.vni === this.config.vni ? d.vtepMAC : undefined;
    } catch {
      return undefined;
    }
  }
}
