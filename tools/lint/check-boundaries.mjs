#!/usr/bin/env node
// Package-boundary check (DESIGN §2, STYLE "Nx itself"): fails the build when an import crosses a line the
// architecture draws. Rules are keyed by the Nx project tags in each package.json ("nx": {"tags": [...]}).
//
//   1. Only packages/kernel (tag scope:kernel) may import execa or node:child_process: one kernel-facing package.
//   2. packages/core (scope:core) does no I/O: no node:fs/net/http/child_process/dgram/dns, no other @weft package.
//   3. Backends (scope:backend) may import only core, the kernel port, reconcile and (in tests) the testing kits
//      and the netns lab (a scope:tools library) — never the daemon, a subnet store, or the CLI (the store has
//      no DI token either: a backend cannot resolve it). Outside tests they use the author surface only: not the
//      kernel's adapters, argv builders and output parsers (Linux*, Vici*, *Runner, register*, parse*, *Args,
//      ...), nor the datapath engine's internals (DatapathEngine, registerDatapath, wireBackend, AgentCore, ...).
//   4. No deep imports into another package (`@weft/x/src/...`, `../../packages/...`): use its public index.
//   5. Every @weft/* import is declared in the importing package's package.json; a source that ships (not a
//      *.spec.ts / *.spec-helper.ts) may not import a devDependency (keeps the Nx graph and the installs honest).
//   6. Nothing but tools and tests may depend on a type:app package.
//   7. Outside packages/kernel, nothing may reach a module by a way this check cannot read: `require`/`import()`
//      with a computed name, or node:module's createRequire. The exceptions are the two loaders
//      (LOADER_FILES): weftd's --backend-module loader and weft-cni's code-cache loader.
//   8. Only packages/kernel opens raw sockets (a tool's control socket, e.g. VICI) or reads /proc (DESIGN §2).
//      Outside it, the test kits (scope:testing), the tools (scope:tools) and tests: no value import of node:net,
//      node:dgram or node:tls (types and node:net's isIP/isIPv4/isIPv6 are fine: they open nothing; HTTP
//      servers and clients are not this rule's business), and no string or template literal that is a /proc
//      path ("/proc/...", `/proc/${pid}/...`).
//   9. Only packages/kernel runs processes: outside it (same exemptions as 8), no use of the process runner
//      (PROCESS_RUNNER, ProcessRunner, ExecaRunner, SpawnRunner). The composition roots (COMPOSITION_ROOTS) make
//      one runner and build the kernel's adapters over it; even they never use PROCESS_RUNNER, the token through
//      which a backend would reach the runner.
//   Rules 8 and 9 have a short list of known exceptions (KNOWN_EXCEPTIONS), each with its reason: debt to pay
//   by moving the code into a port of packages/kernel, listed here so it cannot grow unseen.
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
    pkgs.push({
      dir: join(gdir, d),
      name: j.name,
      tags: j.nx?.tags ?? [],
      runtimeDeps: { ...j.dependencies, ...j.peerDependencies, ...j.optionalDependencies },
      devDeps: { ...j.devDependencies },
    });
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

/** Names a file uses, for rules 3 and 9 (doc comments are not parsed as code, so they never count). */
const RUNNER_NAMES = new Set(["PROCESS_RUNNER", "ProcessRunner", "ExecaRunner", "SpawnRunner"]);
/** A /proc path at the start of a string or template literal. */
const PROC_PATH = /^\/proc(\/|$)/;

/**
 * What a file reaches and uses. `imports`: { spec, names, values, typeOnly } for literal module names (`names`
 * bound, `values` those not type-only, "*" for a namespace, "" for a side-effect import; { dynamic } for a
 * computed name or createRequire); `names`: the identifiers it mentions; `procPaths`: /proc literals.
 */
function scan(file, text) {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, file.endsWith(".ts") ? ts.ScriptKind.TS : ts.ScriptKind.JS);
  const imports = [];
  const names = new Set();
  const procPaths = [];
  const literal = (n) => (n && (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) ? n.text : undefined);
  /** The names an import/export declaration binds, and whether all of it is type-only. */
  const bound = (n) => {
    const out = [];
    let typeOnly = false;
    if (ts.isImportDeclaration(n)) {
      const c = n.importClause;
      typeOnly = !!c?.isTypeOnly;
      if (c?.name) out.push({ name: "default", typeOnly });
      const b = c?.namedBindings;
      if (b && ts.isNamedImports(b)) for (const e of b.elements) out.push({ name: (e.propertyName ?? e.name).text, typeOnly: typeOnly || e.isTypeOnly });
      else if (b) out.push({ name: "*", typeOnly });
      if (!c) out.push({ name: "", typeOnly: false }); // a side-effect import runs the module
    } else {
      typeOnly = n.isTypeOnly;
      const b = n.exportClause;
      if (b && ts.isNamedExports(b)) for (const e of b.elements) out.push({ name: (e.propertyName ?? e.name).text, typeOnly: typeOnly || e.isTypeOnly });
      else out.push({ name: "*", typeOnly });
    }
    return { names: out, typeOnly: out.length > 0 && out.every((x) => x.typeOnly) };
  };
  const visit = (n) => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier) {
      const b = bound(n);
      imports.push({ spec: literal(n.moduleSpecifier), names: b.names.map((x) => x.name), values: b.names.filter((x) => !x.typeOnly).map((x) => x.name), typeOnly: b.typeOnly });
    } else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference)) {
      imports.push({ spec: literal(n.moduleReference.expression), names: ["*"], values: n.isTypeOnly ? [] : ["*"], typeOnly: n.isTypeOnly });
    } else if (ts.isCallExpression(n)) {
      const callee = n.expression;
      const isImport = callee.kind === ts.SyntaxKind.ImportKeyword;
      const isRequire = ts.isIdentifier(callee) && callee.text === "require";
      if (isImport || isRequire) {
        const spec = literal(n.arguments[0]);
        imports.push(spec !== undefined ? { spec, names: ["*"], values: ["*"], typeOnly: false } : { dynamic: `${isImport ? "import" : "require"}() with a computed module name` });
      }
      if (ts.isIdentifier(callee) && callee.text === "createRequire") imports.push({ dynamic: "createRequire()" });
    } else if (ts.isImportTypeNode(n)) {
      const a = n.argument;
      if (ts.isLiteralTypeNode(a) && ts.isStringLiteral(a.literal)) imports.push({ spec: a.literal.text, names: ["*"], values: [], typeOnly: true });
    }
    if (ts.isIdentifier(n)) names.add(n.text);
    const isModuleName = n.parent && (ts.isImportDeclaration(n.parent) || ts.isExportDeclaration(n.parent)) && n.parent.moduleSpecifier === n;
    if ((ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n) || ts.isTemplateHead(n)) && !isModuleName && PROC_PATH.test(n.text)) {
      procPaths.push(`${n.text}${ts.isTemplateHead(n) ? "${...}" : ""}`);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return { imports, names, procPaths };
}
const PROCESS_MODULES = new Set(["execa", "node:child_process", "child_process"]);
const SOCKET_MODULES = new Set(["node:net", "net", "node:dgram", "dgram", "node:tls", "tls"]);
/** node:net's pure address checks: they open nothing. */
const SOCKET_MODULE_PURE = new Set(["isIP", "isIPv4", "isIPv6"]);
const IO_MODULES = new Set(["node:fs", "fs", "node:fs/promises", "fs/promises", "node:http", "http", "node:https", "https", "node:dns", "dns", ...SOCKET_MODULES, ...PROCESS_MODULES]);
const BACKEND_ALLOWED_SCOPES = new Set(["scope:core", "scope:kernel", "scope:reconcile", "scope:backend-api"]);
const BACKEND_TEST_ALLOWED_SCOPES = new Set([...BACKEND_ALLOWED_SCOPES, "scope:testing"]);
/** Rule 3: what a backend's shipped sources may not take from these packages (anything else they export is the author API). */
const BACKEND_DENIED_NAMES = {
  "@weft/kernel": /^(\*|Linux[A-Z]\w*|Vici[A-Z]\w*|NetnsPathKernel|netnsPathRunner|netnsNameOf|ExecaRunner|SpawnRunner|register[A-Z]\w*|parse[A-Z]\w*|classify[A-Z]\w*|validateKernelOp|\w+Args|\w+_ERROR_RULES)$/,
  "@weft/reconcile": /^(\*|DatapathEngine|registerDatapath|EXTRA_RECONCILERS|OWNERSHIP|wireBackend|BackendWiring\w*|podMtu|orderKinds|AgentCore\w*|PeerSet|JoinHooks|LeaseStore)$/,
};
const BACKEND_DENIED_WHY = {
  "@weft/kernel": "a backend uses the kernel's ports (types and tokens), not its adapters, argv builders or output parsers; import the names you use, not *",
  "@weft/reconcile": "a backend contributes reconcilers (ObjectReconciler, RECONCILER_CONTRIBUTION), it does not drive the engine or the agent core; import the names you use, not *",
};
/**
 * Rule 9: where the applications make their process runner and build the kernel's adapters (and the agent's
 * ports) over it: weftd (main, its agent and --teardown), the backend wiring both weftd and the test agent use,
 * weftctl and weft-cni.
 */
const COMPOSITION_ROOTS = new Set([
  "packages/daemon/src/main.ts",
  "packages/daemon/src/agent.ts",
  "packages/daemon/src/teardown.ts",
  "packages/reconcile/src/wire.ts",
  "packages/ctl/src/main.ts",
  "packages/cni/src/main.ts",
]);
/** Rules 8 and 9: known exceptions, each with its reason. Paying one off means deleting its line. */
const KNOWN_EXCEPTIONS = new Map([
  ["packages/cni/src/direct/sysfs.ts", { rules: ["proc"], why: "weft-cni's standalone fallback writes the pod's sysctls under /proc/sys itself; to move onto the kernel's sysctl port" }],
  ["packages/cni/src/ipam/lock.ts", { rules: ["proc"], why: "the IPAM file lock tells a live holder by /proc/<pid>/stat (ADR 0005); to move into packages/kernel" }],
  ["packages/cni/src/delegate.ts", { rules: ["runner"], why: "CNI delegation executes the delegate plugin the conflist names, through the ProcessRunner port; to become a kernel port" }],
  ["packages/cni/src/plugin.ts", { rules: ["runner"], why: "hands the composition root's runner to delegate.ts (above)" }],
]);
const exceptionsUsed = new Set();
const excepted = (rel, rule) => {
  const hit = KNOWN_EXCEPTIONS.get(rel)?.rules.includes(rule) ?? false;
  if (hit) exceptionsUsed.add(`${rel}:${rule}`);
  return hit;
};

const violations = [];
for (const p of pkgs) {
  const has = (t) => p.tags.includes(t);
  // Rules 8 and 9 bind what ships in the agent, the CLI and the CNI plugin: not the kernel, the kits or the tools.
  const kernelSide = has("scope:kernel") || has("scope:testing") || has("scope:tools");
  for (const f of files(join(p.dir, "src"))) {
    const rel = relative(root, f);
    const isTest = /\.spec(-helper)?\.ts$/.test(f);
    const { imports, names, procPaths } = scan(f, readFileSync(f, "utf8"));
    if (!kernelSide && !isTest) {
      if (procPaths.length && !excepted(rel, "proc")) {
        for (const path of new Set(procPaths)) violations.push(`${rel}: reads "${path}": only packages/kernel reads /proc; use (or add) a port of @weft/kernel`);
      }
      const used = [...RUNNER_NAMES].filter((n) => names.has(n) && !(COMPOSITION_ROOTS.has(rel) && n !== "PROCESS_RUNNER"));
      if (used.length && !excepted(rel, "runner")) {
        violations.push(
          COMPOSITION_ROOTS.has(rel)
            ? `${rel}: uses PROCESS_RUNNER: a composition root hands backends the kernel's ports, never the runner; register the adapter built over it (MANAGED_DAEMONS, WIREGUARD, IPSEC, ...) instead`
            : `${rel}: uses ${used.join(", ")}: only packages/kernel runs processes; describe what you need through a port of @weft/kernel (a managed daemon, a tool's port) instead of a process runner`,
        );
      }
    }
    for (const imp of imports) {
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
      if (SOCKET_MODULES.has(spec) && !kernelSide && !isTest && !has("scope:core")) {
        const opened = imp.values.filter((n) => !SOCKET_MODULE_PURE.has(n));
        if (opened.length) bad(`${opened.map((n) => n || "(side effects)").join(", ")}: only packages/kernel opens sockets; use (or add) a port of @weft/kernel (types and isIP/isIPv4/isIPv6 are fine)`);
      }
      if (has("scope:core") && !isTest && (IO_MODULES.has(spec) || (spec.startsWith("@weft/") && spec !== p.name))) bad("packages/core does no I/O and depends on no other Weft package");
      if (/^@weft\/[^/]+\/(src|dist)\//.test(spec) || /(^|\/)(packages|backends|tools)\/[^/]+\/src\//.test(spec)) bad("deep import into another package: import its public entry point");
      if (spec.startsWith("@weft/")) {
        const target = spec.split("/").slice(0, 2).join("/");
        const tp = byName.get(target);
        if (target !== p.name) {
          if (!tp) bad(`no workspace package named ${target}`);
          else {
            if (target in p.runtimeDeps) {
              // declared for runtime: fine from any file
            } else if (target in p.devDeps) {
              if (!isTest) bad(`${target} is a devDependency of ${p.name}, but this file ships: move ${target} to "dependencies" in ${relative(root, join(p.dir, "package.json"))}, or import it only from *.spec.ts files`);
            } else bad(`${target} is not declared in ${p.name}'s package.json dependencies`);
            if (has("scope:backend")) {
              const allowed = isTest ? BACKEND_TEST_ALLOWED_SCOPES : BACKEND_ALLOWED_SCOPES;
              const testLib = isTest && tp.tags.includes("scope:tools") && tp.tags.includes("type:lib"); // the netns lab
              if (!tp.tags.some((t) => allowed.has(t)) && !testLib) {
                const kits = tp.tags.includes("scope:testing") || tp.tags.includes("scope:tools") ? " (testing kits and the lab only in *.spec.ts files)" : "";
                bad(`backends may import only core, the kernel port, reconcile and, in tests, the testing kits and the lab, not ${target} (${tp.tags.join(",")})${kits}`);
              }
              const denied = !isTest && BACKEND_DENIED_NAMES[target];
              if (denied) {
                const hit = imp.names.filter((n) => denied.test(n));
                if (hit.length) bad(`${hit.join(", ")}: ${BACKEND_DENIED_WHY[target]}`);
              }
            }
            if (tp.tags.includes("type:app") && !has("scope:tools") && !isTest) bad(`${target} is an application; libraries may not depend on it`);
          }
        }
      }
    }
  }
}

// An exception that no longer matches anything is stale: it would let the next violation in unseen.
for (const [rel, { rules }] of KNOWN_EXCEPTIONS) {
  for (const rule of rules) {
    if (!exceptionsUsed.has(`${rel}:${rule}`) && existsSync(join(root, rel))) {
      violations.push(`${rel}: the known exception for rule "${rule}" no longer applies: delete it from KNOWN_EXCEPTIONS (tools/lint/check-boundaries.mjs)`);
    }
  }
}

if (violations.length) {
  console.error(`boundary check: ${violations.length} violation(s)`);
  for (const v of violations) console.error("  " + v);
  process.exit(1);
}
console.log(`boundary check: ${pkgs.length} packages clean`);
