/**
 * IPv4/IPv6 address and CIDR value types. Parsing and formatting are done by ipaddr.js (maintained, strict
 * four-part decimal for IPv4, RFC 5952 output for IPv6); arithmetic is done on bigint so both families share
 * one code path. Values are immutable and compare by value.
 */
import ipaddr from "ipaddr.js";

/** An address family: `v4` (IPv4) or `v6` (IPv6). */
export type Family = "v4" | "v6";
/** Both families, IPv4 first. */
export const FAMILIES: readonly Family[] = ["v4", "v6"];

const BITS: Record<Family, number> = { v4: 32, v6: 128 };

/** Address width of `f` in bits: 32 for `v4`, 128 for `v6`. */
export function familyBits(f: Family): number {
  return BITS[f];
}

function bytesToBigint(bytes: number[]): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

function bigintToBytes(v: bigint, len: number): number[] {
  const out = new Array<number>(len);
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/**
 * An IPv4 or IPv6 address; immutable, compared by value with `equals`. Made by `parse`, `tryParse` or
 * `fromBigint`.
 */
export class IPAddress {
  private constructor(
    readonly family: Family,
    /** The address as an unsigned integer. */
    readonly value: bigint,
  ) {}

  /** Parses a textual address; returns undefined when it is not a valid IPv4 (dotted quad) or IPv6 address. */
  static tryParse(text: string): IPAddress | undefined {
    if (typeof text !== "string") return undefined;
    const s = text.trim();
    if (ipaddr.IPv4.isValidFourPartDecimal(s)) return new IPAddress("v4", bytesToBigint(ipaddr.IPv4.parse(s).toByteArray()));
    if (s.includes(":") && !s.includes("%") && ipaddr.IPv6.isValid(s)) {
      return new IPAddress("v6", bytesToBigint(ipaddr.IPv6.parse(s).toByteArray()));
    }
    return undefined;
  }

  /** Like `tryParse`, but throws a TypeError naming `text` when it is not an address. */
  static parse(text: string): IPAddress {
    const ip = IPAddress.tryParse(text);
    if (!ip) throw new TypeError(`"${text}" is not an IP address`);
    return ip;
  }

  /**
   * The `family` address whose unsigned integer value is `value`; throws a RangeError outside the family's
   * range.
   */
  static fromBigint(family: Family, value: bigint): IPAddress {
    const max = (1n << BigInt(BITS[family])) - 1n;
    if (value < 0n || value > max) throw new RangeError(`address value out of range for ${family}`);
    return new IPAddress(family, value);
  }

  /** Address width in bits: 32 or 128. */
  get bits(): number {
    return BITS[this.family];
  }

  /**
   * The address `n` places after this one (before it when `n` is negative); throws a RangeError past either end
   * of the address space.
   */
  add(n: bigint | number): IPAddress {
    return IPAddress.fromBigint(this.family, this.value + BigInt(n));
  }

  /** Same family and same value; false for undefined. */
  equals(other: IPAddress | undefined): boolean {
    return !!other && other.family === this.family && other.value === this.value;
  }

  /** The address in network byte order: 4 bytes for IPv4, 16 for IPv6. */
  toBytes(): number[] {
    return bigintToBytes(this.value, this.bits / 8);
  }

  /**
   * Dotted quad for IPv4, RFC 5952 (compressed, lower-case) for IPv6: the canonical form kernel objects use.
   */
  toString(): string {
    const bytes = this.toBytes();
    return this.family === "v4" ? ipaddr.fromByteArray(bytes).toString() : (ipaddr.fromByteArray(bytes) as ipaddr.IPv6).toRFC5952String();
  }

  /** The same text as `toString`, so addresses serialise as JSON strings. */
  toJSON(): string {
    return this.toString();
  }
}

/** A CIDR block. The address is always the network address (host bits clear). */
export class IPNet {
  private constructor(
    readonly ip: IPAddress,
    readonly prefix: number,
  ) {}

  /**
   * Parses `a.b.c.d/len` or `x::/len`. With `strict` (default false) host bits must be zero; otherwise they
   * are cleared, as Go's net.ParseCIDR (and so Flannel) does. `hadHostBits` tells the caller which happened.
   */
  static tryParse(text: string, strict = false): { net: IPNet; hadHostBits: boolean } | undefined {
    if (typeof text !== "string") return undefined;
    const m = /^([^/\s]+)\/(\d{1,3})$/.exec(text.trim());
    if (!m) return undefined;
    const ip = IPAddress.tryParse(m[1]!);
    const prefix = Number(m[2]);
    if (!ip || prefix > ip.bits) return undefined;
    const net = IPNet.of(ip, prefix);
    const hadHostBits = !net.ip.equals(ip);
    if (strict && hadHostBits) return undefined;
    return { net, hadHostBits };
  }

  /**
   * Like `tryParse`, but returns the block and throws a TypeError naming `text` when it is not a CIDR (or, with
   * `strict`, has host bits set).
   */
  static parse(text: string, strict = false): IPNet {
    const r = IPNet.tryParse(text, strict);
    if (!r) throw new TypeError(`"${text}" is not a CIDR${strict ? " with host bits clear" : ""}`);
    return r.net;
  }

  /** The block of `prefix` bits containing `ip`. */
  static of(ip: IPAddress, prefix: number): IPNet {
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > ip.bits) throw new RangeError(`prefix /${prefix} is invalid for ${ip.family}`);
    const hostBits = BigInt(ip.bits - prefix);
    const value = (ip.value >> hostBits) << hostBits;
    return new IPNet(IPAddress.fromBigint(ip.family, value), prefix);
  }

  /** The block's address family. */
  get family(): Family {
    return this.ip.family;
  }

  /** Number of addresses in the block. */
  get size(): bigint {
    return 1n << BigInt(this.ip.bits - this.prefix);
  }

  /** The first address of the block (the network address). */
  get first(): IPAddress {
    return this.ip;
  }

  /** The last address of the block. */
  get last(): IPAddress {
    return this.ip.add(this.size - 1n);
  }

  /** True when the address, or the whole block `x`, lies inside this block; false across families. */
  contains(x: IPAddress | IPNet): boolean {
    if (x instanceof IPNet) return x.prefix >= this.prefix && this.contains(x.ip);
    return x.family === this.family && x.value >= this.ip.value && x.value <= this.last.value;
  }

  /** True when the two blocks share at least one address; false across families. */
  overlaps(other: IPNet): boolean {
    return other.family === this.family && this.ip.value <= other.last.value && other.ip.value <= this.last.value;
  }

  /** The next block of the same size (throws past the end of the address space). */
  next(): IPNet {
    return IPNet.of(this.ip.add(this.size), this.prefix);
  }

  /** Same network address and prefix length; false for undefined. */
  equals(other: IPNet | undefined): boolean {
    return !!other && other.prefix === this.prefix && other.ip.equals(this.ip);
  }

  /** `a.b.c.d/len` or `x::/len`, host bits clear. */
  toString(): string {
    return `${this.ip.toString()}/${this.prefix}`;
  }

  /** The same text as `toString`, so blocks serialise as JSON strings. */
  toJSON(): string {
    return this.toString();
  }
}

/** An address with a prefix length as configured on an interface, e.g. 198.19.1.1/24 (host bits allowed). */
export class IPPrefix {
  private constructor(
    readonly ip: IPAddress,
    readonly prefix: number,
  ) {}

  /**
   * `ip` with prefix length `prefix`, host bits kept; throws a RangeError for a prefix length the family cannot
   * have.
   */
  static of(ip: IPAddress, prefix: number): IPPrefix {
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > ip.bits) throw new RangeError(`prefix /${prefix} is invalid for ${ip.family}`);
    return new IPPrefix(ip, prefix);
  }

  /** Parses `198.19.1.1/24` or `2001:2::1/64`; undefined when `text` is not an address with a prefix length. */
  static tryParse(text: string): IPPrefix | undefined {
    const m = /^([^/\s]+)\/(\d{1,3})$/.exec(String(text).trim());
    if (!m) return undefined;
    const ip = IPAddress.tryParse(m[1]!);
    const prefix = Number(m[2]);
    if (!ip || prefix > ip.bits) return undefined;
    return new IPPrefix(ip, prefix);
  }

  /** Like `tryParse`, but throws a TypeError naming `text`. */
  static parse(text: string): IPPrefix {
    const p = IPPrefix.tryParse(text);
    if (!p) throw new TypeError(`"${text}" is not an address with prefix length`);
    return p;
  }

  /** The address family. */
  get family(): Family {
    return this.ip.family;
  }

  /** The block the address lies in, host bits cleared (198.19.1.0/24 for 198.19.1.1/24). */
  get network(): IPNet {
    return IPNet.of(this.ip, this.prefix);
  }

  /** `address/len`, host bits as given. */
  toString(): string {
    return `${this.ip.toString()}/${this.prefix}`;
  }

  /** The same text as `toString`. */
  toJSON(): string {
    return this.toString();
  }
}
