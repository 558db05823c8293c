/**
 * etcd endpoint parsing: what `--etcd-endpoints` may hold, and the credentials some operators put in it.
 *
 * An endpoint is `http://host:port`, `https://host:port`, `unix:///absolute/path` (or `unix://relative`), or a
 * bare `host:port` (taken as http). `user:password@` after the scheme (or at the start of a bare endpoint) is
 * accepted: it is taken OUT of the URL before the etcd client sees it and passed to the client as its
 * username/password instead, so no gRPC target, error text or log line can carry it. Everything up to the LAST
 * `@` is the credential part, so a password may contain `@`, `/` and `:` as typed; `%XX` escapes in it are
 * decoded (as Go's url.Parse does), and the raw and decoded forms are both registered for log redaction.
 *
 * Anything else (another scheme such as `ftp://`, no port, spaces or control characters, a port out of range) is
 * refused at start with one ConfigError line that names the field, shows the value without its credentials and
 * says what to write instead: an endpoint that can never work must not be retried forever.
 */
import { ConfigError, describeValue, registerSecret } from "@weft/core";

/** etcd's largest lease TTL (lease.MaxLeaseTTL, 9,000,000,000 s); a larger grant fails with OUT_OF_RANGE. */
export const MAX_ETCD_LEASE_TTL_SECONDS = 9_000_000_000;

/** One endpoint, split into what the client dials and the credentials it carried. */
export interface ParsedEndpoint {
  /** The URL handed to the etcd client: never contains credentials. Bare `host:port` becomes `http://host:port`. */
  readonly url: string;
  readonly scheme: "http" | "https" | "unix";
  /** From `user:password@`, when present. */
  readonly username?: string;
  /** From `user:password@`, percent-decoded. Never logged. */
  readonly password?: string;
}

const FIELD = "endpoints";
const SOURCE = "etcd options";
const EXAMPLE = "e.g. http://127.0.0.1:2379, https://etcd.example:2379 or unix:///run/etcd.sock";

/**
 * `endpoint` with any `user:password@` part removed, for logs. Total: any string is accepted and only a
 * credential-looking part is removed (a string that is not an endpoint comes back unchanged), so it can be
 * applied to every flag value. The credential part runs up to the LAST `@`, so a password containing `@` or
 * `/` leaves nothing behind. Without a scheme only `user:password@` (with a colon) counts as credentials.
 */
export function redactEndpoint(endpoint: string): string {
  const at = endpoint.lastIndexOf("@");
  if (at < 0) return endpoint;
  const m = /^[a-z][a-z0-9+.-]*:\/\//i.exec(endpoint);
  const start = m ? m[0].length : 0;
  if (at < start) return endpoint;
  if (!m && !endpoint.slice(0, at).includes(":")) return endpoint;
  return endpoint.slice(0, start) + endpoint.slice(at + 1);
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    // Not a valid escape sequence: the text is meant literally.
    return s;
  }
}

// host:port where host is a DNS name, an IPv4 address or a bracketed IPv6 address; an optional trailing "/".
const HOST_PORT = /^(?:\[([0-9a-fA-F:.]+(?:%[A-Za-z0-9._~-]+)?)\]|([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)):(\d{1,5})\/?$/;

/**
 * Parses one `--etcd-endpoints` entry (see the file comment). Throws ConfigError (field `endpoints`) with the
 * value shown without its credentials, escaped and cut to ~80 characters.
 */
export function parseEndpoint(raw: string): ParsedEndpoint {
  const shown = describeValue(redactEndpoint(raw));
  const bad = (why: string) => new ConfigError(SOURCE, FIELD, `etcd endpoint ${shown} (--etcd-endpoints) ${why}`);
  if (raw === "") throw bad(`is empty: give one, ${EXAMPLE}`);
  // Control characters and spaces never belong in an endpoint (and would be echoed raw by a client's error).
  if (/[\s\u0000-\u001f\u007f]/.test(raw)) throw bad(`contains whitespace or control characters: ${EXAMPLE}`);
  const schemeMatch = /^([a-z][a-z0-9+.-]*):\/\//i.exec(raw);
  let scheme: ParsedEndpoint["scheme"];
  let rest: string;
  if (schemeMatch) {
    const s = schemeMatch[1]!.toLowerCase();
    if (s !== "http" && s !== "https" && s !== "unix") {
      throw bad(`has the unsupported scheme ${describeValue(`${schemeMatch[1]}://`)}: use http://, https:// or unix:// (${EXAMPLE})`);
    }
    scheme = s;
    rest = raw.slice(schemeMatch[0].length);
  } else if (/^[a-z][a-z0-9+.-]*:[^0-9]/i.test(raw) && !raw.includes("@")) {
    // "ftp:/x", "mailto:x": a scheme without "//" is not an etcd endpoint either (but "user:pw@host:port" is).
    throw bad(`is not an etcd endpoint: ${EXAMPLE}`);
  } else {
    scheme = "http";
    rest = raw;
  }
  if (scheme === "unix") {
    // A socket path may contain '@' or ':' (our test sockets are named "host:port"); no credentials here.
    if (rest === "" || rest === "/") throw bad(`names no socket path: write unix:///absolute/path/to/etcd.sock`);
    return { url: `unix://${rest}`, scheme };
  }
  let username: string | undefined;
  let password: string | undefined;
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = userinfo.indexOf(":");
    if (colon < 0) throw bad(`carries a user name without a password: write ${scheme}://user:password@host:port, or use the etcd username and password options`);
    username = decode(userinfo.slice(0, colon));
    const rawPassword = userinfo.slice(colon + 1);
    password = decode(rawPassword);
    registerSecret(rawPassword);
    registerSecret(password);
    if (username === "") throw bad(`carries an empty user name before the password: write ${scheme}://user:password@host:port`);
  }
  const hp = HOST_PORT.exec(rest);
  if (!hp) {
    const what = /:\d{1,5}\/?$/.test(rest) ? "its host is not a DNS name or an IP address" : "it has no port";
    throw bad(`is not host:port (${what}): ${EXAMPLE}`);
  }
  const port = Number(hp[3]);
  if (port < 1 || port > 65_535) throw bad(`has port ${port}, outside 1-65535`);
  const host = hp[1] !== undefined ? `[${hp[1]}]` : hp[2]!;
  return {
    url: `${scheme}://${host}:${port}`,
    scheme,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
  };
}

/** The endpoints and the one username/password they (or the options) give. */
export interface EndpointSet {
  readonly endpoints: readonly ParsedEndpoint[];
  readonly username?: string;
  readonly password?: string;
}

/**
 * Parses every endpoint and settles the credentials: those in endpoints must agree with each other and with
 * the explicit `username`/`password` options (the etcd client authenticates once, for all endpoints).
 * http and https endpoints cannot be mixed (the client uses one channel security for all).
 */
export function parseEndpoints(raws: readonly string[], explicit: { username?: string; password?: string } = {}): EndpointSet {
  if (raws.length === 0) throw new ConfigError(SOURCE, FIELD, `no etcd endpoints given: pass at least one, ${EXAMPLE}`);
  const endpoints = raws.map(parseEndpoint);
  let username = explicit.username;
  let password = explicit.password;
  registerSecret(password);
  for (const e of endpoints) {
    if (e.username === undefined) continue;
    if (username === undefined) {
      username = e.username;
      password = e.password;
    } else if (username !== e.username || password !== e.password) {
      throw new ConfigError(
        SOURCE,
        FIELD,
        `etcd endpoint ${describeValue(redactEndpoint(e.url))} carries credentials that differ from ${explicit.username !== undefined ? "the etcd username/password options" : "another endpoint's"}: etcd takes one user for all endpoints; give it once (prefer the username option and WEFTD_ETCD_PASSWORD)`,
      );
    }
  }
  const http = endpoints.filter((e) => e.scheme === "http").length;
  const https = endpoints.filter((e) => e.scheme === "https").length;
  if (http > 0 && https > 0) {
    throw new ConfigError(SOURCE, FIELD, `etcd endpoints mix http:// and https:// (${endpoints.map((e) => e.url).join(",").slice(0, 80)}): use one scheme for all`);
  }
  return { endpoints, ...(username !== undefined ? { username } : {}), ...(password !== undefined ? { password } : {}) };
}

/**
 * Checks an etcd lease TTL against etcd's own range at start, so an out-of-range TTL is one clear line instead
 * of every grant failing with OUT_OF_RANGE (which looks like an unreachable etcd).
 */
export function checkLeaseTtl(ttlSeconds: number, field = "leaseTtlSeconds"): void {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_ETCD_LEASE_TTL_SECONDS) {
    throw new ConfigError(
      SOURCE,
      field,
      `${field} ${describeValue(ttlSeconds)} is outside etcd's lease TTL range: use a whole number of seconds from 1 to ${MAX_ETCD_LEASE_TTL_SECONDS} (etcd's maximum; the default is 86400)`,
    );
  }
}
