/**
 * The backend's own status (Backend.status, core BackendStatus) as weftd shows it: checked against the contract's
 * rules (a backend is not trusted to put a well-formed label or metric name in front of Prometheus), in `/status`
 * as `backend`, and as metrics:
 *
 *   weft_backend_info{type,datapath} 1     one series, for every backend (datapath "" when it reports none)
 *   weft_backend_<gauge>{type}             one gauge per entry of BackendStatus.gauges (ipsec: connections_loaded, ...)
 */
import type { BackendStatus } from "@weft/core";
import { Gauge, type Registry } from "prom-client";

/** A BackendStatus that passed the rules of the contract (see checkBackendStatus). */
export interface CheckedBackendStatus {
  readonly datapath?: string;
  readonly reason?: string;
  readonly gauges: Readonly<Record<string, number>>;
}

const DATAPATH = /^[A-Za-z0-9._-]{1,64}$/;
const GAUGE = /^[a-z][a-z0-9_]{0,47}$/;
/** Gauge names that would collide with the metrics weftd defines itself under weft_backend_. */
const RESERVED = new Set(["info"]);
const REASON_MAX = 200;

/**
 * Keeps what follows the rules of BackendStatus and reports each thing dropped through `warn` (one line naming
 * the field and the rule; values are not echoed, in case a backend put something it should not there).
 */
export function checkBackendStatus(type: string, raw: unknown, warn: (line: string) => void): CheckedBackendStatus {
  const s = (typeof raw === "object" && raw !== null ? raw : {}) as BackendStatus;
  const out: { datapath?: string; reason?: string; gauges: Record<string, number> } = { gauges: {} };
  if (s.datapath !== undefined) {
    if (typeof s.datapath === "string" && DATAPATH.test(s.datapath)) out.datapath = s.datapath;
    else warn(`backend ${type}: status datapath dropped: it must be 1-64 letters, digits, ".", "_" or "-"`);
  }
  if (s.reason !== undefined) {
    if (typeof s.reason === "string") {
      const line = s.reason.replace(/\s+/g, " ").trim();
      if (line) out.reason = line.length > REASON_MAX ? `${line.slice(0, REASON_MAX - 1)}…` : line;
    } else warn(`backend ${type}: status reason dropped: it must be a string`);
  }
  const gauges = typeof s.gauges === "object" && s.gauges !== null ? s.gauges : {};
  for (const [name, value] of Object.entries(gauges)) {
    if (!GAUGE.test(name) || RESERVED.has(name)) {
      warn(`backend ${type}: status gauge ${JSON.stringify(name.slice(0, 64))} dropped: names are snake_case ([a-z][a-z0-9_]*, at most 48 characters) and not "info"`);
    } else if (typeof value !== "number" || !Number.isFinite(value)) {
      warn(`backend ${type}: status gauge ${name} dropped: its value must be a finite number`);
    } else out.gauges[name] = value;
  }
  return out;
}

/** weft_backend_info and the weft_backend_<gauge> gauges, on the agent's registry. */
export class BackendStatusMetrics {
  private readonly info: Gauge<"type" | "datapath">;
  private readonly gauges = new Map<string, Gauge<"type">>();

  constructor(private readonly registry: Registry) {
    this.info = new Gauge({
      name: "weft_backend_info",
      help: "1 for the backend this agent runs (Backend.Type) and the datapath it reports (\"\" when it has no choice)",
      labelNames: ["type", "datapath"] as const,
      registers: [registry],
    });
  }

  /** Shows `status` (undefined: a backend without Backend.status) for backend `type`, replacing what was shown. */
  set(type: string, status: CheckedBackendStatus | undefined): void {
    this.info.reset();
    this.info.set({ type, datapath: status?.datapath ?? "" }, 1);
    const now = status?.gauges ?? {};
    for (const [name, gauge] of this.gauges) if (!(name in now)) gauge.reset();
    for (const [name, value] of Object.entries(now)) this.gauge(name).set({ type }, value);
  }

  private gauge(name: string): Gauge<"type"> {
    let g = this.gauges.get(name);
    if (!g) {
      g = new Gauge({
        name: `weft_backend_${name}`,
        help: `${name} as the backend reports it in /status (see docs/backends/<type>.md)`,
        labelNames: ["type"] as const,
        registers: [this.registry],
      });
      this.gauges.set(name, g);
    }
    return g;
  }
}
