/**
 * The wireguard Backend section of net-conf.json and the BackendData a wireguard node publishes.
 *
 * Keys are Flannel's (reference/flannel.md §3.3.1) and match case-insensitively, as Go's encoding/json does, so
 * a Flannel net-conf.json works unchanged. Unknown keys become warnings the agent logs once. The PSK is a
 * secret: errors about it name Backend.PSK and the expected form, never the value.
 */
import { ConfigError, type Family, type JsonValue, type Schema, WeftError, getKeyInsensitive, showValue, splitSchemaPath, foldKey, unknownKeysPhrase } from "@weft/core";

export const WIREGUARD_TYPE = "wireguard";
export const DEFAULT_LISTEN_PORT = 51820;
export const DEFAULT_LISTEN_PORT_V6 = 51821;

/**
 * Bytes WireGuard adds to every packet: outer IP header + UDP 8 + WireGuard 32 (type/receiver/counter 16 and the
 * Poly1305 tag 16). Over IPv6 that is 40 + 8 + 32 = 80; over IPv4 only 60. Flannel subtracts 80 for both and so
 * does Weft: one device may carry peers of both underlay families in the single-tunnel modes, and 20 spare
 * bytes over IPv4 cost little. The one place this number lives.
 */
export const WIREGUARD_OVERHEAD: Readonly<Record<Family, number>> = { v4: 80, v6: 80 };

/** `separate`: one device per family (Flannel's default); the others: one device for both families. */
export type WireguardMode = "separate" | "auto" | "ipv4" | "ipv6";
const MODES: readonly WireguardMode[] = ["separate", "auto", "ipv4", "ipv6"];

export interface WireguardConfig {
  readonly listenPort: number;
  readonly listenPortV6: number;
  /** Underlay MTU; 0 means the chosen interface's MTU. Devices get this minus WIREGUARD_OVERHEAD. */
  readonly mtu: number;
  /** Pre-shared key, base64 of 32 bytes, or undefined. Never log it. */
  readonly psk?: string;
  /** Seconds; 0 = off. */
  readonly persistentKeepalive: number;
  readonly mode: WireguardMode;
  readonly warnings: readonly string[];
}

const KNOWN = ["Type", "ListenPort", "ListenPortV6", "MTU", "PSK", "PersistentKeepaliveInterval", "Mode"] as const;


/** A WireGuard key (private, public or pre-shared): base64 of exactly 32 bytes, as `wg genkey` prints it. */
export function isWireguardKey(s: string): boolean {
  return /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(s) && Buffer.from(s, "base64").length === 32;
}


export const wireguardConfigSchema: Schema<WireguardConfig> = {
  parse(input: unknown, path: string): WireguardConfig {
    const { source, jsonPath } = splitSchemaPath(path);
    const at = (key: string) => `${jsonPath}.${key}`;
    const fail = (key: string, msg: string): never => {
      throw new ConfigError(source, key ? at(key) : jsonPath, msg, "BACKEND_CONFIG_INVALID");
    };
    if (input === null || typeof input !== "object" || Array.isArray(input)) {
      return fail("", `${jsonPath} ${showValue(input)} must be an object like {"Type": "wireguard"}`);
    }
    const obj = input as Record<string, unknown>;
    const get = (key: string) => getKeyInsensitive(obj, key)?.value;
    const int = (key: string, def: number, lo: number, hi: number, rule: string): number => {
      const v = get(key);
      if (v === undefined || v === null) return def;
      if (typeof v !== "number" || !Number.isInteger(v)) return fail(key, `${at(key)} ${showValue(v)} must be an integer for wireguard: ${rule}`);
      if (v < lo || v > hi) return fail(key, `${at(key)} ${v} is out of range for wireguard: ${rule}`);
      return v;
    };
    const listenPort = int("ListenPort", DEFAULT_LISTEN_PORT, 1, 65535, "a UDP port 1..65535");
    const listenPortV6 = int("ListenPortV6", DEFAULT_LISTEN_PORT_V6, 1, 65535, "a UDP port 1..65535");
    const mtu = int("MTU", 0, 0, 65535, "the underlay MTU (576..65535), or 0 for the interface's MTU");
    if (mtu !== 0 && mtu < 576) fail("MTU", `${at("MTU")} ${mtu} is out of range for wireguard: the underlay MTU (576..65535), or 0 for the interface's MTU`);
    const persistentKeepalive = int("PersistentKeepaliveInterval", 0, 0, 65535, "seconds between keepalives, 0 for off");

    const modeRaw = get("Mode");
    let mode: WireguardMode = "separate";
    if (modeRaw !== undefined && modeRaw !== null && modeRaw !== "") {
      const m = typeof modeRaw === "string" ? (modeRaw.toLowerCase() as WireguardMode) : undefined;
      if (!m || !MODES.includes(m)) fail("Mode", `${at("Mode")} ${showValue(modeRaw)} is not a wireguard mode: use one of ${MODES.join(", ")}`);
      mode = m!;
    }

    let psk: string | undefined;
    const pskRaw = get("PSK");
    if (pskRaw !== undefined && pskRaw !== null && pskRaw !== "") {
      // Never echo the value: it is a secret, and a near-miss is nearly the real key.
      if (typeof pskRaw !== "string" || !isWireguardKey(pskRaw.trim())) {
        fail("PSK", `${at("PSK")} is not a WireGuard pre-shared key (value not shown): it must be base64 of 32 bytes, as printed by \`wg genpsk\``);
      }
      psk = (pskRaw as string).trim();
    }
    const known = new Set<string>(KNOWN.map((k) => foldKey(k)));
    const unknown = Object.keys(obj).filter((k) => !known.has(foldKey(k)));
    // One line for all unknown keys, bounded (issue 15 #12).
    const warnings = unknown.length === 0 ? [] : [`${source}: ${unknownKeysPhrase(unknown, at)} ignored by wireguard (known keys: ${KNOWN.join(", ")})`];
    if (mode !== "separate" && get("ListenPortV6") !== undefined) {
      warnings.push(`${source}: ${at("ListenPortV6")} is unused in Mode ${mode} (one device, listening on ${at("ListenPort")} ${listenPort})`);
    }
    return Object.freeze({ listenPort, listenPortV6, mtu, ...(psk ? { psk } : {}), persistentKeepalive, mode, warnings });
  },
};

/** What a wireguard node publishes per family: Flannel's exact BackendData, `{"PublicKey":"...","Port":51820}`. */
export interface WireguardLeaseData {
  readonly publicKey: string;
  /** The peer's listen port; Flannel leases from before 2025 have none (undefined: use our own port). */
  readonly port?: number;
}

export function encodeWireguardLeaseData(d: WireguardLeaseData): JsonValue {
  return { PublicKey: d.publicKey, ...(d.port !== undefined ? { Port: d.port } : {}) };
}

/** Validates a peer's BackendData / BackendV6Data; rejections are WeftError PEER_DATA_INVALID naming `path`. */
export const wireguardLeaseDataSchema: Schema<WireguardLeaseData> = {
  parse(input: unknown, path: string): WireguardLeaseData {
    const fail = (msg: string): never => {
      throw new WeftError("PEER_DATA_INVALID", `${path}: ${msg}`);
    };
    if (input === null || typeof input !== "object" || Array.isArray(input)) {
      return fail(`${showValue(input)} is not wireguard data: expected {"PublicKey": "<base64>", "Port": 51820}`);
    }
    const obj = input as Record<string, unknown>;
    const key = getKeyInsensitive(obj, "PublicKey")?.value;
    if (typeof key !== "string" || !isWireguardKey(key)) return fail(`PublicKey ${showValue(key)} is not a WireGuard public key (base64 of 32 bytes)`);
    const port = getKeyInsensitive(obj, "Port")?.value;
    if (port === undefined || port === null) return { publicKey: key };
    if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) return fail(`Port ${showValue(port)} must be a UDP port 1..65535`);
    return { publicKey: key, port };
  },
};
