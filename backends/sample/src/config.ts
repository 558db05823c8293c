/**
 * The Backend section of net-conf.json for this backend, and the data each node publishes in its lease.
 *
 * EXTENSION POINT: configuration. Core reads only `Backend.Type`; everything else in the section is yours to
 * define and validate. Rules worth keeping (STYLE 1):
 *   - match keys case-insensitively, as Flannel's Go code does, so hand-written configs "just work";
 *   - every rejection is a ConfigError naming the config source, the JSON path, the value and the rule, in
 *     one line — operators read these in `kubectl logs`;
 *   - unknown keys are warnings (returned in `warnings`; the agent logs them once at start), not errors: a typo is visible, and a config
 *     written for a newer version of the backend still loads.
 *
 * EXTENSION POINT: peer data. What registerSubnet returns is published in the lease (BackendData /
 * BackendV6Data) and arrives at every other node, from a node that may run another version of your backend,
 * or be misconfigured. Validate it with a schema of its own; a peer whose data does not parse is skipped with
 * a reason, never thrown on.
 */
import { ConfigError, type Family, IPAddress, type JsonValue, type Schema, WeftError, getKeyInsensitive, showValue, splitSchemaPath, foldKey, unknownKeysPhrase } from "@weft/core";

/** The Backend.Type this backend answers to (matched case-insensitively; kebab-case by convention). */
export const SAMPLE_TYPE = "sample";

export interface SampleConfig {
  /** Metric of the routes to peers (0 = the kernel's default). */
  readonly metric: number;
  /** Set rp_filter to loose (2) on the underlay interface: an example of an extra kernel object kind. */
  readonly looseReversePathFilter: boolean;
  /** Unknown keys, to be logged once. */
  readonly warnings: readonly string[];
}

const KNOWN = ["Type", "Metric", "LooseReversePathFilter"] as const;



export const sampleConfigSchema: Schema<SampleConfig> = {
  parse(input: unknown, path: string): SampleConfig {
    const { source, jsonPath } = splitSchemaPath(path);
    const fail = (at: string, msg: string): never => {
      throw new ConfigError(source, at, msg, "BACKEND_CONFIG_INVALID");
    };
    if (input === null || typeof input !== "object" || Array.isArray(input)) {
      return fail(jsonPath, `${jsonPath} ${showValue(input)} must be an object like {"Type": "${SAMPLE_TYPE}"}`);
    }
    const obj = input as Record<string, unknown>;

    const metricRaw = getKeyInsensitive(obj, "Metric")?.value;
    let metric = 0;
    if (metricRaw !== undefined && metricRaw !== null) {
      if (typeof metricRaw !== "number" || !Number.isInteger(metricRaw) || metricRaw < 0 || metricRaw > 0xffffffff) {
        fail(`${jsonPath}.Metric`, `${jsonPath}.Metric ${showValue(metricRaw)} is out of range for ${SAMPLE_TYPE}: must be an integer 0..4294967295`);
      }
      metric = metricRaw as number;
    }

    const looseRaw = getKeyInsensitive(obj, "LooseReversePathFilter")?.value;
    if (looseRaw !== undefined && looseRaw !== null && typeof looseRaw !== "boolean") {
      fail(`${jsonPath}.LooseReversePathFilter`, `${jsonPath}.LooseReversePathFilter ${showValue(looseRaw)} must be true or false for ${SAMPLE_TYPE}`);
    }

    const known = new Set<string>(KNOWN.map((k) => foldKey(k)));
    const unknown = Object.keys(obj).filter((k) => !known.has(foldKey(k)));
    // One line for all unknown keys, bounded.
    const warnings = unknown.length === 0 ? [] : [`${source}: ${unknownKeysPhrase(unknown, (k) => `${jsonPath}.${k}`)} ignored by ${SAMPLE_TYPE} (known keys: ${KNOWN.join(", ")})`];

    return Object.freeze({ metric, looseReversePathFilter: looseRaw === true, warnings });
  },
};

/** Published per family: the address peers should route this node's pod subnet through. */
export interface SampleLeaseData {
  readonly gateway: IPAddress;
}

export function encodeSampleLeaseData(d: SampleLeaseData): JsonValue {
  return { Gateway: d.gateway.toString() };
}

/** Validates a peer's data for `family`; `path` names the peer and field. Throws WeftError PEER_DATA_INVALID. */
export function parseSampleLeaseData(input: unknown, family: Family, path: string): SampleLeaseData {
  const fail = (msg: string): never => {
    throw new WeftError("PEER_DATA_INVALID", `${path}: ${msg}`);
  };
  if (input === null || typeof input !== "object" || Array.isArray(input)) return fail(`${showValue(input)} is not ${SAMPLE_TYPE} data: expected {"Gateway": "<address>"}`);
  const raw = getKeyInsensitive(input as Record<string, unknown>, "Gateway")?.value;
  const gateway = typeof raw === "string" ? IPAddress.tryParse(raw) : undefined;
  if (!gateway || gateway.family !== family) return fail(`Gateway ${showValue(raw)} is not an ${family === "v4" ? "IPv4" : "IPv6"} address`);
  return { gateway };
}
