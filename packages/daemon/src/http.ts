/** /healthz (alive), /readyz (datapath programmed), /metrics (Prometheus), /status and /drift (JSON for weftctl and people). */
import { createServer, type Server } from "node:http";
import type { AgentMetrics } from "./metrics.js";

export interface HealthSource {
  ready(): { ready: boolean; reason: string };
  /** The /status JSON (may be read live, e.g. the backend's status). */
  status?(): unknown;
  /** What a full reconcile would change now (read-only). */
  drift?(): Promise<unknown>;
  /** Brings gauges read on demand (the backend's status) up to date before /metrics is rendered; must not throw. */
  refreshMetrics?(): Promise<void>;
}

export async function startHealthServer(host: string, port: number, health: HealthSource, metrics: AgentMetrics): Promise<Server> {
  const server = createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET, HEAD" }).end();
      return;
    }
    if (url === "/healthz") {
      res.writeHead(200, { "Content-Type": "text/plain" }).end("weftd is running\n");
    } else if (url === "/readyz") {
      const r = health.ready();
      res.writeHead(r.ready ? 200 : 503, { "Content-Type": "text/plain" }).end(r.ready ? "weftd is ready\n" : `weftd is not ready: ${r.reason}\n`);
    } else if (url === "/status" && health.status) {
      Promise.resolve()
        .then(() => health.status!())
        .then(
          (s) => res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(s, null, 2) + "\n"),
          (err) => res.writeHead(500, { "Content-Type": "text/plain" }).end(`reading the status failed: ${String(err)}\n`),
        );
    } else if (url === "/drift" && health.drift) {
      health.drift().then(
        (d) => res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(d, null, 2) + "\n"),
        (err) => res.writeHead(500, { "Content-Type": "text/plain" }).end(`reading kernel state failed: ${String(err)}\n`),
      );
    } else if (url === "/metrics") {
      Promise.resolve(health.refreshMetrics?.())
        .catch(() => undefined)
        .then(() => metrics.registry.metrics())
        .then(
          (text) => res.writeHead(200, { "Content-Type": metrics.registry.contentType }).end(text),
          (err) => res.writeHead(500).end(String(err)),
        );
    } else {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("not found: try /healthz, /readyz, /status, /drift or /metrics\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
