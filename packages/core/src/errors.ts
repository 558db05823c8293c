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

/** Longest value echoed in a message; longer values are cut and marked with their full length. */
export const MAX_SHOWN_VALUE_CHARS = 80;

/**
 * A value as it appears in a one-line message: strings JSON-quoted (so control characters are escaped), other
 * values as bounded JSON (non-finite numbers by name, nesting and size capped), cut to about
 * MAX_SHOWN_VALUE_CHARS characters with the full length noted. Never throws, never recurses without bound.
 */
export function describeValue(v: unknown, max: number = MAX_SHOWN_VALUE_CHARS): string {
  let out: string;
  try {
    out = render(v, max + 1);
  } catch {
    out = `<${typeof v}>`;
  }
  if (out.length <= max) return out;
  const total = typeof v === "string" ? ` (${v.length} chars)` : "";
  return `${out.slice(0, max)}…${total}`;
}

function render(v: unknown, budget: number): string {
  const parts: string[] = [];
  let used = 0;
  const push = (s: string): boolean => {
    parts.push(s);
    used += s.length;
    return used < budget;
  };
  const visit = (x: unknown, depth: number): boolean => {
    if (typeof x === "string") return push(JSON.stringify(x.length > budget ? x.slice(0, budget) : x));
    if (typeof x === "number") return push(String(x)); // Infinity and NaN by name, never JSON's "null"
    if (typeof x === "bigint") return push(`${x}`);
    if (x === null || typeof x === "boolean") return push(String(x));
    if (x === undefined) return push("undefined");
    if (typeof x !== "object") return push(`<${typeof x}>`);
    if (depth >= 8) return push(Array.isArray(x) ? "[…]" : "{…}");
    if (Array.isArray(x)) {
      if (!push("[")) return false;
      for (let i = 0; i < x.length; i++) {
        if (i > 0 && !push(",")) return false;
        if (!visit(x[i], depth + 1)) return false;
      }
      return push("]");
    }
    if (!push("{")) return false;
    let first = true;
    for (const k of Object.keys(x)) {
      if (!first && !push(",")) return false;
      first = false;
      if (!push(`${JSON.stringify(k.length > budget ? k.slice(0, budget) : k)}:`)) return false;
      if (!visit((x as Record<string, unknown>)[k], depth + 1)) return false;
    }
    return push("}");
  };
  visit(v, 0);
  return parts.join("");
}
