/**
 * Reading one `<prefix>/subnets/<key>` entry into a Lease, Flannel's formats in both directions (core's
 * parseSubnetKey / decodeLeaseAttrs). A peer that cannot be used is reported with a reason, never thrown:
 * the caller skips it with a warning and a counter, and the other peers are unaffected.
 */
import { type IPNet, type Lease, type NetworkConfig, decodeLeaseAttrs, describeValue, errorMessage, parseSubnetKey } from "@weft/core";
import type { ExistingLease } from "./allocate.js";
import type { StoredKV } from "./store.js";

export type DecodedPeer = { readonly ok: true; readonly lease: Lease } | { readonly ok: false; readonly reason: string };

function checkFamily(config: NetworkConfig, net: IPNet | undefined, family: "v4" | "v6"): string | undefined {
  const fam = family === "v4" ? config.v4 : config.v6;
  if (!net || !fam) return undefined;
  if (!fam.network.contains(net)) {
    return `subnet ${net} is outside ${family === "v4" ? "Network" : "IPv6Network"} ${fam.network}`;
  }
  if (net.prefix !== fam.subnetLen) {
    // No node writes such a key (198.19.0.0-16 beside /24s is an attack or a typo): it is nobody's subnet.
    return `subnet ${net} is a /${net.prefix}, but ${family === "v4" ? "SubnetLen" : "IPv6SubnetLen"} is ${fam.subnetLen}: no node's lease; delete the key`;
  }
  return undefined;
}

/** A store key as it appears in a log line: as is when short and printable, else quoted and cut (describeValue). */
export function showKey(key: string): string {
  return key.length <= 120 && /^[\x21-\x7e]*$/.test(key) ? key : describeValue(key, 120);
}

/**
 * Decodes a subnet entry. With `config`, also rejects leases that carry no subnet of an enabled family or a
 * subnet outside the configured network (a peer of another cluster writing under the same prefix).
 */
export function decodePeer(kv: StoredKV, subnetsPrefix: string, config?: NetworkConfig): DecodedPeer {
  if (!kv.key.startsWith(subnetsPrefix)) return { ok: false, reason: `key ${describeValue(kv.key)} is not under ${subnetsPrefix}` };
  const name = kv.key.slice(subnetsPrefix.length);
  const nets = parseSubnetKey(name);
  if (!nets) return { ok: false, reason: `bad subnet key ${describeValue(name)} (expected e.g. 198.19.1.0-24 or 198.19.1.0-24&2001:2:0:1::-64)` };
  let attrs;
  try {
    attrs = decodeLeaseAttrs(kv.value);
  } catch (e) {
    return { ok: false, reason: `bad lease attributes: ${errorMessage(e)}` };
  }
  if (config) {
    const usable = (config.v4 && nets.subnet) || (config.v6 && nets.ipv6Subnet);
    if (!usable) {
      const want = [config.v4 ? "IPv4" : "", config.v6 ? "IPv6" : ""].filter(Boolean).join(" or ");
      return { ok: false, reason: `lease has no ${want} subnet, which this network needs` };
    }
    const bad = checkFamily(config, nets.subnet, "v4") ?? checkFamily(config, nets.ipv6Subnet, "v6");
    if (bad) return { ok: false, reason: bad };
  }
  return {
    ok: true,
    lease: {
      ...(nets.subnet ? { subnet: nets.subnet } : {}),
      ...(nets.ipv6Subnet ? { ipv6Subnet: nets.ipv6Subnet } : {}),
      attrs,
      revision: kv.modRevision.toString(),
    },
  };
}

/** A listing entry as the allocator sees it: unreadable attributes still occupy the key's subnets. */
export interface ListedLease extends ExistingLease {
  readonly kv: StoredKV;
}

/** Entries whose key does not parse hold no subnet we can name; they are left out (and logged by the caller). */
export function toExisting(kv: StoredKV, subnetsPrefix: string): ListedLease | undefined {
  if (!kv.key.startsWith(subnetsPrefix)) return undefined;
  const nets = parseSubnetKey(kv.key.slice(subnetsPrefix.length));
  if (!nets) return undefined;
  let attrs;
  try {
    attrs = decodeLeaseAttrs(kv.value);
  } catch {
    attrs = undefined;
  }
  return {
    key: kv.key,
    ...(nets.subnet ? { subnet: nets.subnet } : {}),
    ...(nets.ipv6Subnet ? { ipv6Subnet: nets.ipv6Subnet } : {}),
    ...(attrs ? { attrs } : {}),
    reserved: kv.lease === "0",
    kv,
  };
}
