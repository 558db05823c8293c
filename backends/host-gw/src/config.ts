/**
 * The host-gw Backend section: only `Type` (flannel.md §3.2). Unknown keys are warnings, not errors, so a
 * Flannel config keeps working; a key meant for another backend (say `DirectRouting`) is named in the log.
 */
import { ConfigError, type Schema, showValue, splitSchemaPath, foldKey, unknownKeysPhrase } from "@weft/core";

export const HOST_GW_TYPE = "host-gw";

export interface HostGwConfig {
  /** Non-fatal findings (unknown keys); the agent logs them once at start (configWarnings). */
  readonly warnings: readonly string[];
}



export const hostGwConfigSchema: Schema<HostGwConfig> = {
  parse(input: unknown, path: string): HostGwConfig {
    const { source, jsonPath } = splitSchemaPath(path);
    if (input === null || typeof input !== "object" || Array.isArray(input)) {
      throw new ConfigError(source, jsonPath, `${jsonPath} ${showValue(input)} must be an object like {"Type": "host-gw"}`, "BACKEND_CONFIG_INVALID");
    }
    const unknown = Object.keys(input).filter((k) => foldKey(k) !== "TYPE");
    // One line for all unknown keys, bounded (issue 15 #12).
    const warnings = unknown.length === 0 ? [] : [`${source}: ${unknownKeysPhrase(unknown, (k) => `${jsonPath}.${k}`)} ignored by host-gw (it has no options besides Type)`];
    return Object.freeze({ warnings });
  },
};
