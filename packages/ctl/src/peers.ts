/** `weftctl peers`: a table of the peers weftd knows, from /status. `renderPeers` is pure. */
import { escapeText } from "./escape.js";
import type { PeerStatus } from "./status.js";

/** Subnet keys compare with numbers as numbers (198.19.9.0 before 198.19.10.0); one collator for every comparison. */
const KEY_ORDER = new Intl.Collator("en", { numeric: true });

/** Peers sorted for reading: not-programmed first (they are what an operator looks for), then by subnet key. */
export function sortPeers(peers: readonly PeerStatus[]): PeerStatus[] {
  return [...peers].sort((a, b) => Number(a.state === "programmed") - Number(b.state === "programmed") || KEY_ORDER.compare(a.peer, b.peer));
}

/**
 * A fixed-width table: SUBNET, PUBLIC IP, STATE, REASON, one line per peer. Every field comes from weftd and is
 * shown with its control characters escaped (a newline in a reason does not start a line). Built with loops, not
 * spread arguments, so 200,000 peers print as well as 3.
 */
export function renderPeers(peers: readonly PeerStatus[]): string {
  if (peers.length === 0) return "no peers: weftd knows no other node (a one-node cluster, or it has not read the store yet)\n";
  const rows = [["SUBNET", "PUBLIC IP", "STATE", "REASON"], ...sortPeers(peers).map((p) => [p.peer, p.publicIP ?? "-", p.state, p.reason ?? ""].map(escapeText))];
  const widths = [0, 0, 0];
  for (const r of rows) for (let c = 0; c < 3; c++) widths[c] = Math.max(widths[c]!, r[c]!.length);
  const lines: string[] = [];
  for (const r of rows) lines.push(r.map((cell, c) => (c < 3 ? cell.padEnd(widths[c]!) : cell)).join("  ").trimEnd());
  return lines.join("\n") + "\n";
}
