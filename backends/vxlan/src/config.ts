/**
 * The vxlan Backend section of net-conf.json and the BackendData a vxlan node publishes.
 *
 * Keys match case-insensitively, as Go's encoding/json does for Flannel (reference/flannel.md §3.1.1), so a
 * Flannel net-conf.json works unchanged. Flannel's Windows-only keys (MacPrefix, Name) are accepted and
 * ignored; any other unknown key becomes a warning the agent logs (a typo like "DirectRoute" would
 * otherwise silently do nothing).
 */
import { type Family, type JsonValue, ConfigError, type Schema, WeftError, getKeyInsensitive, normalizeMac, showValue, splitSchemaPath, foldKey, unknownKeysPhrase } from "@weft/core";

export const VXLAN_TYPE = "vxlan";
/** Linux's VXLAN port when none is given (the pre-IANA one; Flannel's default too). */
export const LINUX_DEFAULT_VXLAN_PORT = 8472;
export const MAX_VNI = 0xffffff;

/**
 * Bytes VXLAN adds to every packet, by underlay family: outer IP header (IPv4 20, IPv6 40) + UDP 8 + VXLAN 8 +
 * the inner Ethernet header 14. Flannel subtracts 50 for both families, which overfills an IPv6 underlay by
 * 20 bytes (flannel.md §7.3); Weft uses the real figure. GBP reuses reserved header bits and adds nothing.
 * The one place these numbers live: the module's mtuOverhead and the device MTU both read them here.
 */
export const VXLAN_OVERHEAD: Readonly<Record<Family, number>> = { v4: 50, v6: 70 };

export interface VxlanConfig {
  /** VXLAN network identifier; also names the devices (`weft.<VNI>`, `weft-v6.<VNI>`). */
  readonly vni: number;
  /** UDP destination port; 0 leaves it to the kernel (8472). */
  readonly port: number;
  /** Underlay MTU; 0 means the chosen interface's MTU. The device gets this minus the encapsulation overhead. */
  readonly mtu: number;
  readonly gbp: boolean;
  readonly learning: boolean;
  /** Peers on this node's L2 segment get a plain route via their PublicIP instead of the tunnel. */
  readonly directRouting: boolean;
  /** Weft's opt-in workaround for the "63-second delay" kernel bug (flannel.md §7.5). */
  readonly disableTxChecksumOffload: boolean;
  /** Non-fatal findings (unknown keys); the agent logs them once at start (configWarnings). */
  readonly warnings: readonly string[];
}

const KNOWN = ["Type", "VNI", "Port", "MTU", "GBP", "Learning", "DirectRouting", "DisableTxChecksumOffload"] as const;
/** Flannel keys that only mean something on Windows; accepted so a Flannel config validates. */
const WINDOWS_ONLY = ["MacPrefix", "Name"] as const;



export const vxlanConfigSchema: Schema<VxlanConfig> = {
  parse(input: unknown, path: string): VxlanConfig {
    const { source, jsonPath } = splitSchemaPath(path);
    const fail = (key: string, msg: string): never => {
      throw new ConfigError(source, key ? `${jsonPath}.${key}` : jsonPath, msg, "BACKEND_CONFIG_INVALID");
    };
    if (input === null || typeof input !== "object" || Array.isArray(input)) {
      return fail("", `${jsonPath} ${showValue(input)} must be an object like {"Type": "vxlan", "VNI": 1}`);
    }
    const obj = input as Record<string, unknown>;
    const at = (key: string) => `${jsonPath}.${key}`;
    const get = (key: string) => getKeyInsensitive(obj, key)?.value;

    const int = (key: string, def: number, lo: number, hi: number, rule: string): number => {
      const v = get(key);
      if (v === undefined || v === null) return def;
      if (typeof v !== "number" || !Number.isInteger(v)) return fail(key, `${at(key)} ${showValue(v)} must be an integer for vxlan: ${rule}`);
      if (v < lo || v > hi) return fail(key, `${at(key)} ${v} is out of range for vxlan: ${rule}`);
      return v;
    };
    const bool = (key: string): boolean => {
      const v = get(key);
      if (v === undefined || v === null) return false;
      if (typeof v !== "boolean") return fail(key, `${at(key)} ${showValue(v)} must be true or false for vxlan`);
      return v;
    };

    const vni = int("VNI", 1, 1, MAX_VNI, `must be 1..${MAX_VNI}`);
    const port = int("Port", 0, 0, 65535, `must be 1..65535, or 0 for the kernel default ${LINUX_DEFAULT_VXLAN_PORT}`);
    const mtu = int("MTU", 0, 0, 65535, "must be the underlay MTU (576..65535), or 0 for the interface's MTU");
    if (mtu !== 0 && mtu < 576) fail("MTU", `${at("MTU")} ${mtu} is out of range for vxlan: must be the underlay MTU (576..65535), or 0 for the interface's MTU`);

    const known = new Set<string>([...KNOWN, ...WINDOWS_ONLY].map((k) => foldKey(k)));
    const unknown = Object.keys(obj).filter((k) => !known.has(foldKey(k)));
    // One line for all unknown keys, bounded (issue 15 #12).
    const warnings = unknown.length === 0 ? [] : [`${source}: ${unknownKeysPhrase(unknown, at)} ignored by vxlan (known keys: ${KNOWN.join(", ")})`];

    return Object.freeze({
      vni,
      port,
      mtu,
      gbp: bool("GBP"),
      learning: bool("Learning"),
      directRouting: bool("DirectRouting"),
      disableTxChecksumOffload: bool("DisableTxChecksumOffload"),
      warnings,
    });
  },
};

/** What a vxlan node publishes per family: Flannel's exact BackendData, `{"VNI":1,"VtepMAC":"..."}`. */
export interface VxlanLeaseData {
  readonly vni: number;
  /** Lower-case colon form. */
  readonly vtepMAC: string;
}

export function encodeVxlanLeaseData(d: VxlanLeaseData): JsonValue {
  return { VNI: d.vni, VtepMAC: d.vtepMAC };
}

/**
 * Validates a peer's BackendData (or BackendV6Data). `path` names the peer and field, e.g.
 * `peer n2 (198.19.2.0-24) BackendData`. Rejections are WeftError PEER_DATA_INVALID.
 */
export const vxlanLeaseDataSchema: Schema<VxlanLeaseData> = {
  parse(input: unknown, path: string): VxlanLeaseData {
    const fail = (msg: string): never => {
      throw new WeftError("PEER_DATA_INVALID", `${path}: ${msg}`);
    };
    if (input === null || typeof input !== "object" || Array.isArray(input)) {
      return fail(`${showValue(input)} is not vxlan data: expected {"VNI": 1, "VtepMAC": "aa:bb:cc:dd:ee:ff"}`);
    }
    const obj = input as Record<string, unknown>;
    const vni = getKeyInsensitive(obj, "VNI")?.value;
    if (typeof vni !== "number" || !Number.isInteger(vni) || vni < 1 || vni > MAX_VNI) return fail(`VNI ${showValue(vni)} must be an integer 1..${MAX_VNI}`);
    const macRaw = getKeyInsensitive(obj, "VtepMAC")?.value;
    const mac = typeof macRaw === "string" ? normalizeMac(macRaw) : undefined;
    if (!mac) return fail(`VtepMAC ${showValue(macRaw)} is not a MAC address like "aa:bb:cc:dd:ee:ff"`);
    if (!isUnicastMac(mac)) return fail(`VtepMAC ${mac} is not a unicast MAC (multicast bit set or all zeros)`);
    return { vni, vtepMAC: mac };
  },
};

export function isUnicastMac(mac: string): boolean {
  const bytes = mac.split(":").map((h) => parseInt(h, 16));
  return (bytes[0]! & 1) === 0 && bytes.some((b) => b !== 0);
}
