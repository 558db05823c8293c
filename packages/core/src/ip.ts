/**
 * IPv4/IPv6 address and CIDR value types. Parsing and formatting are done by ipaddr.js (maintained, strict
 * four-part decimal for IPv4, RFC 5952 output for IPv6); arithmetic is done on bigint so both families share
 * one code path. Values are immutable and compare by value.
 */
import ipaddr from "ipaddr.js";

export type Family = "v4" | "v6";
export const FAMILIES: readonly Family[] = ["v4", "v6"];

const BITS: Record<Family, number> = { v4: 32, v6: 128 };

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

  static parse(text: string): IPAddress {
    const ip = IPAddress.tryParse(text);
    if (!ip) throw new TypeError(`"${text}" is not an IP address`);
    return ip;
  }

  static fromBigint(family: Family, value: bigint): IPAddress {
    const max = (1n << BigInt(BITS[family])) - 1n;
    if (value < 0n || value > max) throw new RangeError(`address value out of range for ${family}`);
    return new IPAddress(family, value);
  }

  get bits(): number {
    return BITS[this.family];
  }

  add(n: bigint | number): IPAddress {
    return IPAddress.fromBigint(this.family, this.value + BigInt(n));
  }

  equals(other: IPAddress | undefined): boolean {
    return !!other && other.family === this.family && other.value === this.value;
  }

  toBytes(): number[] {
    return bigintToBytes(this.value, this.bits / 8);
  }

  toString(): string {
    const bytes = this.toBytes();
    return this.family === "v4" ? ipaddr.fromByteArray(bytes).toString() : (ipaddr.fromByteArray(bytes) as ipaddr.IPv6).toRFC5952String();
  }

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

  get family(): Family {
    return this.ip.family;
  }

  /** Number of addresses in the block. */
  get size(): bigint {
    return 1n << BigInt(this.ip.bits - this.prefix);
  }

  get first(): IPAddress {
    return this.ip;
  }

  get last(): IPAddress {
    return this.ip.add(this.size - 1n);
  }

  contains(x: IPAddress | IPNet): boolean {
    if (x instanceof IPNet) return x.prefix >= this.prefix && this.contains(x.ip);
    return x.family === this.family && x.value >= this.ip.value && x.value <= this.last.value;
  }

  overlaps(other: IPNet): boolean {
    return other.family === this.family && this.ip.value <= other.last.value && other.ip.value <= this.last.value;
  }

  /** The next block of the same size (throws past the end of the address space). */
  next(): IPNet {
    return IPNet.of(this.ip.add(this.size), this.prefix);
  }

  equals(other: IPNet | undefined): boolean {
    return !!other && other.prefix === this.prefix && other.ip.equals(this.ip);
  }

  toString(): string {
    return `${this.ip.toString()}/${this.prefix}`;
  }

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

  static of(ip: IPAddress, prefix: number): IPPrefix {
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > ip.bits) throw new RangeError(`prefix /${prefix} is invalid for ${ip.family}`);
    return new IPPrefix(ip, prefix);
  }

  static tryParse(text: string): IPPrefix | undefined {
    const m = /^([^/\s]+)\/(\d{1,3})$/.exec(String(text).trim());
    if (!m) return undefined;
    const ip = IPAddress.tryParse(m[1]!);
    const prefix = Number(m[2]);
    if (!ip || prefix > ip.bits) return undefined;
    return new IPPrefix(ip, prefix);
  }

  static parse(text: string): IPPrefix {
    const p = IPPrefix.tryParse(text);
    if (!p) throw new TypeError(`"${text}" is not an address with prefix length`);
    return p;
  }

  get family(): Family {
    return this.ip.family;
  }

  get network(): IPNet {
    return IPNet.of(this.ip, this.prefix);
  }

  toString(): string {
    return `${this.ip.toString()}/${this.prefix}`;
  }

  toJSON(): string {
    return this.toString();
  }
}
