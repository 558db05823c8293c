/**
 * SampleBackend — the design note every backend file opens with (STYLE 10): what it encapsulates, which
 * kernel objects it creates per peer, in which order, and why.
 *
 * What it encapsulates: nothing. Each node publishes a gateway address for its pod subnet (its underlay
 * address) and every other node routes that subnet via that gateway. Like host-gw, it needs all nodes on
 * one L2 segment; a peer whose gateway is not in a subnet of the underlay interface is "unreachable".
 *
 * Kernel objects
 *   local (owner "local"):  sysctl net.ipv4.conf.<underlay>.rp_filter = 2, only with LooseReversePathFilter
 *                           (an example of an extra kind with its own reconciler, see sysctl.ts)
 *   per peer and family (owner = the peer's subnet key):
 *                           route <peer subnet> via <peer Gateway> dev <underlay> [metric <Metric>]
 * The engine applies kinds in the order their reconcilers declare (links, then addresses, neighbours, fdb,
 * then routes; the sysctl kind, declaring nothing, after them) and batches each kind's changes into one kernel
 * call per pass; a backend only says what it wants.
 *
 * HOW A BACKEND WORKS (read this before changing anything):
 *   - It never calls the kernel to change state. It *declares* objects per owner on the Datapath
 *     (`declare(owner, objects)` replaces that owner's set; `retract(owner)` drops it) and the shared
 *     reconcilers make the kernel match: adopting what already exists, repairing drift on a timer,
 *     pruning owned objects nobody declares any more. So addPeer/removePeer are cheap and idempotent.
 *   - It may READ the kernel (KERNEL_VIEW, a read-only view) for decisions, as below for the underlay's
 *     connected subnets. The writable kernel belongs to the engine; a backend's container does not have it,
 *     nor the cluster store.
 *   - It never sees a peer the agent could refuse itself: the agent screens every lease first (registered,
 *     same Backend.Type, no overlap with this node's subnet, a family in common) and hands addPeer a Peer;
 *     `peer.endpoint(family, schema)` gives the PublicIP and parsed data per family or the status to return.
 *   - Weft owns only what it marks: routes get Weft's protocol number automatically; devices you create
 *     must be named with the `weft` prefix (WEFT_LINK_PREFIX) or they are never pruned.
 *   - Programs (wg, ethtool, ...) are run only by packages/kernel, behind its ports (a tool's port, a
 *     managed daemon): a backend never starts a process, holds the process runner, opens a socket or
 *     reads /proc. The boundary lint fails the build otherwise.
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
  type IPAddress,
  type IPNet,
  type JsonValue,
  type Lease,
  type LocalLease,
  type NetworkConfig,
  type Peer,
  type PeerDescription,
  type PeerStatus,
  type RouteSpec,
  type Schema,
  WeftError,
  leaseSubnet,
  subnetKey,
  PeerDeclarations,
} from "@weft/core";
import { ConnectedSubnets, KERNEL_VIEW, type KernelView } from "@weft/kernel";
import { inject, injectable } from "tsyringe";
import { SAMPLE_TYPE, type SampleConfig, type SampleLeaseData, encodeSampleLeaseData, parseSampleLeaseData } from "./config.js";
import { SYSCTL_KIND, type SysctlSpec } from "./sysctl.js";

const FAMILY_NAME: Record<Family, string> = { v4: "IPv4", v6: "IPv6" };

/** The peer data schema of one family (a Gateway of that family), for Peer.endpoint. */
const sampleLeaseData = (family: Family): Schema<SampleLeaseData> => ({ parse: (input, path) => parseSampleLeaseData(input, family, path) });

/**
 * EXTENSION POINT: preflight. Every check that needs only your config, the network config and the underlay
 * interface belongs here — a missing address, a NAT'd PublicIP your datapath cannot work with, a device name
 * too long. The module's `preflight` (index.ts) runs it BEFORE the agent takes a lease or changes anything on
 * the node, so a configuration error stops the agent with nothing to undo. registerSubnet runs the same
 * function again (one function, not two copies) and uses what it returns. Throw a WeftError CONFIG_INVALID
 * (or a ConfigError naming the JSON path) with one line: the problem and the fix.
 *
 * Here: each enabled family needs an address on the interface; it is the gateway this node publishes.
 */
export function samplePreflight(_config: SampleConfig, net: NetworkConfig, iface: ExternalInterface): Map<Family, IPAddress> {
  const gateways = new Map<Family, IPAddress>();
  for (const family of ["v4", "v6"] as const) {
    if (!(family === "v4" ? net.enableIPv4 : net.enableIPv6)) continue;
    const fam = FAMILY_NAME[family];
    const gateway = family === "v4" ? iface.ifaceAddr : iface.ifaceV6Addr;
    if (!gateway) {
      throw new WeftError("CONFIG_INVALID", `${SAMPLE_TYPE}: Enable${fam} is on but interface ${iface.name} has no ${fam} address for peers to route through: give it one or turn Enable${fam} off`);
    }
    gateways.set(family, gateway);
  }
  return gateways;
}

/**
 * EXTENSION POINT: the Backend class. tsyringe builds it in the agent's child container. Every constructor
 * parameter carries an explicit @inject(TOKEN): Weft's builds emit no decorator metadata, so a parameter
 * without one would fail at resolve time. Tokens a backend may use: DATAPATH, LOGGER, BACKEND_CONFIG (your
 * parsed config), NETWORK_CONFIG, EXTERNAL_INTERFACE, STATE_DIR, CLOCK (from @weft/core); KERNEL_VIEW (reads) and
 * the kernel ports (MANAGED_DAEMONS, WIREGUARD, IPSEC, ETHTOOL, from @weft/kernel). The store, the writable
 * kernel and the process runner are not in the backend's container.
 */
@injectable()
export class SampleBackend implements Backend {
  private iface?: ExternalInterface;
  /** Subnets connected to the underlay interface: who is on our L2 segment. */
  private segments = new ConnectedSubnets("", []);
  /** This node's subnet per family it routes. */
  private readonly own = new Map<Family, IPNet>();
  /** The peers declared on the datapath (declare-or-retract bookkeeping shared by every backend). */
  private readonly peerObjects: PeerDeclarations;

  constructor(
    @inject(DATAPATH) private readonly datapath: Datapath,
    @inject(BACKEND_CONFIG) private readonly config: SampleConfig,
    @inject(KERNEL_VIEW) private readonly kernel: KernelView,
  ) {
    this.peerObjects = new PeerDeclarations(this.datapath);
  }

  /**
   * Called once per agent start, after the module's preflight and the lease, before any peer. Create or adopt
   * local devices (declare + flush), and return the data peers need. It must return the same data after a
   * restart, or peers' entries for this node go stale. What only the lease can tell (it has no subnet in an
   * enabled family) is checked here; configuration errors were found by preflight already.
   */
  async registerSubnet(local: LocalLease): Promise<BackendData> {
    const { lease, config: net, iface } = local;
    const gateways = samplePreflight(this.config, net, iface);
    const data: { v4?: JsonValue; v6?: JsonValue } = {};
    this.own.clear();
    for (const [family, gateway] of gateways) {
      const subnet = leaseSubnet(lease, family);
      if (!subnet) continue;
      this.own.set(family, subnet);
      data[family] = encodeSampleLeaseData({ gateway });
    }
    if (this.own.size === 0) throw new WeftError("CONFIG_INVALID", `${SAMPLE_TYPE}: the lease ${subnetKey(lease)} has no subnet in an enabled address family`);
    this.iface = iface;

    // Reading the kernel is fine; changing it is the reconcilers' job. ConnectedSubnets (from @weft/kernel)
    // reads the interface's subnets through the port: the L2 segments a plain route can reach.
    this.segments = await ConnectedSubnets.read(this.kernel, iface);

    const sysctls: SysctlSpec[] = this.config.looseReversePathFilter ? [{ key: `net.ipv4.conf.${iface.name}.rp_filter`, value: "2" }] : [];
    this.datapath.declare("local", sysctls.length ? { extra: { [SYSCTL_KIND]: sysctls } } : {});
    await this.datapath.flush();
    return data;
  }

  /**
   * Describe one peer. The agent has screened it before you see it: this node is registered, the peer runs
   * the same Backend.Type, none of its subnets overlaps this node's, and `peer.subnets` holds the families both
   * nodes route (never empty). `peer.endpoint(family, schema)` (from @weft/core) gives its PublicIP and its
   * data parsed by your schema, or the status to return as it is: skipped without a PublicIP or with data
   * your schema rejects, pending while the peer has not published its data yet (a joining node).
   *
   * Idempotent: the same lease again declares the same objects (no kernel writes). A changed lease replaces
   * what the peer had. A lease you cannot use returns skipped/unreachable with a reason — and retracts what
   * the peer had before, so nothing stale stays in the kernel. Never throw, and do not log the reason: the
   * agent logs each peer's state once per change (a second line from the backend would double every one).
   * The agent flushes after each batch of lease events; do not flush here (5,000 peers, one batch).
   */
  async addPeer(peer: Peer): Promise<PeerStatus> {
    // PeerDeclarations (from @weft/core) declares the objects under the peer's owner key, or retracts what
    // the peer had and returns the reason.
    return this.peerObjects.apply(peer, this.describe(peer));
  }

  /** Forget a peer. An unknown peer is not an error (retract of an unknown owner is a no-op). */
  async removePeer(peer: Lease): Promise<void> {
    this.peerObjects.remove(peer);
  }

  /** `restart`: leave everything for the next agent to adopt. `teardown`: remove what this backend declared. */
  async close(mode: "restart" | "teardown"): Promise<void> {
    if (mode === "restart") return;
    this.peerObjects.clear();
    this.datapath.retract("local");
    await this.datapath.flush();
  }

  private describe(peer: Peer): PeerDescription {
    const routes: RouteSpec[] = [];
    for (const [family, subnet] of peer.subnets) {
      const endpoint = peer.endpoint(family, sampleLeaseData(family));
      if ("status" in endpoint) return endpoint;
      const gateway = endpoint.data.gateway;
      if (!this.segments.contains(gateway)) {
        return { status: { state: "unreachable", reason: `${peer.label} gateway ${gateway} is not on this node's segments (${this.segments.describe(family)})` } };
      }
      routes.push({ family, dst: subnet.toString(), gateway: gateway.toString(), dev: this.iface!.name, ...(this.config.metric ? { metric: this.config.metric } : {}) });
    }
    return { objects: { routes } };
  }
}
