/**
 * The long fuzz run (issue 15): every `src/**\/*.fuzz.spec.ts` of the repository's packages, backends and tools,
 * through vitest (unit tier, one package at a time), with WEFT_FUZZ_RUNS=<runs> cases per property and
 * WEFT_FUZZ_REPORT=<file> (tools/fuzz/src/index.ts: one JSON line per property that held). Properties that fail
 * write no line: their tests' failures come from vitest's JSON report.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { labRunner } from "@weft/netns-lab";
import { machineLine, table, writeSection } from "./report.js";

export interface FuzzRow {
  /** Package directory, relative to the repository (e.g. packages/core). */
  readonly pkg: string;
  /** The property's name (fuzz(name, ...)), or a failed test's title. */
  readonly property: string;
  readonly runs: number;
  readonly ms: number;
  readonly slowestMs: number;
  readonly seed?: number;
  /** 0, or 1 with `failure` when the test around it failed. */
  readonly failures: number;
  /** First line of the failure (a counterexample, a hang, a wrong error). */
  readonly failure?: string;
}

export interface FuzzBenchResult {
  readonly runs: number;
  readonly files: string[];
  readonly rows: FuzzRow[];
  readonly wallMs: number;
}

const SKIP = new Set(["node_modules", "dist", ".git", ".nx"]);

/** Every src/**\/*.fuzz.spec.ts under packages/, backends/ and tools/, grouped by the package that holds it. */
export function findFuzzSpecs(root: string): Map<string, string[]> {
  const byPkg = new Map<string, string[]>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir)) {
      if (SKIP.has(e)) continue;
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (e.endsWith(".fuzz.spec.ts") && /\/src\//.test(p)) {
        const pkg = p.slice(0, p.indexOf("/src/"));
        byPkg.set(pkg, [...(byPkg.get(pkg) ?? []), p].sort());
      }
    }
  };
  for (const top of ["packages", "backends", "tools"]) if (existsSync(join(root, top))) walk(join(root, top));
  return new Map([...byPkg].sort(([a], [b]) => a.localeCompare(b)));
}

interface VitestJson {
  testResults?: { name: string; message?: string; assertionResults?: { title: string; fullName?: string; status: string; failureMessages?: string[] }[] }[];
}

const firstLine = (s: string) =>
  s
    .replace(/\x1b\[[0-9;]*m/g, "")
    .split("\n")
    .map((l) => l.trim())
    .find((l) => l.length > 0)
    ?.slice(0, 160) ?? "";

/** Runs the fuzz specs with `runs` cases per property; `log` gets progress lines. */
export async function runFuzzBench(root: string, runs: number, log: (line: string) => void = (l) => console.log(l)): Promise<FuzzBenchResult> {
  const work = mkdtempSync(join(tmpdir(), "weft-fuzz-"));
  const rows: FuzzRow[] = [];
  const files: string[] = [];
  const t0 = performance.now();
  try {
    for (const [pkgDir, specs] of findFuzzSpecs(root)) {
      const pkg = relative(root, pkgDir);
      files.push(...specs.map((s) => relative(root, s)));
      const report = join(work, `${pkg.replace(/\//g, "_")}.jsonl`);
      const json = join(work, `${pkg.replace(/\//g, "_")}.vitest.json`);
      const out = join(work, `${pkg.replace(/\//g, "_")}.out`);
      log(`fuzz: ${pkg}: ${specs.map((s) => relative(pkgDir, s)).join(", ")} at ${runs} runs per property`);
      const started = performance.now();
      const child = labRunner.spawn(
        "npx",
        ["vitest", "run", ...specs.map((s) => relative(pkgDir, s)), "--testTimeout=0", "--hookTimeout=0", "--reporter=default", "--reporter=json", `--outputFile.json=${json}`],
        { cwd: pkgDir, env: { WEFT_TIER: "unit", WEFT_FUZZ_RUNS: String(runs), WEFT_FUZZ_REPORT: report }, stdoutFile: out, stderrFile: out },
      );
      const exit = await child.exited;
      const lines = existsSync(report) ? readFileSync(report, "utf8").split("\n").filter((l) => l.trim()) : [];
      for (const l of lines) {
        const r = JSON.parse(l) as { name: string; runs: number; seed: number; ms: number; slowestMs: number };
        rows.push({ pkg, property: r.name, runs: r.runs, ms: r.ms, slowestMs: r.slowestMs, seed: r.seed, failures: 0 });
      }
      let failed = 0;
      if (existsSync(json)) {
        const v = JSON.parse(readFileSync(json, "utf8")) as VitestJson;
        for (const f of v.testResults ?? []) {
          if (f.message && !(f.assertionResults ?? []).length) {
            rows.push({ pkg, property: relative(pkgDir, f.name), runs: 0, ms: 0, slowestMs: 0, failures: 1, failure: firstLine(f.message) });
            failed++;
          }
          for (const a of f.assertionResults ?? []) {
            if (a.status !== "failed") continue;
            failed++;
            rows.push({ pkg, property: a.title, runs, ms: 0, slowestMs: 0, failures: 1, failure: firstLine((a.failureMessages ?? []).join("\n")) });
          }
        }
      } else if (exit.code !== 0) {
        rows.push({ pkg, property: "(vitest)", runs: 0, ms: 0, slowestMs: 0, failures: 1, failure: firstLine(readFileSync(out, "utf8").split("\n").slice(-20).join("\n")) || `exit ${JSON.stringify(exit)}` });
        failed++;
      }
      log(`fuzz: ${pkg}: ${lines.length} properties held, ${failed} failed, ${((performance.now() - started) / 1000).toFixed(0)} s (vitest exit ${exit.code})`);
      if (exit.code !== 0 && failed === 0) log(readFileSync(out, "utf8").split("\n").slice(-30).join("\n"));
    }
    return { runs, files, rows, wallMs: performance.now() - t0 };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The directory of the repository (for running from dist or src). */
export function repoRoot(from: string): string {
  let d = from;
  while (!existsSync(join(d, "nx.json"))) {
    const up = dirname(d);
    if (up === d) throw new Error(`no nx.json above ${from}`);
    d = up;
  }
  return d;
}

/** `npm run bench -- fuzz [--runs N]` (default 1,000,000): runs, prints and records the "fuzz" section of `out`. */
export async function fuzzCommand(opts: ReadonlyMap<string, string>, out: string): Promise<void> {
  const runs = Number(opts.get("runs") ?? 1_000_000);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs ${JSON.stringify(opts.get("runs"))} is not a positive integer; e.g. --runs 1000000`);
  const r = await runFuzzBench(repoRoot(dirname(out)), runs);
  const failed = r.rows.filter((x) => x.failures > 0);
  const body = [
    `## Fuzz: every parser's properties at ${runs.toLocaleString("en-US")} cases each`,
    "",
    `Machine: ${machineLine()}. \`npm run bench -- fuzz --runs ${runs}\`: every \`src/**/*.fuzz.spec.ts\` (${r.files.length} files) through vitest with ` +
      `WEFT_FUZZ_RUNS=${runs} and the kit's fixed seed per property (tools/fuzz), one package at a time; ${(r.wallMs / 60_000).toFixed(1)} min in all. ` +
      `"slowest case" is the longest single case (the kit fails a case over 2 s as a hang). A failed property shows its first failure line.`,
    "",
    table(
      ["package", "property", "runs", "time (s)", "slowest case (ms)", "failures"],
      r.rows.map((x) =>
        x.failures
          ? [x.pkg, x.property.replace(/\|/g, "\\|"), x.runs ? `≤ ${x.runs.toLocaleString("en-US")}` : "-", "-", "-", `${x.failures}: ${(x.failure ?? "").replace(/\|/g, "\\|")}`]
          : [x.pkg, x.property.replace(/\|/g, "\\|"), x.runs.toLocaleString("en-US"), (x.ms / 1000).toFixed(1), x.slowestMs.toFixed(1), 0],
      ),
    ),
    "",
    failed.length === 0 ? `All ${r.rows.length} properties held.` : `${failed.length} of ${r.rows.length} properties failed.`,
  ].join("\n");
  writeSection(out, "fuzz", body);
  console.log(body);
  if (failed.length) process.exitCode = 1;
}
