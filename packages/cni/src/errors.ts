/**
 * CNI errors. The spec's well-known codes (SPEC "Error" section) are what a runtime reads; the message is what an
 * operator reads in `kubectl describe pod` ("failed to setup network for sandbox ..."), so every message names the
 * field or file, the value, and the fix.
 */

/** Well-known CNI error codes (0-99 are reserved by the spec; 100+ are plugin specific). */
export const CniErrorCode = {
  /** Incompatible CNI version. */
  INCOMPATIBLE_VERSION: 1,
  /** Unsupported field in network configuration. */
  UNSUPPORTED_FIELD: 2,
  /** Container unknown or does not exist. */
  UNKNOWN_CONTAINER: 3,
  /** Invalid necessary environment variables (CNI_COMMAND, CNI_CONTAINERID, ...). */
  INVALID_ENVIRONMENT: 4,
  /** I/O failure (e.g. cannot read stdin or a file). */
  IO_FAILURE: 5,
  /** Failed to decode content (e.g. the network configuration is not JSON). */
  DECODING_FAILURE: 6,
  /** Invalid network configuration. */
  INVALID_NETWORK_CONFIG: 7,
  /** Transient condition; the runtime should retry later. */
  TRY_AGAIN_LATER: 11,
  /** STATUS: the plugin cannot service ADD requests. */
  PLUGIN_NOT_AVAILABLE: 50,
  /** STATUS: not available, and existing containers may have limited connectivity. */
  LIMITED_CONNECTIVITY: 51,
  /** Anything else. */
  INTERNAL: 999,
} as const;

export type CniErrorCodeValue = (typeof CniErrorCode)[keyof typeof CniErrorCode];

/** An error the plugin reports to the runtime as `{cniVersion, code, msg, details}` on stdout with exit code 1. */
export class CniError extends Error {
  override readonly name = "CniError";
  constructor(
    readonly code: number,
    message: string,
    readonly details?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Characters escaped when a value is shown in a message: controls, invisible and direction-changing ones, lone surrogates. */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb"\\]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

function escapeUnsafe(text: string, quotes: boolean): string {
  return text.replace(UNSAFE, (c) => {
    if (c === '"' || c === "\\") return quotes ? `\\${c}` : c;
    if (c === "\n") return "\\n";
    if (c === "\t") return "\\t";
    if (c === "\r") return "\\r";
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
}

function bounded(text: string, max: number, quotes: boolean): string {
  if (text.length <= max) return escapeUnsafe(text, quotes);
  return `${escapeUnsafe(text.slice(0, max), quotes)}…(${text.length} characters)`;
}

/**
 * A value as it appears in an error line: at most `max` characters (then "…" and the full length), with control,
 * invisible and bidirectional characters, quotes and backslashes escaped (`\n`, `\u001b`), so one message stays one
 * short line on a terminal whatever the runtime or a config sent. No quotes are added.
 */
export function showText(value: string, max = 80): string {
  return bounded(value, max, true);
}

/**
 * Any config value as it appears in an error line: strings quoted through {@link showText}, numbers and booleans
 * as they are, arrays and objects as bounded JSON (or their kind, when they cannot be rendered: deep nesting).
 */
export function showValue(value: unknown, max = 80): string {
  if (typeof value === "string") return `"${showText(value, max)}"`;
  if (value === null || typeof value === "number" || typeof value === "boolean") return String(value);
  if (value === undefined) return "nothing";
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch {
    json = undefined;
  }
  if (json === undefined) return Array.isArray(value) ? "an array" : `a ${typeof value}`;
  return bounded(json, max, false);
}

/** Invalid network configuration (code 7); `field` is the JSON path, e.g. `ipam.ranges[0][0].subnet`. */
export function invalidConfig(field: string, message: string): CniError {
  return new CniError(CniErrorCode.INVALID_NETWORK_CONFIG, `invalid network config: "${field}" ${message}`);
}

/** The error JSON the spec wants on stdout. */
export interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export function errorJson(err: CniError, cniVersion: string): CniErrorJson {
  const out: CniErrorJson = { cniVersion, code: err.code, msg: err.message };
  if (err.details) out.details = err.details;
  return out;
}

/** Wraps anything thrown into a CniError (internal error 999 unless it already is one). */
export function toCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const details = err instanceof Error && err.cause instanceof Error ? err.cause.message : undefined;
  return new CniError(CniErrorCode.INTERNAL, message, details, { cause: err });
}
