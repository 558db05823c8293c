/**
 * Subnet allocation as Flannel does it (reference/flannel.md §4.2.2), as a pure function over the current
 * listing so it can be tested without etcd:
 *
 *   1. reuse by public IP: an existing key whose PublicIP (PublicIPv6 on an IPv6-only network) is ours and
 *      which still fits the config is taken over (a reservation first, then a TTL'd lease); ones with our IP
 *      that no longer fit are reported as `incompatible` so the caller deletes them (never reservations);
 *   2. else the previous subnet from the old subnet.env, per family, when it fits and nobody holds it;
 *   3. else a uniformly random pick among the first (up to) 100 free /SubnetLen blocks between SubnetMin and
 *      SubnetMax, IPv4 and IPv6 independently.
 *
 * "Holds" means overlaps: every key, including reservations and keys whose attributes are unreadable, blocks
 * its subnets. Nothing here talks to the store; the caller writes the result with a compare-and-swap and
 * calls this again after a lost race.
 *
 * Departures from Flannel, against hostile or stale keys (issue 15):
 *   - a key whose prefix length is not SubnetLen (no node writes one: `198.19.0.0-16` is an attack or a typo)
 *     blocks its range only while there is room elsewhere; it never makes the network look full, which would
 *     stop every joining node ("all 255 /24 subnets are taken");
 *   - step 1 prefers, among the keys with our public IP, the one naming the subnet of our subnet.env (our own
 *     live lease) over a reservation: a lease-less key planted with our PublicIP cannot move a restarting node.
 */
import { type Family, type FamilyNetwork, type IPAddress, IPNet, type LeaseAttrs, type NetworkConfig, WeftError } from "@weft/core";

/** One key found under `<prefix>/subnets/`. */
export interface ExistingLease {
  readonly key: string;
  readonly subnet?: IPNet;
  readonly ipv6Subnet?: IPNet;
  /** Undefined when the value could not be decoded; such a key still occupies its subnets. */
  readonly attrs?: LeaseAttrs;
  /** A key without an etcd lease (no TTL): an operator's reservation. Never deleted, never reassigned. */
  readonly reserved: boolean;
}

export interface AllocationHints {
  readonly publicIP?: IPAddress;
  readonly publicIPv6?: IPAddress;
  /** FLANNEL_SUBNET / FLANNEL_IPV6_SUBNET of the previous run (network address form). */
  readonly previousSubnet?: IPNet;
  readonly previousIPv6Subnet?: IPNet;
}

export type Allocation<E extends ExistingLease = ExistingLease> =
  | {
      readonly kind: "reuse";
      /** The key to take over (same key, new attributes; a fresh TTL unless it is a reservation). */
      readonly lease: E;
      readonly incompatible: readonly E[];
    }
  | {
      readonly kind: "new";
      readonly subnet?: IPNet;
      readonly ipv6Subnet?: IPNet;
      /** How each family's subnet was chosen, for the log line. */
      readonly source: { readonly v4?: "previous" | "random"; readonly v6?: "previous" | "random" };
      readonly incompatible: readonly E[];
    };

/** Flannel stops collecting free candidates after this many and picks one of them at random. */
export const MAX_CANDIDATES = 100;

/** Does `net` have the config's subnet length and lie between SubnetMin and SubnetMax? */
export function fitsFamily(fam: FamilyNetwork, net: IPNet | undefined): boolean {
  return (
    net !== undefined &&
    net.family === fam.network.family &&
    net.prefix === fam.subnetLen &&
    fam.network.contains(net) &&
    net.ip.value >= fam.subnetMin.value &&
    net.ip.value <= fam.subnetMax.value
  );
}

/** A lease fits the config when each enabled family's subnet fits and disabled families have none. */
export function isCompatible(config: NetworkConfig, lease: Pick<ExistingLease, "subnet" | "ipv6Subnet">): boolean {
  const v4ok = config.v4 ? fitsFamily(config.v4, lease.subnet) : lease.subnet === undefined;
  const v6ok = config.v6 ? fitsFamily(config.v6, lease.ipv6Subnet) : lease.ipv6Subnet === undefined;
  return v4ok && v6ok;
}

function subnetOf(lease: Pick<ExistingLease, "subnet" | "ipv6Subnet">, family: Family): IPNet | undefined {
  return family === "v4" ? lease.subnet : lease.ipv6Subnet;
}

/** Sorted, merged [start, end] intervals of every subnet of `family` held by `existing`. */
function occupiedIntervals(existing: readonly ExistingLease[], family: Family): Array<[bigint, bigint]> {
  const ivs: Array<[bigint, bigint]> = [];
  for (const e of existing) {
    const n = subnetOf(e, family);
    if (n) ivs.push([n.first.value, n.last.value]);
  }
  ivs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const merged: Array<[bigint, bigint]> = [];
  for (const iv of ivs) {
    const last = merged[merged.length - 1];
    if (last && iv[0] <= last[1] + 1n) {
      if (iv[1] > last[1]) last[1] = iv[1];
    } else merged.push([iv[0], iv[1]]);
  }
  return merged;
}

function isFree(occupied: Array<[bigint, bigint]>, net: IPNet): boolean {
  const s = net.first.value;
  const e = net.last.value;
  return !occupied.some(([a, b]) => a <= e && s <= b);
}

/**
 * The first `max` free /SubnetLen blocks between SubnetMin and SubnetMax, in address order. Occupied ranges
 * are skipped in one step, so a mostly-full IPv6 /48 costs the number of leases, not the number of blocks.
 */
export function freeCandidates(fam: FamilyNetwork, occupied: Array<[bigint, bigint]>, max = MAX_CANDIDATES): IPNet[] {
  const size = 1n << BigInt(fam.network.ip.bits - fam.subnetLen);
  const out: IPNet[] = [];
  let cur = fam.subnetMin.value;
  const end = fam.subnetMax.value;
  let j = 0;
  while (cur <= end && out.length < max) {
    const candEnd = cur + size - 1n;
    while (j < occupied.length && occupied[j]![1] < cur) j++;
    const iv = occupied[j];
    if (iv && iv[0] <= candEnd) {
      // Overlaps [iv]: jump to the first aligned block after it.
      const next = iv[1] + 1n;
      const rem = (next - fam.subnetMin.value) % size;
      cur = rem === 0n ? next : next + (size - rem);
      continue;
    }
    out.push(IPNet.of(fam.subnetMin.add(cur - fam.subnetMin.value), fam.subnetLen));
    cur += size;
  }
  return out;
}

function familyName(family: Family): string {
  return family === "v4" ? "IPv4" : "IPv6";
}

function exhausted(family: Family, fam: FamilyNetwork, existing: readonly ExistingLease[], where: string | undefined): WeftError {
  const size = 1n << BigInt(fam.network.ip.bits - fam.subnetLen);
  const total = (fam.subnetMax.value - fam.subnetMin.value) / size + 1n;
  let leases = 0;
  let reserved = 0;
  for (const e of existing) {
    const n = subnetOf(e, family);
    if (!n || !fam.network.contains(n.ip)) continue;
    if (e.reserved) reserved++;
    else leases++;
  }
  const netKey = family === "v4" ? "Network" : "IPv6Network";
  return new WeftError(
    "SUBNETS_EXHAUSTED",
    `no free ${familyName(family)} subnet in ${netKey} ${fam.network}${where ? ` (${where})` : ""}: all ${total} /${fam.subnetLen} subnets ` +
      `between SubnetMin ${fam.subnetMin} and SubnetMax ${fam.subnetMax} are taken (${leases} leases, ${reserved} reservations); ` +
      `widen the network or the SubnetMin/SubnetMax range, or delete stale leases`,
  );
}

function samePublicIP(config: NetworkConfig, attrs: LeaseAttrs | undefined, hints: AllocationHints): boolean {
  if (!attrs) return false;
  // Flannel matches on the IPv4 public IP; an IPv6-only network has only the IPv6 one to go by.
  if (config.v4) return hints.publicIP !== undefined && hints.publicIP.equals(attrs.publicIP);
  return hints.publicIPv6 !== undefined && hints.publicIPv6.equals(attrs.publicIPv6);
}

/**
 * Decides which subnet(s) this node gets. Throws WeftError SUBNETS_EXHAUSTED when an enabled family has no
 * free block. `where` (e.g. `etcd /weft.io/network/subnets`) is named in that error.
 */
export function allocateSubnet<E extends ExistingLease>(
  config: NetworkConfig,
  existing: readonly E[],
  hints: AllocationHints,
  random: () => number = Math.random,
  where?: string,
): Allocation<E> {
  // 1. Reuse by public IP: our subnet.env subnet first (our own live lease), then a reservation, then a lease.
  const mine = existing.filter((e) => samePublicIP(config, e.attrs, hints));
  const incompatible = mine.filter((e) => !e.reserved && !isCompatible(config, e));
  const previous = (e: E) =>
    (hints.previousSubnet !== undefined || hints.previousIPv6Subnet !== undefined) &&
    (config.v4 ? hints.previousSubnet?.equals(e.subnet) === true : true) &&
    (config.v6 ? hints.previousIPv6Subnet?.equals(e.ipv6Subnet) === true : true);
  const reuse =
    mine.find((e) => previous(e) && isCompatible(config, e)) ??
    mine.find((e) => e.reserved && isCompatible(config, e)) ??
    mine.find((e) => !e.reserved && isCompatible(config, e));
  if (reuse) return { kind: "reuse", lease: reuse, incompatible };

  // 2./3. Per family: the previous subnet when it fits and is free, else a random free block.
  const pick = (family: Family): { net: IPNet; source: "previous" | "random" } | undefined => {
    const fam = family === "v4" ? config.v4 : config.v6;
    if (!fam) return undefined;
    const occupied = occupiedIntervals(existing, family);
    const prev = family === "v4" ? hints.previousSubnet : hints.previousIPv6Subnet;
    if (prev && fitsFamily(fam, prev) && isFree(occupied, prev)) return { net: prev, source: "previous" };
    let free = freeCandidates(fam, occupied);
    if (free.length === 0) {
      // Full only because of keys of another length? Those are no node's lease: they do not count then.
      const wellFormed = existing.filter((e) => subnetOf(e, family)?.prefix === fam.subnetLen);
      if (wellFormed.length < existing.length) free = freeCandidates(fam, occupiedIntervals(wellFormed, family));
    }
    if (free.length === 0) throw exhausted(family, fam, existing, where);
    const i = Math.min(free.length - 1, Math.floor(random() * free.length));
    return { net: free[i]!, source: "random" };
  };
  const v4 = pick("v4");
  const v6 = pick("v6");
  return {
    kind: "new",
    ...(v4 ? { subnet: v4.net } : {}),
    ...(v6 ? { ipv6Subnet: v6.net } : {}),
    source: { ...(v4 ? { v4: v4.source } : {}), ...(v6 ? { v6: v6.source } : {}) },
    incompatible,
  };
}
