/**
 * `wg show <dev> dump`: tab-separated, one line for the interface, then one per peer.
 *   interface: private-key  public-key  listen-port  fwmark
 *   peer:      public-key  preshared-key  endpoint  allowed-ips  latest-handshake  rx  tx  persistent-keepalive
 * "(none)" marks an unset key, endpoint or allowed-ips list; "off" an unset keepalive or fwmark.
 */
export interface WgDump {
  readonly publicKey?: string;
  readonly listenPort: number;
  readonly peers: readonly WgDumpPeer[];
}

export interface WgDumpPeer {
  readonly publicKey: string;
  /** The pre-shared key itself (a secret: compare it, never log it), or undefined. */
  readonly presharedKey?: string;
  readonly endpoint?: string;
  readonly allowedIPs: readonly string[];
  readonly latestHandshake: number;
  /** Seconds; 0 = off. */
  readonly persistentKeepalive: number;
}

import { KernelError } from "../port.js";

const none = (s: string | undefined) => (s === undefined || s === "(none)" || s === "" ? undefined : s);

/** Parses `wg show <dev> dump` output; throws a KernelError (KERNEL_FAILED) when it printed nothing. */
export function parseWgDump(text: string): WgDump {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  if (lines.length === 0) throw new KernelError("KERNEL_FAILED", "wg show dump printed nothing");
  const head = lines[0]!.split("\t");
  const peers: WgDumpPeer[] = [];
  for (const line of lines.slice(1)) {
    const f = line.split("\t");
    if (f.length < 8) continue;
    const psk = none(f[1]);
    const endpoint = none(f[2]);
    const ips = none(f[3]);
    peers.push({
      publicKey: f[0]!,
      ...(psk ? { presharedKey: psk } : {}),
      ...(endpoint ? { endpoint } : {}),
      allowedIPs: ips ? ips.split(",").map((s) => s.trim()).sort() : [],
      latestHandshake: Number(f[4]) || 0,
      persistentKeepalive: f[7] === "off" ? 0 : Number(f[7]) || 0,
    });
  }
  const pub = none(head[1]);
  return { ...(pub ? { publicKey: pub } : {}), listenPort: Number(head[2]) || 0, peers };
}
