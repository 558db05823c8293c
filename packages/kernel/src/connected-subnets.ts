/**
 * Which peers share this node's L2 segment. A peer whose PublicIP lies inside a subnet connected to the
 * underlay interface can be reached with a plain route (no gateway resolution beyond ARP/ND on that link);
 * that is what vxlan DirectRouting and host-gw's same-segment check use. Read from the interface's addresses
 * through the port (no process of its own), once per registerSubnet.
 */
import { type ExternalInterface, type Family, type IPAddress, type IPNet, IPPrefix } from "@weft/core";
import type { KernelPort } from "./port.js";

/**
 * The subnets directly connected to one interface (from its addresses, IPv6 link-local left out): a peer whose
 * public IP lies in one of them shares this node's L2 segment and is reachable with a plain route.
 */
export class ConnectedSubnets {
  constructor(
    readonly iface: string,
    readonly subnets: readonly IPNet[],
  ) {}

  /** Reads the addresses of `iface` through `kernel` (a KernelView is enough). */
  static async read(kernel: Pick<KernelPort, "listAddresses">, iface: ExternalInterface): Promise<ConnectedSubnets> {
    const nets: IPNet[] = [];
    for (const a of await kernel.listAddresses(iface.name)) {
      const p = IPPrefix.tryParse(a.address);
      // Link-local IPv6 (fe80::/10) is on every link; it says nothing about which peers share this one.
      if (!p || (p.family === "v6" && (p.ip.value >> 118n) === 0x3fan)) continue;
      if (!nets.some((n) => n.equals(p.network))) nets.push(p.network);
    }
    return new ConnectedSubnets(iface.name, nets);
  }

  /** True when `ip` lies in one of the connected subnets. */
  contains(ip: IPAddress): boolean {
    return this.subnets.some((n) => n.contains(ip));
  }

  /** `eth0 198.18.0.0/24` (or `eth0 with no IPv4 subnet`), for messages. */
  describe(family: Family): string {
    const nets = this.subnets.filter((n) => n.family === family);
    return nets.length ? `${this.iface} ${nets.join(", ")}` : `${this.iface} with no ${family === "v4" ? "IPv4" : "IPv6"} subnet`;
  }
}
