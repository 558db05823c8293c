/**
 * net-conf.json: parsing and validation exactly as Flannel does it (reference/flannel.md §2), with better errors.
 *
 * - Keys match case-insensitively (Go encoding/json: an exact match wins, else the first case-insensitive one).
 * - EnableIPv4 defaults to true, EnableIPv6 to false; at least one must be on.
 * - SubnetLen/SubnetMin/SubnetMax (and the IPv6 twins) are derived when absent and range-checked when present,
 *   but only where Flannel checks them: the etcd store. In kube mode the node's podCIDR is the subnet.
 * - The Backend section is kept as raw JSON; only Backend.Type is read here. The backend validates the rest.
 *
 * Every error names the source, the JSON path, the value and the rule, in one line.
 */
import { ConfigError } from "./errors.js";
import { type Family, IPAddress, IPNet } from "./ip.js";

/** A config value as it appears in an error message: strings quoted, everything else as JSON. */
export function showValue(v: unknown): string {
  return typeof v === "string" ? `"${v}"` : (JSON.stringify(v) ?? String(v));
}

/** One address family's share of the network. */
export interface FamilyNetwork {
  readonly network: IPNet;
  readonly subnetLen: number;
  readonly subnetMin: IPAddress;
  readonly subnetMax: IPAddress;
}

/**
 * The validated net-conf.json: which families are enabled, each family's network and subnet range, and the
 * Backend section, left raw for the backend's `configSchema`.
 */
export interface NetworkConfig {
  /** Where the config came from (`net-conf.json`, `/etc/weft/net-conf.json`, `etcd <prefix>/config`), for messages. */
  readonly source: string;
  readonly enableIPv4: boolean;
  readonly enableIPv6: boolean;
  /** Present iff enableIPv4. */
  readonly v4?: FamilyNetwork;
  /** Present iff enableIPv6. */
  readonly v6?: FamilyNetwork;
  readonly enableNFTables: boolean;
  /** Backend.Type exactly as written (the registry matches it case-insensitively). */
  readonly backendType: string;
  /** The whole Backend object, opaque to core. */
  readonly backend: Readonly<Record<string, unknown>>;
  /** Non-fatal findings (unknown keys, host bits in Network); the caller logs them. */
  readonly warnings: readonly string[];
}

/** Options of `parseNetworkConfig`. */
export interface ParseNetworkConfigOptions {
  /** Names the origin in errors, e.g. `net-conf.json` or `etcd /weft.io/network/config`. */
  source?: string;
  /** Check SubnetLen/Min/Max ranges (etcd mode). Kube mode takes subnets from podCIDRs and skips this. */
  checkSubnets?: boolean;
}

const KNOWN_KEYS = [
  "Network",
  "SubnetLen",
  "SubnetMin",
  "SubnetMax",
  "EnableIPv4",
  "EnableIPv6",
  "IPv6Network",
  "IPv6SubnetLen",
  "IPv6SubnetMin",
  "IPv6SubnetMax",
  "EnableNFTables",
  "Backend",
] as const;
type Key = (typeof KNOWN_KEYS)[number];

/**
 * Looks a key up the way Go's encoding/json does: exact name first, else the first key equal ignoring case.
 */
export function getKeyInsensitive(obj: Readonly<Record<string, unknown>>, name: string): { key: string; value: unknown } | undefined {
  if (Object.prototype.hasOwnProperty.call(obj, name)) return { key: name, value: obj[name] };
  const lower = name.toLowerCase();
  for (const k of Object.keys(obj)) if (k.toLowerCase() === lower) return { key: k, value: obj[k] };
  return undefined;
}


const FAMILY_RULES: Record<Family, { maxNetPrefix: number; defaultLen: number; bigNetPrefix: number; maxLen: number }> = {
  // prefix > 28 is too small; prefix <= 22 gets /24; else prefix + 2. SubnetLen at most 30.
  v4: { maxNetPrefix: 28, defaultLen: 24, bigNetPrefix: 22, maxLen: 30 },
  v6: { maxNetPrefix: 124, defaultLen: 64, bigNetPrefix: 62, maxLen: 126 },
};

/**
 * Parses and validates net-conf.json text as Flannel does (keys match case-insensitively, subnet lengths
 * derived when absent). Throws a ConfigError naming the source, JSON path, value and rule; non-fatal findings
 * go to `warnings`.
 */
export function parseNetworkConfig(text: string, options: ParseNetworkConfigOptions = {}): NetworkConfig {
  const source = options.source ?? "net-conf.json";
  const checkSubnets = options.checkSubnets ?? true;
  const fail = (path: string, msg: string): never => {
    throw new ConfigError(source, path, msg);
  };

  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return fail("", `not valid JSON (${(e as Error).message}): fix the syntax`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return fail("", `must be a JSON object like {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}, got ${showValue(raw)}`);
  }
  const obj = raw as Record<string, unknown>;
  const warnings: string[] = [];
  const known = new Set(KNOWN_KEYS.map((k) => k.toLowerCase()));
  for (const k of Object.keys(obj)) {
    if (!known.has(k.toLowerCase())) warnings.push(`${source}: unknown key "${k}" is ignored (known keys: ${KNOWN_KEYS.join(", ")})`);
  }
  const get = (k: Key): unknown => getKeyInsensitive(obj, k)?.value;

  const bool = (k: Key, def: boolean): boolean => {
    const v = get(k);
    if (v === undefined || v === null) return def;
    if (typeof v !== "boolean") return fail(k, `${k} ${showValue(v)} must be true or false`);
    return v;
  };
  const enableIPv4 = bool("EnableIPv4", true);
  const enableIPv6 = bool("EnableIPv6", false);
  const enableNFTables = bool("EnableNFTables", false);
  if (!enableIPv4 && !enableIPv6) fail("EnableIPv4", "EnableIPv4 and EnableIPv6 are both false: enable at least one address family");

  const familyNetwork = (family: Family): FamilyNetwork => {
    const p = family === "v4" ? "" : "IPv6";
    const netKey = `${p}Network` as Key;
    const lenKey = `${p}SubnetLen` as Key;
    const minKey = `${p}SubnetMin` as Key;
    const maxKey = `${p}SubnetMax` as Key;
    const rules = FAMILY_RULES[family];
    const famName = family === "v4" ? "IPv4" : "IPv6";
    const enableKey = family === "v4" ? "EnableIPv4" : "EnableIPv6";

    const netRaw = get(netKey);
    if (netRaw === undefined || netRaw === null || netRaw === "") {
      return fail(netKey, `${netKey} is missing: ${enableKey} is true, so set ${netKey} to an ${famName} CIDR such as ${family === "v4" ? "10.244.0.0/16" : "fd00:10:244::/56"}`);
    }
    if (typeof netRaw !== "string") return fail(netKey, `${netKey} ${showValue(netRaw)} must be a string holding an ${famName} CIDR`);
    const parsed = IPNet.tryParse(netRaw);
    if (!parsed || parsed.net.family !== family) return fail(netKey, `${netKey} ${showValue(netRaw)} is not an ${famName} CIDR (expected e.g. ${family === "v4" ? "10.244.0.0/16" : "fd00:10:244::/56"})`);
    const network = parsed.net;
    if (parsed.hadHostBits) warnings.push(`${source}: ${netKey} ${showValue(netRaw)} has host bits set; using ${network}`);
    if (network.prefix > rules.maxNetPrefix) {
      return fail(netKey, `${netKey} ${showValue(netRaw)} is too small: the minimum useful network prefix is /${rules.maxNetPrefix}`);
    }

    // SubnetLen
    const lenRaw = get(lenKey);
    let subnetLen: number;
    if (lenRaw === undefined || lenRaw === null || lenRaw === 0) {
      subnetLen = network.prefix <= rules.bigNetPrefix ? rules.defaultLen : network.prefix + 2;
    } else {
      if (typeof lenRaw !== "number" || !Number.isInteger(lenRaw)) return fail(lenKey, `${lenKey} ${showValue(lenRaw)} must be an integer prefix length`);
      subnetLen = lenRaw;
      const lo = network.prefix + 2;
      if (checkSubnets && (subnetLen < lo || subnetLen > rules.maxLen)) {
        return fail(lenKey, `${lenKey} ${subnetLen} is out of range: must be between ${lo} (${netKey} /${network.prefix} + 2) and ${rules.maxLen}`);
      }
      if (!checkSubnets && (subnetLen < network.prefix || subnetLen > network.ip.bits)) {
        return fail(lenKey, `${lenKey} ${subnetLen} is out of range: must be between ${network.prefix} and ${network.ip.bits}`);
      }
    }
    const subnetSize = 1n << BigInt(network.ip.bits - subnetLen);

    const addr = (key: Key, def: IPAddress): IPAddress => {
      const v = get(key);
      if (v === undefined || v === null || v === "") return def;
      const ip = typeof v === "string" ? IPAddress.tryParse(v) : undefined;
      if (!ip || ip.family !== family) return fail(key, `${key} ${showValue(v)} is not an ${famName} address`);
      if (checkSubnets) {
        if (!network.contains(ip)) return fail(key, `${key} ${ip} is outside ${netKey} ${network}: choose an address inside it`);
        if ((ip.value - network.ip.value) % subnetSize !== 0n) {
          return fail(key, `${key} ${ip} is not aligned to ${lenKey} /${subnetLen}: use the first address of a /${subnetLen} block`);
        }
      }
      return ip;
    };
    const subnetMin = addr(minKey, network.ip.add(subnetSize));
    const subnetMax = addr(maxKey, network.ip.add(network.size - subnetSize));
    if (checkSubnets && subnetMin.value > subnetMax.value) {
      return fail(minKey, `${minKey} ${subnetMin} is above ${maxKey} ${subnetMax}: the range is empty`);
    }
    return { network, subnetLen, subnetMin, subnetMax };
  };

  const v4 = enableIPv4 ? familyNetwork("v4") : undefined;
  const v6 = enableIPv6 ? familyNetwork("v6") : undefined;

  const backendRaw = get("Backend");
  let backend: Record<string, unknown>;
  if (backendRaw === undefined || backendRaw === null) {
    // Flannel's code falls back to "udp", which Weft does not ship; its docs (and every manifest) say vxlan.
    backend = { Type: "vxlan" };
    warnings.push(`${source}: no Backend section; using {"Type": "vxlan"}`);
  } else if (typeof backendRaw !== "object" || Array.isArray(backendRaw)) {
    return fail("Backend", `Backend ${showValue(backendRaw)} must be an object like {"Type": "vxlan"}`);
  } else {
    backend = backendRaw as Record<string, unknown>;
  }
  const typeRaw = getKeyInsensitive(backend, "Type")?.value;
  if (typeRaw === undefined || typeRaw === null || typeRaw === "") {
    return fail("Backend.Type", `Backend.Type is missing: set it to the backend to use, e.g. {"Type": "vxlan"}`);
  }
  if (typeof typeRaw !== "string") return fail("Backend.Type", `Backend.Type ${showValue(typeRaw)} must be a string such as "vxlan"`);

  return Object.freeze({
    source,
    enableIPv4,
    enableIPv6,
    ...(v4 ? { v4 } : {}),
    ...(v6 ? { v6 } : {}),
    enableNFTables,
    backendType: typeRaw,
    backend: Object.freeze({ ...backend }),
    warnings,
  });
}

/** The configured network of a family, or undefined when that family is disabled. */
export function familyNetwork(config: NetworkConfig, family: Family): FamilyNetwork | undefined {
  return family === "v4" ? config.v4 : config.v6;
}
