/**
 * Kind "wg-peer": one peer on one of Weft's WireGuard devices, reconciled with `wg` through the ProcessRunner.
 *
 * Read: `wg show <dev> dump` once per device per pass. Write: ONE `wg set <dev> peer A ... peer B ... peer C remove`
 * per device per pass, never a process per peer (a node joining a 500-node cluster costs one `wg` run).
 * `allowed-ips` in `wg set` replaces the peer's list (wg sets replace_allowed_ips), and an allowed IP given to one
 * peer is taken from any other peer that had it, so a subnet moving to a re-installed node (new key) needs no
 * ordering. Keys go to `wg` as files (the PSK file is 0600), never as argv.
 *
 * Ownership: every peer on a device Weft owns (weft-wg, weft-wg-v6) is Weft's; stale ones are removed.
 */
import { errorMessage } from "@weft/core";
import { KernelError, type KernelPort, type OpResult, type ProcessRunner } from "@weft/kernel";
import type { Drift, ObjectReconciler } from "@weft/reconcile";
import { WG_DEVICE_NAMES, type WgDeviceReconciler } from "./device.js";
import { keyDigest } from "./keys.js";
import { isNoDevice, parseWgDump } from "./wg-dump.js";

export const WG_PEER_KIND = "wg-peer";

export interface WgPeerSpec {
  readonly dev: string;
  readonly publicKey: string;
  /** `198.18.0.2:51820` or `[2001:2::2]:51821`, as `wg show dump` prints it. */
  readonly endpoint?: string;
  /** Canonical CIDRs, sorted. */
  readonly allowedIPs: readonly string[];
  /** Seconds; 0 = off. */
  readonly persistentKeepalive: number;
  /** keyDigest of the pre-shared key, undefined for none (the key itself never sits in a spec). */
  readonly presharedKeyDigest?: string;
  /** Desired only: the 0600 file `wg` reads the PSK from. */
  readonly presharedKeyFile?: string;
}

export type WgPeerOp = { readonly op: "wg-peer.set"; readonly spec: WgPeerSpec } | { readonly op: "wg-peer.remove"; readonly dev: string; readonly publicKey: string };

const firstLine = (s: string) => s.split("\n").find((l) => l.trim() !== "")?.trim() ?? "";

/** The argv words that configure one peer. */
export function peerArgs(p: WgPeerSpec): string[] {
  return [
    "peer",
    p.publicKey,
    ...(p.endpoint ? ["endpoint", p.endpoint] : []),
    "persistent-keepalive",
    p.persistentKeepalive > 0 ? String(p.persistentKeepalive) : "off",
    "allowed-ips",
    p.allowedIPs.join(","),
    // /dev/null (an empty key file) clears a PSK the peer had.
    "preshared-key",
    p.presharedKeyFile ?? "/dev/null",
  ];
}

export class WgPeerReconciler implements ObjectReconciler<WgPeerSpec, WgPeerOp> {
  readonly kind = WG_PEER_KIND;

  constructor(
    private readonly runner: ProcessRunner,
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
      const r = await this.runner.run("wg", ["show", dev, "dump"], { reject: false });
      if (r.exitCode !== 0) {
        if (isNoDevice(r.stderr)) continue; // no live wireguard-go: the device kind restarts it, peers come next pass
        throw new KernelError("KERNEL_FAILED", `wg show ${dev} dump exited ${r.exitCode}: ${firstLine(r.stderr)}`);
      }
      for (const p of parseWgDump(r.stdout).peers) {
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

  /** One `wg set` per device for the whole pass; its outcome is every op's outcome. */
  async apply(ops: readonly WgPeerOp[]): Promise<OpResult[]> {
    const byDev = new Map<string, number[]>();
    ops.forEach((op, i) => {
      const dev = op.op === "wg-peer.set" ? op.spec.dev : op.dev;
      byDev.set(dev, [...(byDev.get(dev) ?? []), i]);
    });
    const results: OpResult[] = new Array<OpResult>(ops.length);
    for (const [dev, indexes] of byDev) {
      const args = ["set", dev];
      for (const i of indexes) {
        const op = ops[i]!;
        args.push(...(op.op === "wg-peer.set" ? peerArgs(op.spec) : ["peer", op.publicKey, "remove"]));
      }
      let result: OpResult;
      try {
        const r = await this.runner.run("wg", args, { reject: false });
        result =
          r.exitCode === 0
            ? { ok: true }
            : {
                ok: false,
                // A device that is gone took its peers with it: removals count as done (KERNEL_NOT_FOUND).
                error: new KernelError(isNoDevice(r.stderr) ? "KERNEL_NOT_FOUND" : "KERNEL_FAILED", `wg set ${dev} (${indexes.length} peer change(s)) exited ${r.exitCode}: ${firstLine(r.stderr)}`),
              };
      } catch (err) {
        result = { ok: false, error: new KernelError("KERNEL_FAILED", `wg set ${dev}: ${errorMessage(err)}`, undefined, { cause: err }) };
      }
      for (const i of indexes) results[i] = result;
    }
    return results;
  }
}
