/**
 * Credential redaction for text Weft did not write itself (a gRPC error, an HTTP client's message) and, as a
 * second line of defence, for every log line. The first line of defence is structural: the etcd store strips
 * `user:password@` from its endpoints before any client sees them, so their errors cannot carry them.
 *
 * Two things are removed:
 * - credential-looking URL parts: `scheme://user:pass@host` becomes `scheme://host`, and a bare
 *   `user:pass@host` becomes `host`. A password may itself contain `@`, `/` or `:`: everything up to the LAST
 *   `@` of the whitespace-delimited word is the credential part, so no piece of it is left behind.
 * - the secrets registered with {@link registerSecret} (the configured etcd password), verbatim, wherever they
 *   appear, as `(hidden)`. Secrets shorter than {@link MIN_VERBATIM_SECRET_CHARS} are not matched verbatim
 *   (they would blank ordinary words); the structural rules above still apply to them.
 */

/** What a redacted secret is replaced with. */
export const REDACTED = "(hidden)";

/** Registered secrets shorter than this are not replaced verbatim (a 2-character secret would blank words). */
export const MIN_VERBATIM_SECRET_CHARS = 3;

const secrets = new Set<string>();

/**
 * Registers a secret (a password from a flag, an endpoint or the environment) so that {@link redactCredentials}
 * removes it verbatim from any text, log lines included. Idempotent; empty strings are ignored. The percent-
 * decoded form of a URL password should be registered too when it differs.
 */
export function registerSecret(secret: string | undefined): void {
  if (secret !== undefined && secret.length >= MIN_VERBATIM_SECRET_CHARS) secrets.add(secret);
}

/** Forgets every registered secret (tests). */
export function clearRegisteredSecrets(): void {
  secrets.clear();
}

// A word: a run of non-whitespace. Quotes, brackets and commas stay inside a word on purpose: a password may
// contain them, and splitting there would leave a piece of it behind (an endpoint with whitespace is refused).
const WORD = /\S+/g;
// An explicit scheme ("http://", "unix://") anywhere in a word; the credential part follows the first one.
const SCHEME = /[a-z][a-z0-9+.-]*:\/\//i;

/** One word without its credential part (see the file comment), or unchanged. */
function redactWord(word: string): string {
  const at = word.lastIndexOf("@");
  if (at < 0) return word;
  const m = SCHEME.exec(word);
  const start = m && m.index < at ? m.index + m[0].length : 0;
  const userinfo = word.slice(start, at);
  // Without a scheme, only `user:pass@` is a credential (an interface name like "eth0@if5" is not). A Go-style
  // target prefix ("dns:user:pw@host") goes with the credential: nothing of it is kept.
  if (start === 0 && !userinfo.includes(":")) return word;
  return word.slice(0, start) + word.slice(at + 1);
}

/**
 * `text` with credentials removed: `scheme://user:pass@host` → `scheme://host`, `user:pass@host` → `host`,
 * and every registered secret (plus the `extraSecrets`) replaced by `(hidden)`. Never throws; linear in the
 * text's length per secret.
 */
export function redactCredentials(text: string, extraSecrets: readonly (string | undefined)[] = []): string {
  let out = text;
  const all = [...secrets, ...extraSecrets.filter((s): s is string => s !== undefined && s.length >= MIN_VERBATIM_SECRET_CHARS)];
  // Longest first, so a secret that contains another is removed whole.
  all.sort((a, b) => b.length - a.length);
  for (const s of all) if (out.includes(s)) out = out.split(s).join(REDACTED);
  if (!out.includes("@")) return out;
  return out.replace(WORD, redactWord);
}

/**
 * A copy of a log record's fields with every string (nested in arrays and plain objects, to a bounded depth)
 * passed through {@link redactCredentials}; an Error becomes its redacted message. Values that hold no string
 * are returned as they are.
 */
export function redactFields<T>(value: T, depth = 0): T {
  if (typeof value === "string") return redactCredentials(value) as T;
  if (value === null || typeof value !== "object") return value;
  if (depth >= 8) return value;
  if (value instanceof Error) return redactCredentials(value.message) as T;
  if (Array.isArray(value)) return value.map((v) => redactFields(v, depth + 1)) as T;
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = redactFields(v, depth + 1);
  return out as T;
}
