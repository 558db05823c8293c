/**
 * `weftctl status`: weftd's `/status` JSON and `/readyz`, summarised for a person. `renderStatus` is pure (data
 * in, text out); `fetchStatus` is the I/O.
 */
import { escapeShort, escapeText } from "./escape.js";
import { EndpointError, httpGet } from "./http-client.js";

/** One peer as weftd's /status lists it (packages/daemon PeerSet.statuses). */
export interface PeerStatus {
  /** The peer's subnet key (Flannel's form, `198.19.2.0-24`). */
  readonly peer: string;
  readonly publicIP?: string;
  /** programmed, pending, unreachable, skipped or failed. */
  readonly state: string;
  readonly reason?: string;
}

/** The backend's own status in /status (core BackendStatus, as weftd checked it); only backends that report one. */
export interface BackendStatusJson {
  /** How the backend carries packets (ipsec: `kernel` or `libipsec`). */
  readonly datapath?: string;
  /** Why that datapath. */
  readonly reason?: string;
  /** The backend's gauges by name (ipsec: connections_desired, connections_loaded, sas_up). */
  readonly gauges?: Readonly<Record<string, number>>;
}

/** weftd's /status JSON (packages/daemon Agent.status()). */
export interface WeftStatus {
  readonly phase: string;
  readonly ready: boolean;
  readonly reason: string;
  readonly subnet?: string;
  readonly ipv6Subnet?: string;
  readonly publicIP?: string;
  readonly publicIPv6?: string;
  readonly backendType?: string;
  readonly backend?: BackendStatusJson;
  readonly mtu?: number;
  readonly peers: readonly PeerStatus[];
}

/** True when `b` is absent or has the shape of BackendStatusJson. */
function isBackendStatus(b: unknown): boolean {
  if (b === undefined) return true;
  if (typeof b !== "object" || b === null) return false;
  const o = b as Record<string, unknown>;
  const gauges = o.gauges;
  return (
    (o.datapath === undefined || typeof o.datapath === "string") &&
    (o.reason === undefined || typeof o.reason === "string") &&
    (gauges === undefined || (typeof gauges === "object" && gauges !== null && Object.values(gauges).every((v) => typeof v === "number")))
  );
}

/** What `status` shows: /status, and /readyz's verdict (which is what kubelet sees). */
export interface StatusReport {
  readonly endpoint: string;
  readonly status: WeftStatus;
  readonly readyz: { readonly ready: boolean; readonly reason: string };
}

/** Checks that `value` is weftd's /status JSON; throws a one-line EndpointError otherwise. */
export function parseStatus(endpoint: string, text: string): WeftStatus {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new EndpointError(`weftd at ${endpoint} answered /status with something that is not JSON: is --endpoint pointing at weftd's --healthz-port?`);
  }
  const o = v as Record<string, unknown>;
  const str = (k: string) => o[k] === undefined || typeof o[k] === "string";
  if (
    typeof v !== "object" ||
    v === null ||
    typeof o.phase !== "string" ||
    typeof o.ready !== "boolean" ||
    !Array.isArray(o.peers) ||
    !["subnet", "ipv6Subnet", "publicIP", "publicIPv6", "backendType"].every(str) ||
    (o.mtu !== undefined && typeof o.mtu !== "number") ||
    !isBackendStatus(o.backend) ||
    !o.peers.every((p: unknown) => typeof p === "object" && p !== null && typeof (p as PeerStatus).peer === "string" && typeof (p as PeerStatus).state === "string")
  ) {
    throw new EndpointError(`weftd at ${endpoint} answered /status with JSON that is not weftd's status (phase, ready, peers): is --endpoint pointing at weftd?`);
  }
  return { ...(o as unknown as WeftStatus), reason: typeof o.reason === "string" ? o.reason : "" };
}

/** Reads /status and /readyz from weftd. */
export async function fetchStatus(endpoint: string, timeoutMs?: number): Promise<StatusReport> {
  const [st, rz] = await Promise.all([httpGet(endpoint, "/status", timeoutMs), httpGet(endpoint, "/readyz", timeoutMs)]);
  if (st.status !== 200) {
    throw new EndpointError(`weftd at ${endpoint} answered /status with HTTP ${st.status}: is --endpoint pointing at weftd's --healthz-port (and is weftd new enough to serve /status)?`);
  }
  const status = parseStatus(endpoint, st.body);
  if (rz.status !== 200 && rz.status !== 503) throw new EndpointError(`weftd at ${endpoint} answered /readyz with HTTP ${rz.status}: is --endpoint pointing at weftd?`);
  // The first line only: a /readyz body is one line from weftd, and anything else is not worth a screenful.
  const reason = (rz.body.trim().split("\n")[0] ?? "").replace(/^weftd is not ready:\s*/, "").slice(0, 1000);
  return { endpoint, status, readyz: { ready: rz.status === 200, reason: rz.status === 200 ? "" : reason || status.reason } };
}

/** Peer counts by state, in a fixed order (the states weftd uses first, anything else after). */
export function peerCounts(peers: readonly PeerStatus[]): [string, number][] {
  const order = ["programmed", "pending", "unreachable", "skipped", "failed"];
  const counts = new Map<string, number>();
  for (const p of peers) counts.set(p.state, (counts.get(p.state) ?? 0) + 1);
  return [...counts].sort(([a], [b]) => {
    const ia = order.indexOf(a), ib = order.indexOf(b);
    return (ia < 0 ? order.length : ia) - (ib < 0 ? order.length : ib) || a.localeCompare(b);
  });
}

const both = (v4: string | undefined, v6: string | undefined) => [v4, v6].filter((x): x is string => !!x).map(escapeText).join(", ") || "-";

/** The human summary of `weftctl status`. Every value from weftd is shown with its control characters escaped. */
export function renderStatus(r: StatusReport): string {
  const s = r.status;
  const lines = [
    `weftd at ${escapeText(r.endpoint)}`,
    `  phase:      ${escapeText(s.phase)}`,
    `  ready:      ${r.readyz.ready ? "yes" : `no: ${escapeShort(r.readyz.reason || s.reason || "(no reason given)", 1000)}`}`,
    `  subnet:     ${both(s.subnet, s.ipv6Subnet)}`,
    `  public IP:  ${both(s.publicIP, s.publicIPv6)}`,
    `  backend:    ${escapeText(s.backendType ?? "-")}`,
  ];
  const b = s.backend;
  if (b?.datapath || b?.reason) lines.push(`  datapath:   ${escapeText(b.datapath ?? "-")}${b.reason ? ` (${escapeText(b.reason)})` : ""}`);
  const gauges = Object.entries(b?.gauges ?? {});
  if (gauges.length > 0) lines.push(`  gauges:     ${gauges.map(([k, v]) => `${escapeText(k)} ${v}`).join(", ")}`);
  lines.push(`  MTU:        ${s.mtu ?? "-"}`);
  const counts = peerCounts(s.peers);
  lines.push(`  peers:      ${s.peers.length === 0 ? "none" : `${s.peers.length} (${counts.map(([k, n]) => `${n} ${escapeText(k)}`).join(", ")})`}`);
  const notOk = s.peers.filter((p) => p.state !== "programmed").length;
  if (notOk > 0) lines.push(`  ${notOk} peer${notOk === 1 ? " is" : "s are"} not programmed: see weftctl peers`);
  return lines.join("\n") + "\n";
}
