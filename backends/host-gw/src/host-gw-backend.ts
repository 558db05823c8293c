/**
 * HostGwBackend: no encapsulation at all. Each node is the gateway for its own pod subnet, so a peer's pods are
 * reached by routing the peer's subnet via the peer's underlay address (flannel.md §3.2). Fastest datapath,
 * overhead 0, and exactly one kernel object per peer and family:
 *
 *   route  peer subnet via peer PublicIP dev <underlay interface>   (IPv6: via PublicIPv6), no onlink
 *
 * No local devices and no backend data (the lease publishes JSON null, as Flannel does).
 *
 * The catch is that the next hop must be directly reachable: the peer has to share this node's L2 segment.
 * Flannel finds out from the kernel's "network is unreachable" and then logs it every 10 s forever. Weft
 * decides up front from the subnets connected to the underlay interface and returns the peer as
 * "unreachable", naming the fix (vxlan with DirectRouting); the agent logs that once per change of state. The
 * same reasoning rules out NAT: a node whose PublicIP is not its interface address cannot be a next hop for
 * anyone, so the module's preflight refuses it before the agent takes a lease (hostGwPreflight).
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
  type IPNet,
  type Lease,
  type LocalLease,
  LOGGER,
  type Logger,
  type NetworkConfig,
  type Peer,
  type PeerDescription,
  type PeerStatus,
  type RouteSpec,
  WeftError,
  leaseSubnet,
  subnetKey,
  PeerDeclarations,
} from "@weft/core";
import { ConnectedSubnets, KERNEL_VIEW, type KernelView } from "@weft/kernel";
import { inject, injectable } from "tsyringe";
import { type HostGwConfig } from "./config.js";

const FAMILY_NAME: Record<Family, string> = { v4: "IPv4", v6: "IPv6" };

/**
 * What host-gw cannot run with, checked from the configuration and the interface alone (no lease, no kernel):
 * for every enabled family the interface needs an address (peers route this node's subnet to it), and the
 * advertised PublicIP must be that address (behind NAT, peers would route to an address that is not on their
 * segment). The module's preflight runs it before the agent takes a lease; registerSubnet runs it again as a
 * guard.
 */
export function hostGwPreflight(_config: HostGwConfig, net: NetworkConfig, iface: ExternalInterface): void {
  for (const family of ["v4", "v6"] as const) {
    if (!(family === "v4" ? net.enableIPv4 : net.enableIPv6)) continue;
    const fam = FAMILY_NAME[family];
    const ifaceAddr = family === "v4" ? iface.ifaceAddr : iface.ifaceV6Addr;
    const extAddr = family === "v4" ? iface.extAddr : iface.extV6Addr;
    if (!ifaceAddr) {
      throw new WeftError("CONFIG_INVALID", `host-gw: Enable${fam} is on but interface ${iface.name} has no ${fam} address for peers to route to: give it one or turn Enable${fam} off`);
    }
    if (extAddr && !extAddr.equals(ifaceAddr)) {
      throw new WeftError(
        "CONFIG_INVALID",
        `host-gw: the public IP ${extAddr} differs from ${iface.name}'s address ${ifaceAddr}, so this node is probably behind NAT; ` +
          `host-gw makes peers route straight to the public IP, which cannot work through NAT: use vxlan, or drop --public-ip${family === "v6" ? "v6" : ""}`,
      );
    }
  }
}

@injectable()
export class HostGwBackend implements Backend {
  private iface?: ExternalInterface;
  private connected?: ConnectedSubnets;
  /** This node's subnet per routed family. */
  private readonly local = new Map<Family, IPNet>();
  /** The peers declared on the datapath (declare-or-retract bookkeeping shared by every backend). */
  private readonly peerObjects: PeerDeclarations;

  constructor(
    @inject(DATAPATH) private readonly datapath: Datapath,
    @inject(LOGGER) private readonly logger: Logger,
    @inject(BACKEND_CONFIG) private readonly config: HostGwConfig,
    @inject(KERNEL_VIEW) private readonly kernel: KernelView,
  ) {
    this.peerObjects = new PeerDeclarations(this.datapath);
  }

  async registerSubnet(local: LocalLease): Promise<BackendData> {
    const { lease, config: net, iface } = local;
    hostGwPreflight(this.config, net, iface); // the agent ran it already; a guard for other callers
    const data: { v4?: null; v6?: null } = {};
    this.local.clear();
    for (const family of ["v4", "v6"] as const) {
      const subnet = leaseSubnet(lease, family);
      const enabled = family === "v4" ? net.enableIPv4 : net.enableIPv6;
      if (!subnet || !enabled) continue;
      this.local.set(family, subnet);
      data[family] = null; // Flannel publishes JSON null for host-gw
    }
    if (this.local.size === 0) throw new WeftError("CONFIG_INVALID", `host-gw: the lease ${subnetKey(lease)} has no subnet in an enabled address family`);
    this.iface = iface;
    this.connected = await ConnectedSubnets.read(this.kernel, iface);
    this.logger.info("host-gw ready", { iface: iface.name, segments: this.connected.subnets.map(String) });
    return data;
  }

  async addPeer(peer: Peer): Promise<PeerStatus> {
    // Not logged here: the agent logs a peer's state once per change, with its reason.
    return this.peerObjects.apply(peer, this.describePeer(peer));
  }

  async removePeer(peer: Lease): Promise<void> {
    this.peerObjects.remove(peer);
  }

  async close(mode: "restart" | "teardown"): Promise<void> {
    if (mode === "restart") return; // routes stay; the next agent adopts them
    this.peerObjects.clear();
    await this.datapath.flush();
  }

  /** The route per family, or why not. The agent screened the peer (type, overlap, a family in common). */
  private describePeer(peer: Peer): PeerDescription {
    const iface = this.iface!;
    const routes: RouteSpec[] = [];
    for (const [family, subnet] of peer.subnets) {
      // host-gw publishes no data (JSON null): only the PublicIP matters.
      const endpoint = peer.endpoint(family);
      if ("status" in endpoint) return endpoint;
      const { publicIP } = endpoint;
      if (!this.connected!.contains(publicIP)) {
        return {
          status: {
            state: "unreachable",
            reason:
              `peer ${peer.nodeName ?? peer.key} (${publicIP}) is not on this node's L2 segment (${this.connected!.describe(family)}): ` +
              `host-gw cannot reach it; use vxlan with DirectRouting: true`,
          },
        };
      }
      // The network or broadcast address of an IPv4 segment is no host: the kernel refuses it as a gateway
      // ("Nexthop has invalid gateway"), so say so here, naming the peer's address, instead of failing every pass.
      const segment = family === "v4" ? this.connected!.subnets.find((n) => n.family === "v4" && n.prefix < 31 && n.contains(publicIP)) : undefined;
      if (segment && (publicIP.equals(segment.first) || publicIP.equals(segment.last))) {
        return peer.skipped(`has PublicIP ${publicIP}, the ${publicIP.equals(segment.first) ? "network" : "broadcast"} address of ${segment}: no node can have it; fix its --public-ip`, "address");
      }
      // No onlink: the gateway is inside a connected subnet, and the kernel checking that is a useful guard.
      routes.push({ family, dst: subnet.toString(), gateway: publicIP.toString(), dev: iface.name });
    }
    return { objects: { routes } };
  }
}
