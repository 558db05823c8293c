/**
 * The host-gw Backend section: only `Type` (flannel.md §3.2). Unknown keys are warnings, not errors, so a
 * Flannel config keeps working; a key meant for another backend (say `DirectRouting`) is named in the log.
 */
import { ConfigError, type Schema, showValue, splitSchemaPath } from "@weft/core";

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
    const warnings = Object.keys(input)
      .filter((k) => k.toLowerCase() !== "type")
      .map((k) => `${source}: unknown key ${jsonPath}.${k} is ignored by host-gw (it has no options besides Type)`);
    return Object.freeze({ warnings });
  },
};
