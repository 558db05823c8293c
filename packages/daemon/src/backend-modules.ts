/**
 * Loading backend modules. Built-in backends are registered by the daemon; a third-party module is imported
 * ONLY when the operator names it with --backend-module (a ConfigMap editor alone can never make the agent
 * import code). Each module's default export is validated by the registry; Backend.Type then selects one.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type BackendModule, BackendRegistry, WeftError, errorMessage } from "@weft/core";

function looksLikePath(spec: string): boolean {
  return spec.startsWith(".") || isAbsolute(spec);
}

/** Resolves a package directory to its ESM entry (exports "." default/import, else main, else index.js). */
function packageEntry(dir: string): string {
  const pj = join(dir, "package.json");
  if (!existsSync(pj)) return join(dir, "index.js");
  const j = JSON.parse(readFileSync(pj, "utf8")) as { exports?: unknown; main?: string };
  const pick = (e: unknown): string | undefined => {
    if (typeof e === "string") return e;
    if (e && typeof e === "object") {
      const o = e as Record<string, unknown>;
      if ("." in o) return pick(o["."]);
      return pick(o.import) ?? pick(o.default) ?? pick(o.node);
    }
    return undefined;
  };
  return join(dir, pick(j.exports) ?? j.main ?? "index.js");
}

/** Resolves --backend-module's value to a file URL, from `cwd` for paths and for package names. */
export function resolveBackendModule(spec: string, cwd: string): string {
  if (looksLikePath(spec)) {
    const abs = resolve(cwd, spec);
    if (!existsSync(abs)) {
      throw new WeftError("BACKEND_MODULE_INVALID", `--backend-module ${spec}: ${abs} does not exist: build the backend package or fix the path`);
    }
    return pathToFileURL(statSync(abs).isDirectory() ? packageEntry(abs) : abs).href;
  }
  // A package name: found in node_modules of cwd or a parent, as Node does, and entered the ESM way (exports'
  // "import" condition first), so an ESM-only package (exports without "require") is found too.
  if (!/^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*$/i.test(spec)) {
    throw new WeftError("BACKEND_MODULE_INVALID", `--backend-module ${spec}: not a package name or a path: give an npm package name, or a path starting with ./, ../ or /`);
  }
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", spec);
    if (existsSync(join(candidate, "package.json"))) {
      const entry = packageEntry(candidate);
      if (!existsSync(entry)) {
        throw new WeftError("BACKEND_MODULE_INVALID", `--backend-module ${spec}: ${candidate} names ${entry} as its entry, which does not exist: build or reinstall the package`);
      }
      return pathToFileURL(entry).href;
    }
    if (dirname(dir) === dir) break;
  }
  throw new WeftError("BACKEND_MODULE_INVALID", `--backend-module ${spec}: package not found in node_modules from ${cwd} up: install it (npm install ${spec}) or pass a path`);
}

export async function loadBackendModules(options: {
  builtins: readonly BackendModule[];
  thirdParty: readonly string[];
  cwd: string;
}): Promise<BackendRegistry> {
  const registry = new BackendRegistry();
  for (const m of options.builtins) registry.add(m, "built-in");
  for (const spec of options.thirdParty) {
    const url = resolveBackendModule(spec, options.cwd);
    let mod: { default?: unknown };
    try {
      mod = (await import(url)) as { default?: unknown };
    } catch (err) {
      throw new WeftError("BACKEND_MODULE_INVALID", `--backend-module ${spec}: importing ${url} failed: ${errorMessage(err)}`, { cause: err });
    }
    registry.add(mod.default, `--backend-module ${spec}`);
  }
  return registry;
}
