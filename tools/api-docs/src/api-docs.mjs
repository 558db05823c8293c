#!/usr/bin/env node
// Builds docs/api, the API reference of the backend contract, from the TSDoc comments in the sources
// (docs/adr/0007-api-reference.md). `npm run docs:api` writes the Markdown; `npm run docs:api -- --check`
// writes it to a temporary directory and fails when docs/api differs.
//
// Every warning fails the run, not only errors: typedoc reports an export without a doc comment
// ("does not have any documentation"), a broken {@link} and a type that the pages use but no entry point
// exports as warnings, and each of them is a hole in the reference.
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Application, ConsoleLogger, LogLevel, TSConfigReader } from "typedoc";

const here = dirname(fileURLToPath(import.meta.url));
export const CONFIG = resolve(here, "..", "typedoc.json");
export const DOCS_API = resolve(here, "..", "..", "..", "docs", "api");

/** typedoc.json with its paths made absolute (they are relative to the file, as in typedoc's own reader). */
async function readConfig() {
  const { $schema: _schema, ...options } = JSON.parse(await readFile(CONFIG, "utf8"));
  const base = dirname(CONFIG);
  for (const key of ["tsconfig", "out", "readme"]) if (options[key] && options[key] !== "none") options[key] = resolve(base, options[key]);
  if (options.entryPoints) options.entryPoints = options.entryPoints.map((p) => resolve(base, p));
  return options;
}

/** Keeps every message (for the caller's report) and prints them unless `quiet`. */
class CollectingLogger extends ConsoleLogger {
  constructor(quiet) {
    super();
    this.quiet = quiet;
    this.messages = [];
  }
  log(message, level) {
    this.messages.push({ level, message });
    if (!this.quiet) super.log(message, level);
  }
}

/**
 * Runs typedoc with tools/api-docs/typedoc.json, then `overrides` (typedoc options; paths relative to the
 * current directory). Writes the pages only when nothing was reported at warning level or above.
 * Returns { ok, problems: string[] (warnings and errors, one line each), out }.
 */
export async function buildApiDocs({ overrides = {}, quiet = false } = {}) {
  // typedoc.json is merged here rather than read by typedoc's TypeDocReader, so that an overridden `tsconfig` is the
  // one whose files typedoc loads (the reader would load typedoc.json's program before the overrides apply).
  const app = await Application.bootstrapWithPlugins({ ...(await readConfig()), ...(quiet ? { logLevel: "Warn" } : {}), ...overrides }, [new TSConfigReader()]);
  const logger = new CollectingLogger(quiet);
  logger.level = app.logger.level;
  // Option errors were logged while bootstrapping, before this logger existed.
  const bootstrapFailed = app.logger.hasErrors() || app.logger.hasWarnings();
  app.logger = logger;
  const out = app.options.getValue("out");
  const problems = () => logger.messages.filter((m) => m.level >= LogLevel.Warn).map((m) => m.message.replace(/\u001b\[[0-9;]*m/g, ""));
  if (bootstrapFailed) return { ok: false, problems: ["typedoc rejected its options (see the messages above)"], out };
  const project = await app.convert();
  if (!project || problems().length) return { ok: false, problems: problems(), out };
  app.validate(project);
  if (problems().length) return { ok: false, problems: problems(), out };
  await app.generateOutputs(project);
  return { ok: problems().length === 0, problems: problems(), out };
}

async function listFiles(dir, base = dir) {
  const files = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    if (e.code === "ENOENT") return files;
    throw e;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) files.push(...(await listFiles(p, base)));
    else files.push(relative(base, p));
  }
  return files.sort();
}

/** Names the files of `actual` that are missing from, extra to, or different from `expected`. */
export async function compareTrees(expected, actual) {
  const [want, have] = [await listFiles(expected), await listFiles(actual)];
  const diffs = [];
  for (const f of want) {
    if (!have.includes(f)) diffs.push(`missing: ${f}`);
    else if ((await readFile(join(expected, f), "utf8")) !== (await readFile(join(actual, f), "utf8"))) diffs.push(`differs: ${f}`);
  }
  for (const f of have) if (!want.includes(f)) diffs.push(`extra: ${f}`);
  return diffs;
}

async function main(argv) {
  const check = argv.includes("--check");
  const unknown = argv.filter((a) => a !== "--check");
  if (unknown.length) {
    console.error(`api-docs: unknown argument ${unknown[0]}; use no argument (write docs/api) or --check (compare with docs/api)`);
    return 2;
  }
  const tmp = check ? await mkdtemp(join(tmpdir(), "weft-api-docs-")) : undefined;
  try {
    const { ok, problems, out } = await buildApiDocs({ overrides: tmp ? { out: tmp } : {} });
    if (!ok) {
      const undocumented = problems.filter((p) => p.includes("does not have any documentation")).length;
      const fix = undocumented ? `add a TSDoc comment (/** ... */) to each of the ${undocumented} undocumented exports named above` : "fix each problem named above";
      console.error(`api-docs: ${problems.length} problem(s), so docs/api was not written; ${fix}, then run npm run docs:api again`);
      return 1;
    }
    if (!check) {
      console.log(`api-docs: wrote ${relative(process.cwd(), out) || "."}`);
      return 0;
    }
    const diffs = await compareTrees(tmp, DOCS_API);
    if (diffs.length) {
      console.error(`api-docs: docs/api is out of date with the sources (${diffs.join("; ")}); run npm run docs:api and commit docs/api`);
      return 1;
    }
    console.log("api-docs: docs/api is up to date");
    return 0;
  } finally {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
