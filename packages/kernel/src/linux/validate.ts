/**
 * Token validation for iproute2 batch lines. A batch line is split on whitespace by iproute2 (it also honours
 * quotes), so a value such as `eth0 dev lo` or `x"` would become several tokens, i.e. a second command or
 * option. Every value that goes into a line passes through one of these functions first; each returns the
 * canonical token or throws an InvalidValue naming the field, the value and the rule. Nothing here touches
 * the kernel: an invalid value is reported as KERNEL_INVALID for its op without sending anything.
 */
import { IPAddress, IPNet, IPPrefix, normalizeMac, type Family } from "@weft/core";

export class InvalidValue extends Error {
  override readonly name = "InvalidValue";
}

const fail = (field: string, value: unknown, rule: string): never => {
  throw new InvalidValue(`${field} ${JSON.stringify(value)} is invalid: ${rule}`);
};

/**
 * Interface names: what the kernel accepts (1-15 bytes, no '/', no whitespace) narrowed to a safe charset.
 * A leading '-' is refused too, so a name can never read as an option.
 */
const IFNAME = /^[A-Za-z0-9_.:][A-Za-z0-9_.:-]{0,14}$/;

export function ifname(field: string, v: unknown): string {
  if (typeof v !== "string" || !IFNAME.test(v) || v === "." || v === "..") {
    return fail(field, v, "use 1-15 characters from [A-Za-z0-9_.:-], not starting with '-'");
  }
  return v;
}

/** A named network namespace (/run/netns/<name>) or an absolute path to a namespace file. */
const NETNS_NAME = /^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}$/;
const NETNS_PATH = /^\/[A-Za-z0-9_.\/-]{1,4095}$/;

export function netnsRef(field: string, v: unknown): string {
  if (typeof v !== "string") return fail(field, v, "must be a namespace name or an absolute path");
  if (v.startsWith("/")) {
    if (!NETNS_PATH.test(v) || v.split("/").some((s) => s === "..")) return fail(field, v, "path must be absolute, without '..', from [A-Za-z0-9_./-]");
    return v;
  }
  if (!NETNS_NAME.test(v) || v === "." || v === "..") return fail(field, v, "names use [A-Za-z0-9_.-] and do not start with '-'");
  return v;
}

export function integer(field: string, v: unknown, min: number, max: number): string {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) return fail(field, v, `must be an integer in [${min}, ${max}]`);
  return String(v);
}

/*
 * IPv4 fast paths: a reconcile pass validates thousands of addresses, and the general parser (ipaddr.js +
 * bigint) costs ~15 µs per value. Text that matches CANONICAL_V4 is already the canonical token (decimal,
 * no leading zeros); anything else takes the general path, so both accept exactly what core's IPAddress does.
 */
const OCTET = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const CANONICAL_V4 = new RegExp(`^${OCTET}(?:\\.${OCTET}){3}$`);
const CANONICAL_V4_LEN = new RegExp(`^(${OCTET}(?:\\.${OCTET}){3})/(3[0-2]|[12]?\\d)$`);

/** True when `text` is an IPv4 address already in canonical form (what iproute2 prints). */
export function isCanonicalV4(text: string): boolean {
  return CANONICAL_V4.test(text);
}

function v4Value(text: string): number {
  let v = 0;
  for (const o of text.split(".")) v = v * 256 + Number(o);
  return v;
}

/** An address as its canonical token. */
export function address(field: string, v: unknown, family?: Family): string {
  if (typeof v === "string" && CANONICAL_V4.test(v) && family !== "v6") return v;
  const ip = typeof v === "string" ? IPAddress.tryParse(v) : undefined;
  if (!ip) return fail(field, v, "must be an IPv4 or IPv6 address");
  if (family && ip.family !== family) return fail(field, v, `must be an ${family === "v4" ? "IPv4" : "IPv6"} address`);
  return ip.toString();
}

/** A destination CIDR with host bits clear (the kernel refuses others with "Invalid prefix for given prefix length"). */
export function cidr(field: string, v: unknown, family?: Family): string {
  if (typeof v === "string" && family !== "v6") {
    const m = CANONICAL_V4_LEN.exec(v);
    if (m && v4Value(m[1]!) % 2 ** (32 - Number(m[2])) === 0) return v;
  }
  const r = typeof v === "string" ? IPNet.tryParse(v, true) : undefined;
  if (!r) return fail(field, v, "must be a CIDR with host bits clear, e.g. 198.19.2.0/24");
  if (family && r.net.family !== family) return fail(field, v, `must be an ${family === "v4" ? "IPv4" : "IPv6"} CIDR`);
  return r.net.toString();
}

/** An interface address with prefix length (host bits allowed), e.g. 198.19.1.1/24, as its canonical token. */
export function prefix(field: string, v: unknown): string {
  if (typeof v === "string" && CANONICAL_V4_LEN.test(v)) return v;
  const p = typeof v === "string" ? IPPrefix.tryParse(v) : undefined;
  if (!p) return fail(field, v, "must be an address with prefix length, e.g. 198.19.1.0/32");
  return p.toString();
}

export function mac(field: string, v: unknown): string {
  const m = typeof v === "string" ? normalizeMac(v) : undefined;
  if (!m) return fail(field, v, "must be a 48-bit MAC address such as 02:42:ac:11:00:02");
  return m;
}

export function oneOf<T extends string>(field: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) return fail(field, v, `must be one of ${allowed.join(", ")}`);
  return v as T;
}

/**
 * sysctl keys: `net.ipv4.ip_forward` or the slash form `net/ipv4/conf/eth0.1/forwarding` (needed when a
 * segment, e.g. a VLAN device name, contains a dot). Returns the path segments under /proc/sys.
 */
export function sysctlKey(v: unknown): string[] {
  if (typeof v !== "string" || v.length === 0 || v.length > 512) return fail("sysctl key", v, "must be a dotted or slash-separated key");
  const parts = v.includes("/") ? v.split("/") : v.split(".");
  for (const p of parts) {
    if (!/^[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$/.test(p) || p === "." || p === "..") {
      return fail("sysctl key", v, "segments use [A-Za-z0-9_.:-] (use the slash form when a segment contains a dot)");
    }
  }
  return parts;
}

export function sysctlValue(v: unknown): string {
  if (typeof v !== "string" || v.length > 4096 || /[\u0000-\u001f\u007f]/.test(v)) {
    return fail("sysctl value", v, "must be a single line of printable text");
  }
  return v;
}
