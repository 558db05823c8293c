/**
 * weftd's CNI server: serves the `weft` CNI shim on `--cni-socket` (default /run/weft/cni.sock), so each pod's
 * ADD and DEL run inside this long-lived process instead of a new Node process per pod (docs/adr/0006-cni-latency.md,
 * docs/cni.md). The protocol and the request handling are @weft/cni's CniServer, which runs the same `runCni`
 * the Node plugin runs; this file gives it weftd's ports, its metrics and its log, and its lifetime.
 *
 * Metrics (docs/operations.md): `weft_cni_request_duration_seconds{command}` for ADD and DEL, and
 * `weft_cni_errors_total{command,code}` for every request answered with a CNI error.
 */
import { dirname, join } from "node:path";
import { errorMessage, type Logger } from "@weft/core";
import { CniServer, type CniServerOptions, type CniRequestObservation } from "@weft/cni";
import type { AgentMetrics } from "./metrics.js";

/**
 * The socket weftd serves: `--cni-socket`, by default `cni.sock` in the directory of `--subnet-file` (so
 * /run/weft/cni.sock, the shim's default, and several agents on one host, each with its own subnet file, each
 * serve their own); undefined for "off".
 */
export function cniSocketPath(flags: { readonly "cni-socket": string; readonly "subnet-file": string }): string | undefined {
  const v = flags["cni-socket"];
  if (v === "off") return undefined;
  return v !== "" ? v : join(dirname(flags["subnet-file"]), "cni.sock");
}

export interface CniServerWiring {
  /** From cniSocketPath; undefined turns the server off. */
  readonly socketPath: string | undefined;
  /** The ports the requests run through, built by the composition root (node side: weftd's kernel adapter). */
  readonly deps: CniServerOptions["deps"];
  readonly metrics: AgentMetrics;
  readonly logger: Logger;
  /**
   * The server stops accepting when this aborts, lets the requests in flight finish (at most CNI_DRAIN_TIMEOUT_MS)
   * and then removes its socket; await the returned server's close() for the end (weftd does before it exits).
   */
  readonly signal?: AbortSignal;
  /** Test-only (see CniServerOptions.faultInjection). */
  readonly faultInjection?: boolean;
  readonly receiveTimeoutMs?: number;
}

/** Records one request in the metrics and, when it failed, in the log (with the container and the CNI code). */
export function observeCniRequest(metrics: AgentMetrics, logger: Logger, o: CniRequestObservation): void {
  if (o.command === "ADD" || o.command === "DEL") metrics.cniRequestDuration.observe({ command: o.command }, o.seconds);
  if (o.exitCode !== 0) {
    metrics.cniErrors.inc({ command: o.command, code: String(o.code ?? 999) });
    logger.warn(`CNI ${o.command} failed: ${o.msg ?? "(no message)"}`, { containerID: o.containerID ?? "", code: o.code ?? 999 });
  } else {
    logger.debug(`CNI ${o.command} done`, { containerID: o.containerID ?? "", ms: Math.round(o.seconds * 1000) });
  }
}

/**
 * Starts the server (unless it is off). A socket it cannot serve (a directory others can write, another agent
 * on it) is logged as an error naming the fix, and weftd goes on without it: the shim then runs the Node plugin,
 * which does the same work (slower), so pods keep being created. The overlay does not stop for it.
 */
export async function startCniServer(w: CniServerWiring): Promise<CniServer | undefined> {
  if (w.socketPath === undefined) {
    w.logger.info("CNI server off (--cni-socket=off): the weft shim runs the Node plugin for every pod");
    return undefined;
  }
  const server = new CniServer({
    socketPath: w.socketPath,
    deps: w.deps,
    observe: (o) => observeCniRequest(w.metrics, w.logger, o),
    ...(w.faultInjection ? { faultInjection: true } : {}),
    ...(w.receiveTimeoutMs !== undefined ? { receiveTimeoutMs: w.receiveTimeoutMs } : {}),
  });
  try {
    await server.start();
  } catch (err) {
    w.logger.error(`not serving the weft CNI shim: ${errorMessage(err)}; until then the shim runs the Node plugin for every pod`, { socket: w.socketPath });
    return undefined;
  }
  w.logger.info("serving the weft CNI shim", { socket: w.socketPath });
  w.signal?.addEventListener("abort", () => void server.close(), { once: true });
  return server;
}
