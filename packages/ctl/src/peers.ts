/** `weftctl peers`: a table of the peers weftd knows, from /status. `renderPeers` is pure. */
import type { PeerStatus } from "./status.js";

/** Peers sorted for reading: not-programmed first (they are what an operator looks for), then by subnet key. */
export function sortPeers(peers: readonly PeerStatus[]): PeerStatus[] {
  return [...peers].sort((a, b) => Number(a.state === "programmed") - Number(b.state === "programmed") || a.peer.localeCompare(b.peer, "en", { numeric: true }));
}

/** A fixed-width table: SUBNET, PUBLIC IP, STATE, REASON. */
export function renderPeers(peers: readonly PeerStatus[]): string {
  if (peers.length === 0) return "no peers: weftd knows no other node (a one-node cluster, or it has not read the store yet)\n";
  const rows = [["SUBNET", "PUBLIC IP", "STATE", "REASON"], ...sortPeers(peers).map((p) => [p.peer, p.publicIP ?? "-", p.state, p.reason ?? ""])];
  const widths = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c < 3 ? cell.padEnd(widths[c]!) : cell)).join("  ").trimEnd()).join("\n") + "\n";
}
