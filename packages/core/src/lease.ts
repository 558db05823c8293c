/**
 * Leases: one node's claim on a pod subnet (IPv4 and/or IPv6) plus the attributes peers need to reach it.
 * The wire formats are Flannel's (reference/flannel.md §1.4, §4.2.1) so Weft and Flannel read each other's
 * leases: the etcd subnet key `A.B.C.D-len[&ipv6-len]` and the LeaseAttrs JSON object.
 */
import { describeValue } from "./errors.js";
import { parseConfigJson } from "./json-text.js";
import { type Family, IPAddress, IPNet } from "./ip.js";

/** JSON-compatible value: backend data is opaque to core and validated by the backend's own schema. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

/**
 * What a node publishes with its lease (Flannel's LeaseAttrs): the public addresses peers send to, the backend
 * type, and the backend's opaque per-family data.
 */
export interface LeaseAttrs {
  readonly publicIP?: IPAddress;
  readonly publicIPv6?: IPAddress;
  readonly backendType: string;
  readonly backendData?: JsonValue;
  readonly backendV6Data?: JsonValue;
}

/** One node's claim on its pod subnet(s), IPv4 and/or IPv6, with the attributes peers need to reach it. */
export interface Lease {
  readonly subnet?: IPNet;
  readonly ipv6Subnet?: IPNet;
  readonly attrs: LeaseAttrs;
  /** When the store will drop the lease unless renewed; undefined for reservations and kube leases. */
  readonly expiration?: Date;
  /** Store revision the lease was read at (etcd mod revision / kube resourceVersion), for ordering. */
  readonly revision?: string;
  /** Kube node name, when the store knows it. */
  readonly nodeName?: string;
}

/** A batch from the store's lease stream, about other nodes only (never the local lease). */
export type LeaseEvent =
  | { readonly type: "snapshot"; readonly leases: readonly Lease[] }
  | { readonly type: "added"; readonly lease: Lease }
  | { readonly type: "removed"; readonly lease: Lease };

/** The lease's subnet of `family`, or undefined when the lease has none. */
export function leaseSubnet(lease: Pick<Lease, "subnet" | "ipv6Subnet">, family: Family): IPNet | undefined {
  return family === "v4" ? lease.subnet : lease.ipv6Subnet;
}

/** Flannel's subnet key: `198.19.1.0-24`, `198.19.1.0-24&2001:2:0:1::-64`, IPv6-only `0.0.0.0-0&2001:2:0:1::-64`. */
export function subnetKey(lease: Pick<Lease, "subnet" | "ipv6Subnet">): string {
  const v4 = lease.subnet ? `${lease.subnet.ip}-${lease.subnet.prefix}` : "0.0.0.0-0";
  return lease.ipv6Subnet ? `${v4}&${lease.ipv6Subnet.ip}-${lease.ipv6Subnet.prefix}` : v4;
}

/** Parses a subnet key; undefined when malformed. */
export function parseSubnetKey(key: string): { subnet?: IPNet; ipv6Subnet?: IPNet } | undefined {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})-(\d{1,2})(?:&([0-9a-fA-F:.]+)-(\d{1,3}))?$/.exec(key);
  if (!m) return undefined;
  const out: { subnet?: IPNet; ipv6Subnet?: IPNet } = {};
  if (!(m[1] === "0.0.0.0" && m[2] === "0")) {
    const r = IPNet.tryParse(`${m[1]}/${m[2]}`, true);
    if (!r || r.net.family !== "v4") return undefined;
    out.subnet = r.net;
  }
  if (m[3] !== undefined) {
    const r = IPNet.tryParse(`${m[3]}/${m[4]}`, true);
    if (!r || r.net.family !== "v6") return undefined;
    out.ipv6Subnet = r.net;
  }
  if (!out.subnet && !out.ipv6Subnet) return undefined;
  return out;
}

/** Flannel's LeaseAttrs JSON. Field names and shape are a compatibility contract. */
export interface LeaseAttrsJson {
  PublicIP: string;
  PublicIPv6: string | null;
  BackendType?: string;
  BackendData?: JsonValue;
  BackendV6Data?: JsonValue;
}

/**
 * Encodes attributes as Flannel's LeaseAttrs JSON (`PublicIP` is "0.0.0.0" when there is no IPv4 address, as
 * Flannel writes it).
 */
export function encodeLeaseAttrs(a: LeaseAttrs): string {
  const j: LeaseAttrsJson = {
    // Go's zero ip.IP4 marshals as "0.0.0.0"; an IPv6-only Flannel node writes exactly that.
    PublicIP: a.publicIP?.toString() ?? "0.0.0.0",
    PublicIPv6: a.publicIPv6?.toString() ?? null,
  };
  if (a.backendType) j.BackendType = a.backendType;
  if (a.backendData !== undefined) j.BackendData = a.backendData;
  if (a.backendV6Data !== undefined) j.BackendV6Data = a.backendV6Data;
  return JSON.stringify(j);
}

/**
 * The largest lease value (LeaseAttrs JSON) Weft reads: 64 KiB, hundreds of times what any backend publishes.
 * A longer value is refused before it is parsed, so one hostile lease cannot make every agent hold megabytes.
 */
export const MAX_LEASE_VALUE_CHARS = 64 * 1024;

/**
 * The deepest BackendData (BackendV6Data) Weft accepts: 32 levels of arrays/objects, far beyond any backend's
 * data. Deeper data is refused before anything walks it recursively (JSON.stringify of 5,000 levels overflows
 * the stack; that once stopped an agent's whole peer watch).
 */
export const MAX_BACKEND_DATA_DEPTH = 32;

/**
 * Why a JSON value is too deep or too large to be walked safely, or undefined when it is neither: nested deeper
 * than `maxDepth`, or more than `maxChars` characters of JSON (strings, keys and punctuation counted roughly).
 * Walks iteratively and stops at the first excess, so it costs at most `maxChars` steps whatever it is given
 * (a cyclic object is "too large", never a hang). Never throws.
 */
export function jsonValueProblem(value: unknown, maxDepth: number = MAX_BACKEND_DATA_DEPTH, maxChars: number = MAX_LEASE_VALUE_CHARS): string | undefined {
  const stack: Array<[unknown, number]> = [[value, 0]];
  let chars = 0;
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v === "string") chars += v.length + 2;
    else if (v === null || typeof v !== "object") chars += 5;
    else {
      if (depth >= maxDepth) return `is nested more than ${maxDepth} levels deep`;
      chars += 2;
      if (Array.isArray(v)) {
        if (v.length > maxChars) return `is more than ${maxChars} characters of JSON`;
        for (let i = 0; i < v.length; i++) stack.push([v[i], depth + 1]);
      } else {
        const keys = Object.keys(v);
        if (keys.length > maxChars) return `is more than ${maxChars} characters of JSON`;
        for (const k of keys) {
          chars += k.length + 3;
          stack.push([(v as Record<string, unknown>)[k], depth + 1]);
        }
      }
    }
    if (chars > maxChars) return `is more than ${maxChars} characters of JSON`;
  }
  return undefined;
}

/**
 * Why a lease's attributes cannot be used safely (BackendData or BackendV6Data too deep or too large), naming
 * the field, or undefined. Run before anything walks the data recursively (a fingerprint, a schema, a log).
 */
export function leaseAttrsProblem(attrs: LeaseAttrs): string | undefined {
  if (typeof attrs.backendType === "string" && attrs.backendType.length > 256) return `BackendType ${describeValue(attrs.backendType)} is longer than 256 characters`;
  for (const [field, v] of [
    ["BackendData", attrs.backendData],
    ["BackendV6Data", attrs.backendV6Data],
  ] as const) {
    if (v === undefined || v === null) continue;
    const problem = jsonValueProblem(v);
    if (problem) return `${field} ${problem}`;
  }
  return undefined;
}

/**
 * Decodes LeaseAttrs JSON; throws a TypeError naming the field on malformed input. Keys match
 * case-insensitively, and as in Go's encoding/json (Flannel) the last key that matches a field wins. A value
 * over MAX_LEASE_VALUE_CHARS, or backend data nested deeper than MAX_BACKEND_DATA_DEPTH, is refused.
 */
export function decodeLeaseAttrs(text: string): LeaseAttrs {
  if (typeof text !== "string") throw new TypeError(`lease attributes must be JSON text, not ${typeof text}`);
  if (text.length > MAX_LEASE_VALUE_CHARS) {
    throw new TypeError(`lease attributes are ${text.length} characters long, over the ${MAX_LEASE_VALUE_CHARS} a lease may hold`);
  }
  let raw: unknown;
  try {
    raw = parseConfigJson(text, "lease attributes", MAX_LEASE_VALUE_CHARS); // Go's rules: the last of duplicate keys wins, in text order
  } catch (e) {
    throw new TypeError(`lease attributes are not JSON: ${describeValue((e as Error).message, 120).replace(/^"|"$/g, "")}`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new TypeError("lease attributes must be a JSON object");
  const o = raw as Record<string, unknown>;
  // Go's encoding/json assigns every key that matches a field case-insensitively, in text order: the last wins.
  const get = (name: string): unknown => {
    const lower = name.toLowerCase();
    let found: unknown;
    for (const k of Object.keys(o)) if (k.toLowerCase() === lower) found = o[k];
    return found;
  };
  const ipField = (name: string, family: Family): IPAddress | undefined => {
    const v = get(name);
    if (v === undefined || v === null || v === "" || v === "0.0.0.0" || v === "::") return undefined;
    const ip = typeof v === "string" ? IPAddress.tryParse(v) : undefined;
    if (!ip || ip.family !== family) throw new TypeError(`${name} ${describeValue(v)} is not an ${family === "v4" ? "IPv4" : "IPv6"} address`);
    return ip;
  };
  const backendType = get("BackendType");
  if (backendType !== undefined && backendType !== null && typeof backendType !== "string") {
    throw new TypeError(`BackendType ${describeValue(backendType)} must be a string`);
  }
  const publicIP = ipField("PublicIP", "v4");
  const publicIPv6 = ipField("PublicIPv6", "v6");
  const backendData = get("BackendData") as JsonValue | undefined;
  const backendV6Data = get("BackendV6Data") as JsonValue | undefined;
  const problem = leaseAttrsProblem({ backendType: (backendType as string | undefined) ?? "", ...(backendData !== undefined ? { backendData } : {}), ...(backendV6Data !== undefined ? { backendV6Data } : {}) });
  if (problem) throw new TypeError(problem);
  return {
    ...(publicIP ? { publicIP } : {}),
    ...(publicIPv6 ? { publicIPv6 } : {}),
    backendType: (backendType as string | undefined) ?? "",
    ...(backendData !== undefined ? { backendData } : {}),
    ...(backendV6Data !== undefined ? { backendV6Data } : {}),
  };
}

/** Two leases name the same node's subnet (Flannel's "same subnet" rule across v4-only, v6-only and dual-stack). */
export function sameSubnets(a: Pick<Lease, "subnet" | "ipv6Subnet">, b: Pick<Lease, "subnet" | "ipv6Subnet">): boolean {
  const eq = (x?: IPNet, y?: IPNet) => (x === undefined ? y === undefined : x.equals(y));
  return eq(a.subnet, b.subnet) && eq(a.ipv6Subnet, b.ipv6Subnet);
}
