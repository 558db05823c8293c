/**
 * The node's subnet file, written by weftd (or by flanneld: same format and variable names, flannel.md §5.1):
 *
 *   FLANNEL_NETWORK=198.19.0.0/16
 *   FLANNEL_SUBNET=198.19.1.1/24          first host address / prefix length, NOT the network address
 *   FLANNEL_IPV6_NETWORK=2001:2::/48
 *   FLANNEL_IPV6_SUBNET=2001:2:0:1::1/64
 *   FLANNEL_MTU=1450
 *   FLANNEL_IPMASQ=true
 *
 * Any other line (e.g. a WEFT_* key, comments, blank lines) is ignored. Values may be quoted and may be
 * comma-separated lists (flanneld's reader accepts them); the first entry is used.
 *
 * A missing file is the normal state of a node whose agent has not started yet, so it is "try again later"
 * (code 11) with a pointer to the agent, never a configuration error.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { hostname } from "node:os";
import { IPAddress, IPNet, IPPrefix } from "@weft/core";
import { CniError, CniErrorCode, invalidConfig, showText } from "./errors.js";

export interface SubnetFamily {
  /** The cluster network (FLANNEL_NETWORK / FLANNEL_IPV6_NETWORK). */
  readonly network: IPNet;
  /** This node's pod subnet (host bits cleared). */
  readonly subnet: IPNet;
  /** The bridge's address: the host address FLANNEL_SUBNET names (the subnet's first host when it names the network). */
  readonly gateway: IPAddress;
}

export interface SubnetFile {
  readonly path: string;
  readonly ipv4?: SubnetFamily;
  readonly ipv6?: SubnetFamily;
  readonly mtu: number;
  /** FLANNEL_IPMASQ: the agent masquerades traffic leaving the cluster network. */
  readonly ipMasq: boolean;
}

export const DEFAULT_SUBNET_FILE = "/run/weft/subnet.env";

/** The line an operator should run to see why the agent is not up on this node. */
export function agentHint(): string {
  let node = "";
  try {
    node = hostname();
  } catch {
    // no hostname: leave it out
  }
  // The namespace and container of docs/deploy/weft.yaml.
  const selector = node ? ` --field-selector spec.nodeName=${node}` : "";
  return `check the weftd pod on this node: kubectl -n kube-weft get pods -o wide${selector}, then kubectl -n kube-weft logs <that pod> -c weftd`;
}

function unquote(v: string): string {
  const t = v.trim();
  if (t.length >= 2 && ((t.startsWith('"') && t.endsWith('"')) || (t.startsWith("'") && t.endsWith("'")))) return t.slice(1, -1);
  return t;
}

/** KEY=VALUE pairs of an env file (later lines win, as in a shell). */
export function parseEnvFile(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("export ")) line = line.slice(7).trim();
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    out.set(line.slice(0, eq).trim(), unquote(line.slice(eq + 1)));
  }
  return out;
}

function fileError(path: string, message: string): CniError {
  return new CniError(
    CniErrorCode.TRY_AGAIN_LATER,
    `subnet file ${path}: ${message}; it is written by the weft agent (weftd), try again later and ${agentHint()}`,
  );
}

function firstEntry(v: string): string {
  return v.split(",")[0]!.trim();
}

function parseFamily(
  env: Map<string, string>,
  path: string,
  netKey: string,
  subnetKey: string,
  family: "v4" | "v6",
): SubnetFamily | undefined {
  const netText = env.get(netKey);
  const subText = env.get(subnetKey);
  if ((netText === undefined || netText === "") && (subText === undefined || subText === "")) return undefined;
  if (!netText) throw fileError(path, `${subnetKey} is set but ${netKey} is missing`);
  if (!subText) throw fileError(path, `${netKey} is set but ${subnetKey} is missing`);
  const network = IPNet.tryParse(firstEntry(netText))?.net;
  if (!network || network.family !== family) throw fileError(path, `${netKey}=${netText} is not an IP${family} CIDR`);
  const prefix = IPPrefix.tryParse(firstEntry(subText));
  if (!prefix || prefix.family !== family) {
    throw fileError(path, `${subnetKey}=${subText} is not an IP${family} address/prefix (expected e.g. the subnet's first host/len)`);
  }
  const subnet = prefix.network;
  if (!network.contains(subnet)) throw fileError(path, `${subnetKey}=${subText} is not inside ${netKey}=${netText}`);
  // flanneld writes the first host; tolerate a file that names the network address itself.
  const gateway = prefix.ip.equals(subnet.ip) ? subnet.ip.add(1) : prefix.ip;
  if (!subnet.contains(gateway)) throw fileError(path, `${subnetKey}=${subText} leaves no room for a gateway address`);
  return { network, subnet, gateway };
}

/** Parses the text of a subnet file; `path` is only used in messages. */
export function parseSubnetFile(text: string, path: string): SubnetFile {
  const env = parseEnvFile(text);
  const ipv4 = parseFamily(env, path, "FLANNEL_NETWORK", "FLANNEL_SUBNET", "v4");
  const ipv6 = parseFamily(env, path, "FLANNEL_IPV6_NETWORK", "FLANNEL_IPV6_SUBNET", "v6");
  const missing: string[] = [];
  if (!ipv4 && !ipv6) missing.push("FLANNEL_NETWORK/FLANNEL_SUBNET or FLANNEL_IPV6_NETWORK/FLANNEL_IPV6_SUBNET");
  if (!env.get("FLANNEL_MTU")) missing.push("FLANNEL_MTU");
  if (!env.get("FLANNEL_IPMASQ")) missing.push("FLANNEL_IPMASQ");
  if (missing.length > 0) throw fileError(path, `missing ${missing.join(", ")}`);
  const mtuText = env.get("FLANNEL_MTU")!;
  const mtu = Number(mtuText);
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw fileError(path, `FLANNEL_MTU=${mtuText} is not an MTU (68..65535)`);
  const masqText = env.get("FLANNEL_IPMASQ")!.toLowerCase();
  if (masqText !== "true" && masqText !== "false") throw fileError(path, `FLANNEL_IPMASQ=${masqText} must be true or false`);
  return { path, ...(ipv4 ? { ipv4 } : {}), ...(ipv6 ? { ipv6 } : {}), mtu, ipMasq: masqText === "true" };
}

/**
 * Reads and parses the subnet file; a missing file is code 11 "try again later" naming the agent. The read is
 * synchronous on purpose (as in the IPAM store): the plugin is a one-shot process, and a first asynchronous fs
 * call costs a thread-pool start and event-loop round trips (docs/adr/0006-cni-latency.md).
 */
export async function readSubnetFile(path: string): Promise<SubnetFile> {
  let text: string;
  try {
    text = readRegularFile(path);
  } catch (err) {
    if (err instanceof CniError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new CniError(
        CniErrorCode.TRY_AGAIN_LATER,
        `subnet file ${showText(path)} does not exist: the weft agent (weftd) is not up yet on this node, so it has no pod ` +
          `subnet; try again later, and if this persists ${agentHint()}`,
      );
    }
    throw fileError(showText(path), `cannot be read (${code ?? String(err)})`);
  }
  return parseSubnetFile(text, showText(path));
}

/** A subnet file is a few hundred bytes; anything near this is not one. */
const MAX_SUBNET_FILE_BYTES = 64 * 1024;

/**
 * Reads a regular file of at most MAX_SUBNET_FILE_BYTES. Opened non-blocking and checked with fstat first, so a
 * "subnetFile" naming a FIFO, a terminal or /dev/zero is refused (code 7) instead of blocking or reading forever.
 */
function readRegularFile(path: string): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      throw invalidConfig("subnetFile", `"${showText(path)}" is not a regular file; set it to the file weftd writes (default ${DEFAULT_SUBNET_FILE})`);
    }
    if (st.size > MAX_SUBNET_FILE_BYTES) {
      throw invalidConfig("subnetFile", `"${showText(path)}" has ${st.size} bytes, more than a subnet file's ${MAX_SUBNET_FILE_BYTES}; set it to the file weftd writes (default ${DEFAULT_SUBNET_FILE})`);
    }
    const buf = Buffer.alloc(MAX_SUBNET_FILE_BYTES + 1);
    let n = 0;
    for (;;) {
      const r = readSync(fd, buf, n, buf.length - n, null);
      if (r === 0) break;
      n += r;
      if (n > MAX_SUBNET_FILE_BYTES) {
        throw invalidConfig("subnetFile", `"${showText(path)}" is larger than a subnet file's ${MAX_SUBNET_FILE_BYTES} bytes; set it to the file weftd writes`);
      }
    }
    return buf.subarray(0, n).toString("utf8");
  } finally {
    closeSync(fd);
  }
}
