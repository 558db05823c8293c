/**
 * subnet.env: Flannel's exact format and variable names (reference/flannel.md §5.1), so Flannel's CNI plugin and
 * tools can read Weft's file and Weft's CNI plugin can read Flannel's. Pure text functions; the agent writes the
 * file atomically, the CNI plugin reads it.
 *
 *   FLANNEL_NETWORK=198.19.0.0/16
 *   FLANNEL_SUBNET=198.19.1.1/24          (first host address, not the network address)
 *   FLANNEL_IPV6_NETWORK=2001:2::/48
 *   FLANNEL_IPV6_SUBNET=2001:2:0:1::1/64
 *   FLANNEL_MTU=1450
 *   FLANNEL_IPMASQ=true
 */
import { ConfigError, describeValue } from "./errors.js";
import { IPNet, IPPrefix } from "./ip.js";

/** A value in a message: as is when short and printable, else quoted, escaped and cut. */
function shown(v: string): string {
  return /^[\x21-\x7e]{0,80}$/.test(v) ? v : describeValue(v);
}

/** A malformed variable: a ConfigError whose source is subnet.env and whose path is the variable name. */
function bad(name: string, message: string): never {
  throw new ConfigError("subnet.env", name, message);
}

/** The values of a subnet.env file (Flannel's `FLANNEL_*` variables); absent variables are undefined. */
export interface SubnetEnv {
  readonly network?: IPNet;
  /** The node's subnet as written: first host address with the prefix length. */
  readonly subnet?: IPPrefix;
  readonly ipv6Network?: IPNet;
  readonly ipv6Subnet?: IPPrefix;
  readonly mtu?: number;
  readonly ipMasq?: boolean;
}

/** Renders the file. The subnet is given as its network (198.19.1.0/24) and written as the first host (198.19.1.1/24). */
export function formatSubnetEnv(v: { network?: IPNet; subnet?: IPNet; ipv6Network?: IPNet; ipv6Subnet?: IPNet; mtu: number; ipMasq: boolean }): string {
  const lines: string[] = [];
  if (v.network) lines.push(`FLANNEL_NETWORK=${v.network}`);
  if (v.subnet) lines.push(`FLANNEL_SUBNET=${IPPrefix.of(v.subnet.ip.add(1), v.subnet.prefix)}`);
  if (v.ipv6Network) lines.push(`FLANNEL_IPV6_NETWORK=${v.ipv6Network}`);
  if (v.ipv6Subnet) lines.push(`FLANNEL_IPV6_SUBNET=${IPPrefix.of(v.ipv6Subnet.ip.add(1), v.ipv6Subnet.prefix)}`);
  lines.push(`FLANNEL_MTU=${v.mtu}`);
  lines.push(`FLANNEL_IPMASQ=${v.ipMasq}`);
  return lines.join("\n") + "\n";
}

/**
 * Parses the file; unknown variables are ignored, malformed known ones throw a ConfigError (source
 * `subnet.env`) naming the variable, with the value cut to a bounded length.
 * Like Flannel's reader, a comma-separated value takes its first entry.
 */
export function parseSubnetEnv(text: string): SubnetEnv {
  const vars = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    vars.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1").split(",")[0]!.trim());
  }
  const net = (name: string, family: "v4" | "v6") => {
    const v = vars.get(name);
    if (v === undefined || v === "") return undefined;
    const r = IPNet.tryParse(v);
    if (!r || r.net.family !== family) return bad(name, `${name}=${shown(v)} is not an ${family === "v4" ? "IPv4" : "IPv6"} CIDR`);
    return r.net;
  };
  const prefix = (name: string, family: "v4" | "v6") => {
    const v = vars.get(name);
    if (v === undefined || v === "") return undefined;
    const p = IPPrefix.tryParse(v);
    if (!p || p.family !== family) return bad(name, `${name}=${shown(v)} is not an ${family === "v4" ? "IPv4" : "IPv6"} address/prefix`);
    return p;
  };
  const out: { -readonly [K in keyof SubnetEnv]: SubnetEnv[K] } = {};
  const network = net("FLANNEL_NETWORK", "v4");
  if (network) out.network = network;
  const subnet = prefix("FLANNEL_SUBNET", "v4");
  if (subnet) out.subnet = subnet;
  const ipv6Network = net("FLANNEL_IPV6_NETWORK", "v6");
  if (ipv6Network) out.ipv6Network = ipv6Network;
  const ipv6Subnet = prefix("FLANNEL_IPV6_SUBNET", "v6");
  if (ipv6Subnet) out.ipv6Subnet = ipv6Subnet;
  const mtu = vars.get("FLANNEL_MTU");
  if (mtu !== undefined && mtu !== "") {
    if (!/^\d+$/.test(mtu) || Number(mtu) < 68 || Number(mtu) > 65535) return bad("FLANNEL_MTU", `FLANNEL_MTU=${shown(mtu)} is not an MTU (68..65535)`);
    out.mtu = Number(mtu);
  }
  const masq = vars.get("FLANNEL_IPMASQ");
  if (masq !== undefined && masq !== "") {
    if (masq !== "true" && masq !== "false") return bad("FLANNEL_IPMASQ", `FLANNEL_IPMASQ=${shown(masq)} must be true or false`);
    out.ipMasq = masq === "true";
  }
  return out;
}
