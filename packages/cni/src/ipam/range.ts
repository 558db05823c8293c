/**
 * Address ranges with host-local's semantics (reference plugins, `plugins/ipam/host-local/backend/allocator`):
 * - a range is a subnet with an optional rangeStart/rangeEnd/gateway;
 * - rangeStart defaults to the subnet's first host (network + 1), rangeEnd to its last address, minus the broadcast
 *   address for IPv4;
 * - the gateway defaults to network + 1 and is never handed out;
 * - a range set is a list of ranges of one family, tried in order; a container gets one address per range set.
 */
import { type Family, IPAddress, IPNet } from "@weft/core";
import { showText } from "../errors.js";

export interface IpRange {
  readonly subnet: IPNet;
  readonly rangeStart: IPAddress;
  readonly rangeEnd: IPAddress;
  readonly gateway: IPAddress;
}

export type RangeSet = readonly IpRange[];

export interface RangeInput {
  readonly subnet: string;
  readonly rangeStart?: string;
  readonly rangeEnd?: string;
  readonly gateway?: string;
}

/** Builds a canonical range; throws an Error whose message names the offending key (the caller adds the path). */
export function makeRange(input: RangeInput): IpRange {
  const parsed = IPNet.tryParse(input.subnet);
  if (!parsed) throw new RangeError(`subnet: "${showText(input.subnet)}" is not a CIDR`);
  const subnet = parsed.net;
  // host-local refuses networks with fewer than 4 addresses (/31, /32, /127, /128).
  if (subnet.prefix > subnet.ip.bits - 2) throw new RangeError(`subnet: ${subnet} is too small to allocate from (need /${subnet.ip.bits - 2} or larger)`);
  const first = subnet.first.add(1);
  const last = subnet.family === "v4" ? subnet.last.add(-1) : subnet.last;
  const addr = (key: "rangeStart" | "rangeEnd" | "gateway", text: string | undefined, dflt: IPAddress): IPAddress => {
    if (text === undefined || text === "") return dflt;
    const ip = IPAddress.tryParse(text);
    if (!ip) throw new RangeError(`${key}: "${showText(text)}" is not an IP address`);
    if (!subnet.contains(ip)) throw new RangeError(`${key}: ${ip} is outside subnet ${subnet}`);
    return ip;
  };
  const rangeStart = addr("rangeStart", input.rangeStart, first);
  const rangeEnd = addr("rangeEnd", input.rangeEnd, last);
  if (rangeStart.value > rangeEnd.value) throw new RangeError(`rangeStart: ${rangeStart} is after rangeEnd ${rangeEnd}`);
  const gateway = addr("gateway", input.gateway, first);
  return { subnet, rangeStart, rangeEnd, gateway };
}

export function rangeSetFamily(set: RangeSet): Family {
  return set[0]!.subnet.family;
}

export function rangeContains(r: IpRange, ip: IPAddress): boolean {
  return ip.family === r.subnet.family && ip.value >= r.rangeStart.value && ip.value <= r.rangeEnd.value;
}

export function rangeSetContains(set: RangeSet, ip: IPAddress): boolean {
  return set.some((r) => rangeContains(r, ip));
}

/** Checks one family per set and no overlap inside a set or between sets; returns a message or undefined. */
export function checkRangeSets(sets: readonly RangeSet[]): string | undefined {
  const all: { r: IpRange; where: string }[] = [];
  for (let s = 0; s < sets.length; s++) {
    const set = sets[s]!;
    if (set.length === 0) return `[${s}] is an empty range set`;
    const fam = rangeSetFamily(set);
    for (let i = 0; i < set.length; i++) {
      const r = set[i]!;
      if (r.subnet.family !== fam) return `[${s}][${i}] mixes IPv4 and IPv6 in one range set`;
      for (const o of all) {
        if (o.r.subnet.family === fam && r.rangeStart.value <= o.r.rangeEnd.value && o.r.rangeStart.value <= r.rangeEnd.value) {
          return `[${s}][${i}] (${r.subnet}) overlaps ${o.where} (${o.r.subnet})`;
        }
      }
      all.push({ r, where: `[${s}][${i}]` });
    }
  }
  return undefined;
}

/**
 * The order host-local tries addresses in: starting after `lastReserved` when it lies in the set (round-robin),
 * otherwise at the first range's start; through each range, wrapping around. Unlike host-local, `lastReserved`
 * itself comes last instead of never, so a released last address is not lost when the rest is full. Gateways are
 * skipped.
 */
export function* candidates(set: RangeSet, lastReserved: IPAddress | undefined): Generator<IPAddress> {
  let idx = 0;
  let cur: IPAddress | undefined;
  if (lastReserved) {
    const found = set.findIndex((r) => rangeContains(r, lastReserved));
    if (found >= 0) {
      idx = found;
      cur = lastReserved;
    }
  }
  const step = (): IPAddress => {
    if (cur === undefined) return set[idx]!.rangeStart;
    if (cur.value >= set[idx]!.rangeEnd.value) {
      idx = (idx + 1) % set.length;
      return set[idx]!.rangeStart;
    }
    return cur.add(1);
  };
  let total = 0n;
  for (const r of set) total += r.rangeEnd.value - r.rangeStart.value + 1n;
  for (let n = 0n; n < total; n++) {
    cur = step();
    if (set.some((r) => r.gateway.equals(cur))) continue;
    yield cur;
  }
}
