#!/usr/bin/env node
// Sums the vitest JSON reports of all packages and tiers into one closing line: "N passed, N failed, N skipped".
// Exits non-zero when anything failed or when no test ran at all.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
let passed = 0, failed = 0, skipped = 0;
const perTier = {};
// The one allowed gate: a test titled "not run: <missing kernel feature>" (e.g. kernel mode IPsec where the
// kernel lacks ESP). It is listed by name and does not count as a skip.
const notRun = [];
for (const f of readdirSync(dir).filter((f) => f.endsWith(".json"))) {
  const r = JSON.parse(readFileSync(join(dir, f), "utf8"));
  const tier = f.replace(/\.json$/, "").split("-").pop();
  perTier[tier] ??= { passed: 0, failed: 0, skipped: 0 };
  passed += r.numPassedTests ?? 0;
  // A file that fails to load has no failed tests but a failed suite: count it, or a broken import would pass.
  const f_ = (r.numFailedTests ?? 0) || (r.numFailedTestSuites ?? 0) || (r.success === false ? 1 : 0);
  const gated = (r.testResults ?? []).flatMap((t) => t.assertionResults ?? []).filter((a) => a.status !== "passed" && a.status !== "failed" && /^not run: /.test(a.title ?? ""));
  for (const a of gated) notRun.push(`${tier}: ${a.fullName ?? a.title}`);
  r.numPendingTests = Math.max(0, (r.numPendingTests ?? 0) - gated.length);
  failed += f_;
  skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  perTier[tier].passed += r.numPassedTests ?? 0;
  perTier[tier].failed += f_;
  perTier[tier].skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
}
for (const [tier, t] of Object.entries(perTier)) console.log(`  ${tier}: ${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped`);
if (notRun.length) console.log(`  not run (missing kernel feature, the only allowed gate): ${notRun.length}`);
for (const n of notRun) console.log(`    ${n}`);
// The closing line stays exactly "Tests: N passed, N failed, N skipped" (what CI reads).
console.log(`Tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
// The real tiers must really have run: none of them may be empty or skipped.
const hollow = ["netns", "cluster"].filter((t) => !perTier[t] || perTier[t].passed === 0 || perTier[t].skipped > 0);
if (hollow.length) console.log(`real tier(s) ${hollow.join(", ")} did not fully run (empty or skipped tests): treating the run as failed`);
process.exit(failed > 0 || passed === 0 || hollow.length > 0 ? 1 : 0);
