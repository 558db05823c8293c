/**
 * Typed errors with stable codes (STYLE 9). Code strings are part of the public contract: operators grep
 * logs for them, metrics label by them, and tests assert on them. Never rename one; add new ones.
 */
export type WeftErrorCode =
  // configuration: permanent, the operator must change something
  | "CONFIG_INVALID"
  | "BACKEND_UNKNOWN"
  | "BACKEND_CONFIG_INVALID"
  | "BACKEND_MODULE_INVALID"
  | "BACKEND_TYPE_TAKEN"
  | "PEER_DATA_INVALID"
  // subnet store
  | "STORE_UNAVAILABLE"
  | "STORE_CONFLICT"
  | "SUBNETS_EXHAUSTED"
  | "LEASE_LOST"
  // kernel, classified once in the adapter
  | "KERNEL_EXISTS"
  | "KERNEL_NOT_FOUND"
  | "KERNEL_INVALID"
  | "KERNEL_PERMISSION"
  | "KERNEL_TRANSIENT"
  | "KERNEL_UNSUPPORTED"
  | "KERNEL_FAILED"
  // processes
  | "PROCESS_FAILED"
  | "PROCESS_MISSING";

const TRANSIENT: ReadonlySet<WeftErrorCode> = new Set(["STORE_UNAVAILABLE", "STORE_CONFLICT", "KERNEL_TRANSIENT"]);

/**
 * Base class of Weft's errors: a stable `code` (never renamed, see WeftErrorCode), a one-line message, and the
 * underlying `cause` when there is one.
 */
export class WeftError extends Error {
  override readonly name: string = "WeftError";
  constructor(
    readonly code: WeftErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** Transient errors are retried with backoff; everything else is reported and stops the operation. */
  get transient(): boolean {
    return TRANSIENT.has(this.code);
  }
}

/** A configuration value was rejected. `path` is the JSON path (e.g. `Backend.VNI`); the message names value and rule. */
export class ConfigError extends WeftError {
  override readonly name = "ConfigError";
  constructor(
    readonly source: string,
    readonly path: string,
    message: string,
    code: WeftErrorCode = "CONFIG_INVALID",
  ) {
    super(code, `${source}: ${message}`);
  }
}

/** True when `err` is a WeftError and, when `code` is given, carries that code. */
export function isWeftError(err: unknown, code?: WeftErrorCode): err is WeftError {
  return err instanceof WeftError && (code === undefined || err.code === code);
}

/** Best-effort one-line text for any thrown value. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
