#!/usr/bin/env node
/**
 * `npm run bench [-- <suite> ...]`: runs benchmark suites and records them in docs/benchmarks.md.
 * Suites: kernel (default: all available).
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runKernelBench } from "./kernel.js";
import { machineLine, table, writeSection } from "./report.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const out = join(root, "docs", "benchmarks.md");

async function kernel() {
  const rows = await runKernelBench([1000, 5000]);
  const fmt = (ms: number) => ms.toFixed(0);
  const body = [
    "## Kernel: programming vxlan peers (route + permanent neighbour + self FDB entry per peer)",
    "",
    `Machine: ${machineLine()}. Real LinuxKernel adapter and DatapathEngine in a fresh network namespace; one \`ip -batch\`/\`bridge -batch\` per object kind per pass.`,
    "Targets: 5,000 peers from empty ≤ 1,000 ms; a no-drift pass ≤ 300 ms and 0 writes.",
    "",
    table(
      ["peers", "kernel objects", "program from empty (ms)", "no-drift pass (ms)", "no-drift writes", "remove all (ms)"],
      rows.map((r) => [r.peers, r.objects, fmt(r.programMs), fmt(r.noDriftMs), r.noDriftWrites, fmt(r.removeAllMs)]),
    ),
  ].join("\n");
  writeSection(out, "kernel", body);
  console.log(body);
}

const suites: Record<string, () => Promise<void>> = { kernel };
const wanted = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(suites);
for (const s of wanted) {
  const fn = suites[s];
  if (!fn) {
    console.error(`unknown suite "${s}": known suites are ${Object.keys(suites).join(", ")}`);
    process.exit(2);
  }
  await fn();
}
