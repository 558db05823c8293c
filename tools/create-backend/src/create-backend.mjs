#!/usr/bin/env node
/**
 * create-backend: copies backends/sample into a new Weft backend package and renames it.
 *
 *   npm run create-backend -- <name> [--dir <path>] [--package <npm name>] [--no-root-reference]
 *
 * <name> is the Backend.Type (kebab-case, e.g. `gre-tunnel`). Without --dir the package goes to
 * backends/<name> as @weft/backend-<name>. Inside the workspace the package is picked up by the `backends/*`
 * workspace glob and added to the root tsconfig.json references; it builds and passes the conformance suite
 * as generated. Outside the workspace it gets standalone tsconfig/vitest configs, keeps the sample's
 * peerDependencies (what it declares when published: the agent's @weft packages and tsyringe, never copies of
 * its own) and gets `file:` devDependencies into this checkout — the peers, the test kit and the shared
 * tooling (tsyringe, vitest, typescript) — so the backend loads the same tsyringe as the agent and the test
 * kit. Build the checkout first: `npm run build` here.
 *
 * A plain Node script, no build step, no processes started: it only reads and writes files.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
/** The Weft checkout this script belongs to. */
export const WORKSPACE_ROOT = resolve(HERE, "..", "..", "..");
const SAMPLE_DIR = join(WORKSPACE_ROOT, "backends", "sample");
/** Types Weft ships (and the sample itself): a new backend may not take them. */
const RESERVED = new Set(["vxlan", "host-gw", "wireguard", "ipsec", "sample", "udp", "ipip", "alloc", "extension"]);
const SKIP = new Set(["dist", "node_modules", "README.md"]);

/** Why `name` cannot be a backend type, or undefined. */
export function checkName(name) {
  if (typeof name !== "string" || name === "") return "a backend name is required, e.g. npm run create-backend -- gre-tunnel";
  if (!/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(name)) return `backend name "${name}" must be kebab-case: lower-case letters and digits, words joined by "-" (e.g. gre-tunnel)`;
  if (name.length > 40) return `backend name "${name}" is longer than 40 characters`;
  if (RESERVED.has(name)) return `backend name "${name}" is taken by a backend Weft ships; choose another`;
  return undefined;
}

/** The spellings of a kebab-case name used in the sample's identifiers. */
export function nameForms(name) {
  const words = name.split("-");
  const pascal = words.map((w) => w[0].toUpperCase() + w.slice(1)).join("");
  return { kebab: name, pascal, camel: pascal[0].toLowerCase() + pascal.slice(1), upper: words.map((w) => w.toUpperCase()).join("_") };
}

/** Rewrites one source text of the sample for the new backend. */
export function renameText(text, name, packageName) {
  const f = nameForms(name);
  return text
    .replaceAll("@weft/backend-sample", packageName)
    .replaceAll("backend-sample", `backend-${f.kebab}`)
    .replaceAll("sample-backend", `${f.kebab}-backend`)
    .replaceAll("SAMPLE_TYPE", `${f.upper}_TYPE`)
    .replaceAll("sampleConfigSchema", `${f.camel}ConfigSchema`)
    .replaceAll("sampleModule", `${f.camel}Module`)
    .replace(/\bsample(?=[A-Z])/g, f.camel)
    .replaceAll("./sample.", `./${f.kebab}.`)
    .replace(/Sample(?=[A-Z]|\b)/g, f.pascal)
    .replace(/\bsample\b/g, f.kebab);
}

function renamePath(rel, name) {
  return rel
    .split(sep)
    .map((part) => part.replace(/^sample-backend\./, `${name}-backend.`).replace(/^sample\./, `${name}.`))
    .join(sep);
}

function* walk(dir, base = dir) {
  for (const entry of readdirSync(dir)) {
    if (SKIP.has(entry) || entry.endsWith(".tsbuildinfo")) continue;
    const p = join(dir, entry);
    if (statSync(p).isDirectory()) yield* walk(p, base);
    else yield relative(base, p);
  }
}

function isInside(parent, child) {
  const r = relative(parent, child);
  return r === "" || (!r.startsWith("..") && !r.startsWith(sep) && !/^[A-Za-z]:/.test(r));
}

/** Adds `{ "path": <rel> }` to the root tsconfig.json references when missing; returns true when it changed. */
export function addRootReference(tsconfigPath, relPath) {
  const json = JSON.parse(readFileSync(tsconfigPath, "utf8"));
  json.references ??= [];
  if (json.references.some((r) => r.path === relPath)) return false;
  json.references.push({ path: relPath });
  writeFileSync(tsconfigPath, `${JSON.stringify(json, null, 2)}\n`);
  return true;
}

/**
 * Creates the package. Options: name (the Backend.Type), dir (target; default backends/<name>), packageName,
 * rootReference (default true: add the package to the root tsconfig.json when inside the workspace), root
 * (the Weft checkout; tests only). Returns what it did, for the caller to print.
 */
export function createBackend(options) {
  const root = options.root ?? WORKSPACE_ROOT;
  const name = options.name;
  const problem = checkName(name);
  if (problem) throw new Error(problem);
  const target = resolve(options.dir ?? join(root, "backends", name));
  if (existsSync(target) && readdirSync(target).length > 0) throw new Error(`${target} exists and is not empty: choose another --dir or remove it`);
  const inside = isInside(root, target);
  const packageName = options.packageName ?? (inside ? `@weft/backend-${name}` : `weft-backend-${name}`);
  const toRoot = relative(target, root).split(sep).join("/") || ".";

  mkdirSync(target, { recursive: true });
  const written = [];
  for (const rel of walk(SAMPLE_DIR)) {
    const from = join(SAMPLE_DIR, rel);
    const to = join(target, renamePath(rel, name));
    mkdirSync(dirname(to), { recursive: true });
    if (!/\.(ts|mts|js|mjs|json|md)$/.test(rel)) {
      cpSync(from, to);
      written.push(to);
      continue;
    }
    let text = renameText(readFileSync(from, "utf8"), name, packageName);
    if (rel === "package.json") text = packageJson(text, { inside, toRoot, name });
    else if (rel === "tsconfig.json") text = inside ? text.replaceAll("../../", `${toRoot}/`) : standaloneTsconfig();
    else if (rel === "vitest.config.ts") text = inside ? text.replaceAll("../../", `${toRoot}/`) : standaloneVitestConfig(name);
    writeFileSync(to, text);
    written.push(to);
  }
  writeFileSync(join(target, "README.md"), readme(name, packageName));
  written.push(join(target, "README.md"));

  let referenced = false;
  if (inside && options.rootReference !== false) referenced = addRootReference(join(root, "tsconfig.json"), relative(root, target).split(sep).join("/"));
  return { target, packageName, inside, referenced, files: written };
}

function packageJson(text, { inside, toRoot, name }) {
  const pkg = JSON.parse(text);
  pkg.version = "0.1.0";
  pkg.description = `Weft backend "${name}"`;
  if (!inside) {
    // peerDependencies stay as the sample has them (version ranges): that is what the published package
    // declares, so it uses the agent's @weft packages and tsyringe instead of bringing its own.
    // For developing outside the workspace, every package it builds and tests against is a devDependency with
    // a file: link into this checkout — the peers too (for the package itself a devDependency takes the place
    // of the peer range). Not only the @weft packages: tsyringe keeps @injectable type info per loaded copy,
    // so the backend and the agent (or the test kit) must load the SAME one; vitest likewise. Symlinks
    // resolve to one realpath.
    const shared = (name) => `file:${toRoot}/node_modules/${name}`;
    const link = (k) => {
      if (!k.startsWith("@weft/")) return shared(k);
      const dir = existsSync(join(WORKSPACE_ROOT, "packages", k.slice(6))) ? "packages" : existsSync(join(WORKSPACE_ROOT, "backends", k.slice(6))) ? "backends" : "tools";
      return `file:${toRoot}/${dir}/${k.slice(6)}`;
    };
    const linked = (deps) => Object.fromEntries(Object.keys(deps ?? {}).map((k) => [k, link(k)]));
    if (pkg.dependencies) pkg.dependencies = linked(pkg.dependencies);
    pkg.devDependencies = {
      ...linked(pkg.peerDependencies),
      ...linked(pkg.devDependencies),
      typescript: shared("typescript"),
      vitest: shared("vitest"),
      "@types/node": shared("@types/node"),
    };
    delete pkg.nx;
    // "@weft/source" points vitest and tsc at src/ inside the Weft workspace; a package of its own ships dist/.
    for (const entry of Object.values(pkg.exports ?? {})) if (entry && typeof entry === "object") delete entry["@weft/source"];
  }
  return `${JSON.stringify(pkg, null, 2)}\n`;
}

function standaloneTsconfig() {
  const base = JSON.parse(readFileSync(join(WORKSPACE_ROOT, "tsconfig.base.json"), "utf8"));
  const { customConditions: _c, composite: _k, ...compilerOptions } = base.compilerOptions;
  return `${JSON.stringify({ compilerOptions: { ...compilerOptions, rootDir: "src", outDir: "dist" }, include: ["src"], exclude: ["src/**/*.spec.ts"] }, null, 2)}\n`;
}

function standaloneVitestConfig(name) {
  return `import { defineConfig } from "vitest/config";

// Tiers as in the Weft repo: unit by default; WEFT_TIER=netns runs *.netns.spec.ts (real kernel, root).
const netns = process.env.WEFT_TIER === "netns";

// tsyringe needs legacy decorators; Weft emits no decorator metadata (every parameter has @inject).
export default defineConfig({
  oxc: { decorator: { legacy: true, emitDecoratorMetadata: false } },
  test: {
    name: "${name}",
    include: netns ? ["src/**/*.netns.spec.ts"] : ["src/**/*.spec.ts"],
    exclude: netns ? ["**/node_modules/**"] : ["src/**/*.netns.spec.ts", "**/node_modules/**"],
    environment: "node",
    testTimeout: netns ? 120_000 : 10_000,
    fileParallelism: !netns,
  },
});
`;
}

function readme(name, packageName) {
  return `# ${packageName}

The Weft backend \`${name}\`, generated from backends/sample. Select it with
\`{"Backend": {"Type": "${name}"}}\` in net-conf.json and load it with \`weftd --backend-module <package name, or path to dist/index.js>\`.

Every place meant to be changed is marked \`EXTENSION POINT\`; the guide is docs/writing-a-backend.md in the
Weft repository. The Weft packages and tsyringe are \`peerDependencies\`: installed next to weftd, the backend
uses the agent's copies (see "Publishing" in the guide).

\`\`\`
npx tsc -b           # build
npx vitest run       # the conformance suite and unit tests, on a fake kernel
\`\`\`
`;
}

function parseArgs(argv) {
  const out = { rootReference: true };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--dir") out.dir = argv[++i];
    else if (a.startsWith("--dir=")) out.dir = a.slice(6);
    else if (a === "--package") out.packageName = argv[++i];
    else if (a.startsWith("--package=")) out.packageName = a.slice(10);
    else if (a === "--no-root-reference") out.rootReference = false;
    else if (a === "-h" || a === "--help") out.help = true;
    else if (a.startsWith("-")) throw new Error(`unknown option ${a} (use --dir <path>, --package <name>, --no-root-reference)`);
    else rest.push(a);
  }
  if (rest.length > 1) throw new Error(`one backend name expected, got ${rest.join(" ")}`);
  out.name = rest[0];
  return out;
}

function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
    if (args.help) {
      console.log("usage: npm run create-backend -- <name> [--dir <path>] [--package <npm name>] [--no-root-reference]");
      return;
    }
    // npm runs scripts from the root; a relative --dir means relative to where the user typed the command.
    const cwd = process.env.INIT_CWD ?? process.cwd();
    const r = createBackend({ ...args, ...(args.dir ? { dir: resolve(cwd, args.dir) } : {}) });
    const rel = relative(cwd, r.target) || ".";
    console.log(`created ${r.packageName} in ${rel} (${r.files.length} files)`);
    if (r.inside) {
      if (r.referenced) console.log("added it to the root tsconfig.json references");
      console.log(`next: npm install   (links it into the workspace)\n      cd ${rel} && npx tsc -b && npx vitest run`);
    } else {
      console.log(`next: cd ${rel} && npm install && npx tsc -p . && npx vitest run   (build this Weft checkout first: npm run build)`);
    }
  } catch (err) {
    console.error(`create-backend: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();

