/**
 * Kind "wg-peer": one peer on one of Weft's WireGuard devices. This file describes and diffs; reading and
 * writing are the WireGuardPort's (@weft/kernel): one read per device per pass, and ONE write per device per
 * pass for all its peer changes, never a process per peer (a node joining a 500-node cluster costs one `wg`
 * run). A peer's allowed IPs are replaced as a whole, and an allowed IP given to one peer is taken from any
 * other peer that had it, so a subnet moving to a re-installed node (new key) needs no ordering. Keys go to the
 * port as files (the PSK file is 0600), never as values.
 *
 * Ownership: every peer on a device Weft owns (weft-wg, weft-wg-v6) is Weft's; stale ones are removed.
 * Order: after wg-device (the device must exist) and after routes (a packet routed into the device before its
 * peer exists is dropped by WireGuard: the same as "not yet programmed").
 */
import { type KernelPort, type OpResult, type WireGuardPeerChange, type WireGuardPort, asKernelError } from "@weft/kernel";
import type { Drift, ObjectReconciler } from "@weft/reconcile";
import { WG_DEVICE_KIND, WG_DEVICE_NAMES, type WgDeviceReconciler } from "./device.js";
import { keyDigest } from "./keys.js";

export const WG_PEER_KIND = "wg-peer";

export interface WgPeerSpec {
  readonly dev: string;
  readonly publicKey: string;
  /** `198.18.0.2:51820` or `[2001:2::2]:51821`, as the device reports it. */
  readonly endpoint?: string;
  /** Canonical CIDRs, sorted. */
  readonly allowedIPs: readonly string[];
  /** Seconds; 0 = off. */
  readonly persistentKeepalive: number;
  /** keyDigest of the pre-shared key, undefined for none (the key itself never sits in a spec). */
  readonly presharedKeyDigest?: string;
  /** Desired only: the 0600 file the PSK is read from. */
  readonly presharedKeyFile?: string;
}

export type WgPeerOp = { readonly op: "wg-peer.set"; readonly spec: WgPeerSpec } | { readonly op: "wg-peer.remove"; readonly dev: string; readonly publicKey: string };

/** The port's change for one op. */
function change(op: WgPeerOp): WireGuardPeerChange {
  if (op.op === "wg-peer.remove") return { op: "remove", publicKey: op.publicKey };
  const p = op.spec;
  return {
    op: "set",
    peer: {
      publicKey: p.publicKey,
      ...(p.endpoint ? { endpoint: p.endpoint } : {}),
      allowedIPs: p.allowedIPs,
      persistentKeepalive: p.persistentKeepalive,
      // None clears a PSK the peer had.
      ...(p.presharedKeyFile ? { presharedKeyFile: p.presharedKeyFile } : {}),
    },
  };
}

export class WgPeerReconciler implements ObjectReconciler<WgPeerSpec, WgPeerOp> {
  readonly kind = WG_PEER_KIND;
  readonly after = [WG_DEVICE_KIND, "routes"] as const;

  constructor(
    private readonly wireguard: WireGuardPort,
    /** Tells whose wireguard-go answers on a socket: peers of a device Weft did not start are never touched. */
    private readonly devices: Pick<WgDeviceReconciler, "owns">,
  ) {}

  key(p: WgPeerSpec): string {
    return `${p.dev} ${p.publicKey}`;
  }

  async listOwned(kernel: KernelPort, desired: readonly WgPeerSpec[]): Promise<WgPeerSpec[]> {
    const links = new Set((await kernel.listLinks()).map((l) => l.name));
    // Only devices in this network namespace: a same-named device elsewhere is not ours (see device.ts).
    const devs = [...new Set<string>([...WG_DEVICE_NAMES, ...desired.map((d) => d.dev)])].filter((d) => links.has(d));
    const out: WgPeerSpec[] = [];
    for (const dev of devs) {
      if (!(await this.devices.owns(dev))) continue;
      // Undefined: no live wireguard-go; the device kind restarts it, peers come after it.
      const dump = await this.wireguard.show(dev);
      for (const p of dump?.peers ?? []) {
        out.push({
          dev,
          publicKey: p.publicKey,
          ...(p.endpoint ? { endpoint: p.endpoint } : {}),
          allowedIPs: p.allowedIPs,
          persistentKeepalive: p.persistentKeepalive,
          ...(p.presharedKey ? { presharedKeyDigest: keyDigest(p.presharedKey) } : {}),
        });
      }
    }
    return out;
  }

  drift(d: WgPeerSpec, a: WgPeerSpec): Drift {
    const reasons = [
      d.endpoint !== undefined && d.endpoint !== a.endpoint ? `endpoint ${a.endpoint ?? "none"} != ${d.endpoint}` : undefined,
      d.allowedIPs.join(",") !== [...a.allowedIPs].sort().join(",") ? `allowed-ips ${a.allowedIPs.join(",") || "none"} != ${d.allowedIPs.join(",")}` : undefined,
      d.persistentKeepalive !== a.persistentKeepalive ? `persistent-keepalive ${a.persistentKeepalive || "off"} != ${d.persistentKeepalive || "off"}` : undefined,
      d.presharedKeyDigest !== a.presharedKeyDigest ? "pre-shared key differs from Backend.PSK" : undefined,
    ].filter(Boolean);
    return reasons.length ? reasons.join(", ") : undefined;
  }

  addOps(p: WgPeerSpec): WgPeerOp[] {
    return [{ op: "wg-peer.set", spec: p }];
  }

  updateOps(d: WgPeerSpec): WgPeerOp[] {
    return [{ op: "wg-peer.set", spec: d }];
  }

  removeOps(p: WgPeerSpec): WgPeerOp[] {
    return [{ op: "wg-peer.remove", dev: p.dev, publicKey: p.publicKey }];
  }

  /**
   * One port write per device for the whole pass; its outcome is every op's outcome. A device that is gone
   * took its peers with it: KERNEL_NOT_FOUND, which the engine counts as done for removals.
   */
  async apply(ops: readonly WgPeerOp[]): Promise<OpResult[]> {
    const byDev = new Map<string, number[]>();
    ops.forEach((op, i) => {
      const dev = op.op === "wg-peer.set" ? op.spec.dev : op.dev;
      byDev.set(dev, [...(byDev.get(dev) ?? []), i]);
    });
    const results: OpResult[] = new Array<OpResult>(ops.length);
    for (const [dev, indexes] of byDev) {
      let result: OpResult;
      try {
        await this.wireguard.setPeers(dev, indexes.map((i) => change(ops[i]!)));
        result = { ok: true };
      } catch (err) {
        result = { ok: false, error: asKernelError(err, `wg set ${dev}`) };
      }
      for (const i of indexes) results[i] = result;
    }
    return results;
  }
}
