/**
 * The ipsec Backend section of net-conf.json.
 *
 * Keys are Flannel's (reference/flannel.md §3.4.1) and match case-insensitively, so a Flannel net-conf.json works
 * unchanged: `PSK` (at least 96 characters), `UDPEncap`, `ESPProposal`. Weft adds `PSKFile` (the PSK from a file,
 * e.g. a mounted Secret, instead of the ConfigMap; exactly one of the two) and `Mode` (auto | kernel | libipsec).
 * The PSK is a secret: no error, warning or log line carries it or a piece of it.
 */
import { readFileSync } from "node:fs";
import { ConfigError, type Family, WeftError, getKeyInsensitive, showValue, splitSchemaPath, type Schema, foldKey, unknownKeysPhrase } from "@weft/core";

export const IPSEC_TYPE = "ipsec";
/** Flannel's minimum PSK length ("config error, password is too short"). */
export const MIN_PSK_LENGTH = 96;
/** Flannel's default ESP proposal for the CHILD_SA. */
export const DEFAULT_ESP_PROPOSAL = "aes128gcm16-sha256-prfsha256-ecp256";
/** Flannel's IKE proposal (not configurable there either). */
export const IKE_PROPOSAL = "aes256-sha256-modp4096";

/**
 * Bytes IPsec adds, Flannel's figures: outer IP 20, SPI 4, sequence 4, IV 16, padding 0–15, pad length 1, next
 * header 1, ICV 16 = 77; UDP encapsulation (NAT-T, forced by UDPEncap, always with kernel-libipsec) adds 8.
 * The one place these numbers live.
 */
export const IPSEC_OVERHEAD = 77;
export const UDP_ENCAP_OVERHEAD = 8;

/**
 * `kernel`: charon installs SAs and policies in the kernel's XFRM (needs the kernel's ESP transform).
 * `libipsec`: charon's kernel-libipsec does ESP in userspace through the TUN `ipsec0`, always in UDP 4500.
 * `auto` (default): kernel when this kernel has ESP, libipsec otherwise; chosen at start, reported in /status.
 */
export type IpsecMode = "auto" | "kernel" | "libipsec";
const MODES: readonly IpsecMode[] = ["auto", "kernel", "libipsec"];

export interface IpsecConfig {
  /** The PSK given inline (never log it); undefined when it comes from `pskFile`. */
  readonly psk?: string;
  /** A file holding the PSK (its content, trailing newline dropped). */
  readonly pskFile?: string;
  readonly udpEncap: boolean;
  readonly espProposal: string;
  readonly mode: IpsecMode;
  readonly warnings: readonly string[];
}

const KNOWN = ["Type", "PSK", "PSKFile", "UDPEncap", "ESPProposal", "Mode"] as const;
const PROPOSAL = /^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$/;

/** The rule a PSK breaks, or undefined. Never includes the value. */
export function pskProblem(psk: string): string | undefined {
  if (psk.length < MIN_PSK_LENGTH) {
    return `is too short: ${psk.length} characters, ipsec needs at least ${MIN_PSK_LENGTH} (value not shown); generate one with \`openssl rand -hex 48\``;
  }
  if (/[\r\n\0]/.test(psk)) return "contains a line break or NUL (value not shown): put the key on one line";
  return undefined;
}

/**
 * The PSK of `config`: inline, or read from PSKFile (trailing newline dropped). Throws one CONFIG_INVALID line
 * naming Backend.PSKFile when the file cannot be read or its content breaks the rules.
 */
export function readPsk(config: IpsecConfig): string {
  if (config.psk !== undefined) return config.psk;
  const file = config.pskFile!;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new WeftError("BACKEND_CONFIG_INVALID", `ipsec: Backend.PSKFile ${showValue(file)} cannot be read (${code}): mount the Secret there or fix the path`);
  }
  const psk = text.replace(/\r?\n$/, "");
  const problem = pskProblem(psk);
  if (problem) throw new WeftError("BACKEND_CONFIG_INVALID", `ipsec: the key in Backend.PSKFile ${showValue(file)} ${problem}`);
  return psk;
}

/** Pod MTU overhead for a mode: libipsec (and auto, which may become it) always encapsulates in UDP. */
export function ipsecOverhead(config: Pick<IpsecConfig, "udpEncap" | "mode">, _family: Family): number {
  return IPSEC_OVERHEAD + (config.udpEncap || config.mode !== "kernel" ? UDP_ENCAP_OVERHEAD : 0);
}

export const ipsecConfigSchema: Schema<IpsecConfig> = {
  parse(input: unknown, path: string): IpsecConfig {
    const { source, jsonPath } = splitSchemaPath(path);
    const at = (key: string) => `${jsonPath}.${key}`;
    const fail = (key: string, msg: string): never => {
      throw new ConfigError(source, key ? at(key) : jsonPath, msg, "BACKEND_CONFIG_INVALID");
    };
    if (input === null || typeof input !== "object" || Array.isArray(input)) {
      return fail("", `${jsonPath} ${showValue(input)} must be an object like {"Type": "ipsec", "PSK": "<96+ characters>"}`);
    }
    const obj = input as Record<string, unknown>;
    const get = (key: string) => {
      const v = getKeyInsensitive(obj, key)?.value;
      return v === null || v === "" ? undefined : v;
    };

    const pskRaw = get("PSK");
    const fileRaw = get("PSKFile");
    if (pskRaw !== undefined && fileRaw !== undefined) {
      fail("PSKFile", `${at("PSK")} and ${at("PSKFile")} are both set for ipsec: use exactly one (PSKFile for a key from a mounted Secret)`);
    }
    if (pskRaw === undefined && fileRaw === undefined) {
      fail("PSK", `${at("PSK")} is required for ipsec (at least ${MIN_PSK_LENGTH} characters, e.g. \`openssl rand -hex 48\`), or ${at("PSKFile")} naming a file that holds it`);
    }
    let psk: string | undefined;
    if (pskRaw !== undefined) {
      // Never echo the value: it is a secret, and a near-miss is nearly the real key.
      if (typeof pskRaw !== "string") fail("PSK", `${at("PSK")} must be a string for ipsec (value not shown)`);
      const problem = pskProblem(pskRaw as string);
      if (problem) fail("PSK", `${at("PSK")} ${problem}`);
      psk = pskRaw as string;
    }
    let pskFile: string | undefined;
    if (fileRaw !== undefined) {
      if (typeof fileRaw !== "string" || !fileRaw.startsWith("/")) fail("PSKFile", `${at("PSKFile")} ${showValue(fileRaw)} must be an absolute file path for ipsec`);
      pskFile = fileRaw as string;
    }

    const encapRaw = get("UDPEncap");
    if (encapRaw !== undefined && typeof encapRaw !== "boolean") fail("UDPEncap", `${at("UDPEncap")} ${showValue(encapRaw)} must be true or false for ipsec`);
    const udpEncap = encapRaw === true;

    const espRaw = get("ESPProposal") ?? DEFAULT_ESP_PROPOSAL;
    if (typeof espRaw !== "string" || !PROPOSAL.test(espRaw)) {
      fail("ESPProposal", `${at("ESPProposal")} ${showValue(espRaw)} is not an ESP proposal for ipsec: algorithms joined by "-", like ${DEFAULT_ESP_PROPOSAL}`);
    }

    const modeRaw = get("Mode") ?? "auto";
    const mode = typeof modeRaw === "string" ? (modeRaw.toLowerCase() as IpsecMode) : undefined;
    if (!mode || !MODES.includes(mode)) fail("Mode", `${at("Mode")} ${showValue(modeRaw)} is not an ipsec mode: use one of ${MODES.join(", ")}`);

    const known = new Set<string>(KNOWN.map((k) => foldKey(k)));
    const unknown = Object.keys(obj).filter((k) => !known.has(foldKey(k)));
    // One line for all unknown keys, bounded (issue 15 #12).
    const warnings = unknown.length === 0 ? [] : [`${source}: ${unknownKeysPhrase(unknown, at)} ignored by ipsec (known keys: ${KNOWN.join(", ")})`];
    return Object.freeze({
      ...(psk !== undefined ? { psk } : {}),
      ...(pskFile !== undefined ? { pskFile } : {}),
      udpEncap,
      espProposal: espRaw as string,
      mode: mode!,
      warnings,
    });
  },
};
