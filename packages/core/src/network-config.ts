/**
 * net-conf.json: parsing and validation exactly as Flannel does it (reference/flannel.md §2), with better errors.
 *
 * - Keys match case-insensitively as Go's encoding/json matches them: when several keys match one field, the
 *   LAST one in the text wins (a `null` value leaves the field as it was, as Go does for value fields). The
 *   text is read by parseConfigJson, which keeps duplicate keys in text order, refuses non-finite numbers
 *   (`1e400`) and bounds nesting.
 * - EnableIPv4 defaults to true, EnableIPv6 to false; at least one must be on.
 * - SubnetLen/SubnetMin/SubnetMax (and the IPv6 twins) are derived when absent and range-checked when present,
 *   but only where Flannel checks them: the etcd store. In kube mode the node's podCIDR is the subnet.
 * - The Backend section is kept as raw JSON; only Backend.Type is read here. The backend validates the rest.
 *
 * Every error names the source, the JSON path, the value and the rule, in one line.
 */
import { ConfigError, describeValue } from "./errors.js";
import { parseConfigJson } from "./json-text.js";
import { type Family, IPAddress, IPNet } from "./ip.js";

/**
 * A config value as it appears in an error message: strings quoted with control characters escaped, everything
 * else as bounded JSON, cut to about 80 characters (see describeValue).
 */
export function showValue(v: unknown): string {
  return describeValue(v);
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
 * Go's case folding of JSON object keys (encoding/json foldName): ASCII letters upper-cased, any other code
 * point mapped through simple lower-then-upper case, so the Kelvin sign folds to K and the long s to S.
 */
export function foldKey(key: string): string {
  let out = "";
  for (const ch of key) {
    const c = ch.codePointAt(0)!;
    if (c < 0x80) out += c >= 0x61 && c <= 0x7a ? String.fromCharCode(c - 0x20) : ch;
    else out += GO_FOLD.get(c) ?? ch;
  }
  return out;
}

/** Non-ASCII code points whose Go fold (unicode.ToUpper(unicode.ToLower(r))) is an ASCII letter. */
const GO_FOLD: ReadonlyMap<number, string> = new Map([
  [0x212a, "K"], // KELVIN SIGN
  [0x017f, "S"], // LATIN SMALL LETTER LONG S
  [0x0130, "I"], // LATIN CAPITAL LETTER I WITH DOT ABOVE (ToLower gives i)
  [0x0131, "I"], // LATIN SMALL LETTER DOTLESS I
]);

/**
 * Looks a key up the way Go's encoding/json fills a struct field: every key equal to `name` under Go's case
 * folding assigns the field in text order, so the LAST one wins; a `null` value leaves the field unchanged
 * (Go ignores null for value fields), so it counts only when every match is null. Objects from
 * parseConfigJson list duplicate keys at their last position, so Object.keys order is text order.
 */
export function getKeyInsensitive(obj: Readonly<Record<string, unknown>>, name: string): { key: string; value: unknown } | undefined {
  const folded = foldKey(name);
  let last: { key: string; value: unknown } | undefined;
  let lastNull: { key: string; value: unknown } | undefined;
  for (const k of Object.keys(obj)) {
    if (k.length !== name.length) continue; // folding maps one UTF-16 unit to one: a match has the same length
    if (foldKey(k) !== folded) continue;
    const value = obj[k];
    if (value === null) lastNull = { key: k, value };
    else last = { key: k, value };
  }
  return last ?? lastNull;
}

/** Longest list of unknown keys a warning names; the rest are counted. */
const MAX_LISTED_UNKNOWN_KEYS = 10;

/** A key in a message: as is when it is a short plain name, else quoted, escaped and cut. */
export function showKey(key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/.test(key) ? key : describeValue(key, 40);
}

/**
 * The start of one warning for all unknown keys of an object: `unknown key Backend.X is` or `unknown keys
 * Backend.A, Backend.B and 49998 more are` (never one line per key: 50,000 keys make one bounded line). `at`
 * turns a key into its JSON path; the caller appends "ignored ..." and the known keys.
 */
export function unknownKeysPhrase(unknown: readonly string[], at: (shownKey: string) => string = (k) => k): string {
  const listed = unknown.slice(0, MAX_LISTED_UNKNOWN_KEYS).map((k) => at(showKey(k)));
  const more = unknown.length > listed.length ? ` and ${unknown.length - listed.length} more` : "";
  return unknown.length === 1 ? `unknown key ${listed[0]} is` : `unknown keys ${listed.join(", ")}${more} are`;
}

/** One warning for all unknown keys of an object, or undefined when there are none (see unknownKeysPhrase). */
export function unknownKeysWarning(where: string, unknown: readonly string[], known: readonly string[]): string | undefined {
  if (unknown.length === 0) return undefined;
  return `${where}: ${unknownKeysPhrase(unknown, (k) => (k.startsWith('"') ? k : `"${k}"`))} ignored (known keys: ${known.join(", ")})`;
}

/** IPv6 blocks an IPv6Network must not overlap, with what they are. */
const V6_UNUSABLE: ReadonlyArray<{ net: IPNet; what: string }> = [
  { net: IPNet.parse("::ffff:0:0/96"), what: "IPv4-mapped addresses" },
  { net: IPNet.parse("fe80::/10"), what: "link-local" },
  { net: IPNet.parse("ff00::/8"), what: "multicast" },
  { net: IPNet.parse("::1/128"), what: "loopback" },
  { net: IPNet.parse("::/128"), what: "the unspecified address" },
];

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

  if (typeof text !== "string") return fail("", `must be JSON text, got ${describeValue(text)}`);
  const raw = parseConfigJson(text, source);
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return fail("", `must be a JSON object like {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}, got ${showValue(raw)}`);
  }
  const obj = raw as Record<string, unknown>;
  const warnings: string[] = [];
  const known = new Set(KNOWN_KEYS.map((k) => foldKey(k)));
  const unknownWarning = unknownKeysWarning(source, Object.keys(obj).filter((k) => !known.has(foldKey(k))), KNOWN_KEYS);
  if (unknownWarning !== undefined) warnings.push(unknownWarning);
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
    // No CIDR is longer than 64 characters; the cap keeps a megabyte value away from the address parser.
    const parsed = netRaw.length <= 64 ? IPNet.tryParse(netRaw) : undefined;
    if (!parsed || parsed.net.family !== family) return fail(netKey, `${netKey} ${showValue(netRaw)} is not an ${famName} CIDR (expected e.g. ${family === "v4" ? "10.244.0.0/16" : "fd00:10:244::/56"})`);
    const network = parsed.net;
    if (parsed.hadHostBits) warnings.push(`${source}: ${netKey} ${showValue(netRaw)} has host bits set; using ${network}`);
    if (family === "v6") {
      // Blocks no pod network can use: IPv4-mapped addresses are IPv4 packets (and overlap Network), link-local
      // ones never leave the link, multicast, loopback and unspecified are not unicast destinations.
      const special = V6_UNUSABLE.find((b) => b.net.overlaps(network));
      if (special) {
        return fail(netKey, `${netKey} ${showValue(netRaw)} overlaps ${special.net} (${special.what}), which cannot carry pod traffic: choose a global or ULA block such as fd00:10:244::/56`);
      }
    }
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
      const ip = typeof v === "string" && v.length <= 64 ? IPAddress.tryParse(v) : undefined;
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

/**
 * net-conf.json text for a parsed config, with every derived value written out (SubnetLen, SubnetMin,
 * SubnetMax and their IPv6 twins) and the Backend section as it was read. Parsing the result with the same
 * options gives the same config: the round trip the fuzz properties check.
 */
export function formatNetworkConfig(config: NetworkConfig): string {
  const out: Record<string, unknown> = { EnableIPv4: config.enableIPv4, EnableIPv6: config.enableIPv6 };
  if (config.v4) {
    out.Network = config.v4.network.toString();
    out.SubnetLen = config.v4.subnetLen;
    out.SubnetMin = config.v4.subnetMin.toString();
    out.SubnetMax = config.v4.subnetMax.toString();
  }
  if (config.v6) {
    out.IPv6Network = config.v6.network.toString();
    out.IPv6SubnetLen = config.v6.subnetLen;
    out.IPv6SubnetMin = config.v6.subnetMin.toString();
    out.IPv6SubnetMax = config.v6.subnetMax.toString();
  }
  out.EnableNFTables = config.enableNFTables;
  out.Backend = config.backend;
  return JSON.stringify(out);
}
