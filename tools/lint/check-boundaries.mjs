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
import { readFileSync, readdirSync, statSync, existsSync } from "node:fs";
import { join, relative, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
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

const IMPORT_RE = /(?:^|[^\w.])(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|(?:^|[^\w.])import\s*["']([^"']+)["']|(?:^|[^\w.])import\(\s*["']([^"']+)["']\s*\)|(?:^|[^\w.])require\(\s*["']([^"']+)["']\s*\)/gm;
const PROCESS_MODULES = new Set(["execa", "node:child_process", "child_process"]);
const IO_MODULES = new Set(["node:fs", "fs", "node:fs/promises", "fs/promises", "node:net", "net", "node:http", "http", "node:https", "https", "node:dgram", "dgram", "node:dns", "dns", ...PROCESS_MODULES]);
const BACKEND_ALLOWED_SCOPES = new Set(["scope:core", "scope:kernel", "scope:reconcile", "scope:testing", "scope:backend-api"]);

const violations = [];
for (const p of pkgs) {
  const has = (t) => p.tags.includes(t);
  for (const f of files(join(p.dir, "src"))) {
    const rel = relative(root, f);
    const isTest = /\.spec\.ts$/.test(f);
    const text = readFileSync(f, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
    for (const m of text.matchAll(IMPORT_RE)) {
      const spec = m[1] ?? m[2] ?? m[3] ?? m[4];
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
