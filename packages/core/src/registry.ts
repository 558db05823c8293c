/**
 * BackendRegistry: the modules an agent may use, keyed by lower-cased type. Only modules the daemon ships or
 * the operator names with --backend-module are ever added; Backend.Type then selects one of them.
 */
import { type BackendModule, isBackendModule } from "./backend.js";
import { WeftError } from "./errors.js";

/**
 * The backend modules an agent may use, keyed by lower-cased type. Only modules the agent ships or the operator
 * names with `--backend-module` are added; Backend.Type selects one.
 */
export class BackendRegistry {
  private readonly modules = new Map<string, BackendModule>();
  private readonly origins = new Map<string, string>();

  /** Adds a module; `origin` (package name or path) makes errors actionable. */
  add(module: unknown, origin = "built-in"): BackendModule {
    if (!isBackendModule(module)) {
      throw new WeftError(
        "BACKEND_MODULE_INVALID",
        `backend module ${origin} is not a Weft backend module: its default export needs type, configSchema.parse, mtuOverhead and register`,
      );
    }
    const key = module.type.toLowerCase();
    const holder = this.modules.get(key);
    if (holder) {
      throw new WeftError(
        "BACKEND_TYPE_TAKEN",
        `backend module ${origin} declares type "${module.type}", which ${this.origins.get(key)} (type "${holder.type}") already registered: ` +
          `give the new module another type, or load only one of them`,
      );
    }
    this.modules.set(key, module);
    this.origins.set(key, origin);
    return module;
  }

  /** Looks a type up case-insensitively; an unknown type fails listing the known ones. */
  get(type: string): BackendModule {
    const m = this.modules.get(type.toLowerCase());
    if (!m) {
      throw new WeftError(
        "BACKEND_UNKNOWN",
        `unknown backend type "${type}" in Backend.Type: known types are ${this.types().join(", ") || "(none)"}; ` +
          `third-party backends must be named with --backend-module`,
      );
    }
    return m;
  }

  /** True when a module of `type` (any case) was added. */
  has(type: string): boolean {
    return this.modules.has(type.toLowerCase());
  }

  /** The added modules' types as they declare them, sorted. */
  types(): string[] {
    return [...this.modules.values()].map((m) => m.type).sort();
  }
}
