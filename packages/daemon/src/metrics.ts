/**
 * Prometheus metrics (flanneld has none). Names are part of the operator contract; see docs/operations.md.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { BackendStatusMetrics } from "./backend-status.js";

export class AgentMetrics {
  readonly registry = new Registry();
  readonly peers = new Gauge({ name: "weft_peers", help: "Peers known from the store, by state", labelNames: ["state"] as const, registers: [this.registry] });
  readonly reconcileDuration = new Histogram({
    name: "weft_reconcile_duration_seconds",
    help: "Duration of reconcile passes",
    labelNames: ["prune"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly driftRepairs = new Counter({
    name: "weft_drift_repairs_total",
    help: "Kernel objects added, changed or removed by periodic reconciles because the kernel had drifted",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  readonly kernelErrors = new Counter({
    name: "weft_kernel_errors_total",
    help: "Kernel operations that failed, by object kind and error code",
    labelNames: ["kind", "code"] as const,
    registers: [this.registry],
  });
  readonly leaseExpiry = new Gauge({ name: "weft_lease_expiry_timestamp_seconds", help: "When this node's subnet lease expires unless renewed (0 = never)", registers: [this.registry] });
  readonly watchReconnects = new Counter({
    name: "weft_store_watch_reconnects_total",
    help: "Times the store's peer watch failed and reconnected (etcd: lost streams; kube: failed lists/watches and 410 Gone, not normal timeouts)",
    registers: [this.registry],
  });
  readonly malformedPeers = new Counter({
    name: "weft_malformed_peer_leases_total",
    help: "Peer leases the store could not read (bad JSON, bad addresses); peers a backend skips are weft_peers{state=\"skipped\"}",
    registers: [this.registry],
  });
  readonly peerSkips = new Counter({
    name: "weft_peer_skips_total",
    help: "Peers skipped (not programmed), by reason: early, malformed, address, own-address, backend-type, overlap, family, conflict, other; counted once per change of a peer's state",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  readonly trafficRuleRepairs = new Counter({ name: "weft_traffic_rule_repairs_total", help: "Times masquerade/forward rules were rewritten because they had drifted", registers: [this.registry] });
  readonly cniRequestDuration = new Histogram({
    name: "weft_cni_request_duration_seconds",
    help: "Time weftd's CNI server took to answer ADD and DEL requests from the weft shim, by command",
    labelNames: ["command"] as const,
    buckets: [0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });
  readonly cniErrors = new Counter({
    name: "weft_cni_errors_total",
    help: "CNI requests weftd answered with an error, by command and CNI error code",
    labelNames: ["command", "code"] as const,
    registers: [this.registry],
  });
  readonly heapUsed = new Gauge({ name: "weft_heap_used_bytes", help: "V8 heap in use by weftd (process.memoryUsage().heapUsed), read at each scrape", registers: [this.registry], collect() { this.set(process.memoryUsage().heapUsed); } });
  readonly ready = new Gauge({ name: "weft_ready", help: "1 once the lease is held, subnet.env written and every known peer programmed, while the agent follows its store", registers: [this.registry] });
  /** weft_backend_info{type,datapath} and the backend's own gauges (Backend.status; ./backend-status.ts). */
  readonly backend = new BackendStatusMetrics(this.registry);
}
