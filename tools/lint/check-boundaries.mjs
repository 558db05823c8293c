#!/usr/bin/env node
// Package-boundary check (DESIGN §2, STYLE "Nx itself"): fails the build when an import crosses a line the
// architecture draws. Rules are keyed by the Nx project tags in each package.json ("nx": {"tags": [...]}).
//
//   1. Only packages/kernel (tag scope:kernel) may import execa or node:child_process: one kernel-facing package.
//   2. packages/core (scope:core) does no I/O: no node:fs/net/http/child_process/dgram/dns, no other @weft package.
//   3. Backends (scope:backend) may import only core, the kernel port, reconcile and testing kits — never the
//      daemon, a subnet store, or the CLI.
//   4. No deep imports into another package (`@weft/x/src/...`, `../../packages/...`): use its public index.
//   5. Every @weft/* import is declared in the importing package's dependencies (keeps the Nx graph honest).
//   6. Nothing but tools and tests may depend on a type:app package.
//   7. Outside packages/kernel, nothing may reach a module by a way this check cannot read: `require`/`import()`
//      with a computed name, or node:module's createRequire. The exceptions are the two loaders
//      (LOADER_FILES): weftd's --backend-module loader and weft-cni's code-cache loader.
// Imports are read with the TypeScript parser, not a regular expression: comments, strings and template
// literals cannot hide or fake one.
import { readFileSync, readdirSync, statSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join, relative, dirname } from "node:path";
import { fileURLToPath } from "node:url";

// `--root <dir>` checks another tree (the lint's own tests run it on fixtures).
const rootArg = process.argv.indexOf("--root");
const root = rootArg > 0 ? process.argv[rootArg + 1] : join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const groups = ["packages", "backends", "tools"];

const pkgs = [];
for (const g of groups) {
  const gdir = join(root, g);
  if (!existsSync(gdir)) continue;
  for (const d of readdirSync(gdir)) {
    const pj = join(gdir, d, "package.json");
    if (!existsSync(pj)) continue;
    const j = JSON.parse(readFileSync(pj, "utf8"));
    pkgs.push({ dir: join(gdir, d), name: j.name, tags: j.nx?.tags ?? [], deps: { ...j.dependencies, ...j.devDependencies, ...j.peerDependencies } });
  }
}
const byName = new Map(pkgs.map((p) => [p.name, p]));

function* files(dir) {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir)) {
    if (e === "node_modules" || e === "dist") continue;
    const p = join(dir, e);
    const s = statSync(p);
    if (s.isDirectory()) yield* files(p);
    else if (/\.(ts|mts|js|mjs)$/.test(e) && !e.endsWith(".d.ts")) yield p;
  }
}

// TypeScript from the workspace (the lint runs before the build, after npm ci), whatever tree it checks.
const ts = createRequire(import.meta.url)("typescript");
// The two loaders: weftd's --backend-module loader imports what the operator named; weft-cni's code-cache loader
// hands its own bundled plugin a `require` (createRequire) for Node's built-ins.
const LOADER_FILES = new Set(["packages/daemon/src/backend-modules.ts", "packages/cni/src/loader.ts"]);

/** Every module a file reaches: { spec } for literal names, { dynamic } for a computed one or createRequire. */
function importsOf(file, text) {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, file.endsWith(".ts") ? ts.ScriptKind.TS : ts.ScriptKind.JS);
  const out = [];
  const literal = (n) => (n && (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) ? n.text : undefined);
  const visit = (n) => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier) out.push({ spec: literal(n.moduleSpecifier) });
    else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference)) out.push({ spec: literal(n.moduleReference.expression) });
    else if (ts.isCallExpression(n)) {
      const callee = n.expression;
      const isImport = callee.kind === ts.SyntaxKind.ImportKeyword;
      const isRequire = ts.isIdentifier(callee) && callee.text === "require";
      if (isImport || isRequire) {
        const spec = literal(n.arguments[0]);
        out.push(spec !== undefined ? { spec } : { dynamic: `${isImport ? "import" : "require"}() with a computed module name` });
      }
      if (ts.isIdentifier(callee) && callee.text === "createRequire") out.push({ dynamic: "createRequire()" });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}
const PROCESS_MODULES = new Set(["execa", "node:child_process", "child_process"]);
const IO_MODULES = new Set(["node:fs", "fs", "node:fs/promises", "fs/promises", "node:net", "net", "node:http", "http", "node:https", "https", "node:dgram", "dgram", "node:dns", "dns", ...PROCESS_MODULES]);
const BACKEND_ALLOWED_SCOPES = new Set(["scope:core", "scope:kernel", "scope:reconcile", "scope:testing", "scope:backend-api"]);

const violations = [];
for (const p of pkgs) {
  const has = (t) => p.tags.includes(t);
  for (const f of files(join(p.dir, "src"))) {
    const rel = relative(root, f);
    const isTest = /\.spec\.ts$/.test(f);
    for (const imp of importsOf(f, readFileSync(f, "utf8"))) {
      if (imp.dynamic) {
        if (!has("scope:kernel") && !isTest && !LOADER_FILES.has(rel)) {
          violations.push(`${rel}: ${imp.dynamic}: a module reached this way escapes the boundary check; import it by name (only the --backend-module loader may import computed paths)`);
        }
        continue;
      }
      const spec = imp.spec;
      if ((spec === "node:module" || spec === "module") && !has("scope:kernel") && !isTest && !LOADER_FILES.has(rel)) {
        violations.push(`${rel}: imports "${spec}": createRequire and friends load modules this check cannot see; import by name`);
      }
      const bad = (rule) => violations.push(`${rel}: imports "${spec}": ${rule}`);
      if (PROCESS_MODULES.has(spec) && !has("scope:kernel")) bad("only packages/kernel may start processes; use the ProcessRunner port (PROCESS_RUNNER)");
      if (has("scope:core") && !isTest && (IO_MODULES.has(spec) || (spec.startsWith("@weft/") && spec !== p.name))) bad("packages/core does no I/O and depends on no other Weft package");
      if (/^@weft\/[^/]+\/(src|dist)\//.test(spec) || /(^|\/)(packages|backends|tools)\/[^/]+\/src\//.test(spec)) bad("deep import into another package: import its public entry point");
      if (spec.startsWith("@weft/")) {
        const target = spec.split("/").slice(0, 2).join("/");
        const tp = byName.get(target);
        if (target !== p.name) {
          if (!tp) bad(`no workspace package named ${target}`);
          else {
            if (!(target in p.deps)) bad(`${target} is not declared in ${p.name}'s package.json dependencies`);
            if (has("scope:backend") && !tp.tags.some((t) => BACKEND_ALLOWED_SCOPES.has(t))) {
              bad(`backends may import only core, the kernel port, reconcile and the testing kits, not ${target} (${tp.tags.join(",")})`);
            }
            if (tp.tags.includes("type:app") && !has("scope:tools") && !isTest) bad(`${target} is an application; libraries may not depend on it`);
          }
        }
      }
    }
  }
}

if (violations.length) {
  console.error(`boundary check: ${violations.length} violation(s)`);
  for (const v of violations) console.error("  " + v);
  process.exit(1);
}
console.log(`boundary check: ${pkgs.length} packages clean`);
