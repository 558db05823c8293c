import { defineConfig, defineProject, mergeConfig } from "vitest/config";

/**
 * Test tiers (DESIGN §7). One vitest config per package; the tier is chosen by WEFT_TIER so the
 * three Nx targets (`test`, `test-netns`, `test-cluster`) share it:
 *   unit    -> src/**\/*.spec.ts without the two suffixes below (no privileges)
 *   netns   -> src/**\/*.netns.spec.ts   (real kernel, root)
 *   cluster -> src/**\/*.cluster.spec.ts (several processes, real etcd)
 */
const tier = process.env.WEFT_TIER ?? "unit";
const include =
  tier === "netns" ? ["src/**/*.netns.spec.ts"] : tier === "cluster" ? ["src/**/*.cluster.spec.ts"] : ["src/**/*.spec.ts"];
const exclude = tier === "unit" ? ["src/**/*.netns.spec.ts", "src/**/*.cluster.spec.ts", "**/node_modules/**", "**/dist/**"] : ["**/node_modules/**", "**/dist/**"];

const shared = defineConfig({
  resolve: { conditions: ["@weft/source"] },
  ssr: { resolve: { conditions: ["@weft/source"] } },
  // Legacy decorators for tsyringe. No metadata: every constructor parameter carries an explicit @inject.
  oxc: { decorator: { legacy: true, emitDecoratorMetadata: false } },
  test: {
    include,
    exclude,
    environment: "node",
    // A package runs a real tier only when it has tests of that tier (its package.json declares the target), so
    // an empty real tier means spec files went missing: fail rather than pass quietly.
    passWithNoTests: tier === "unit",
    testTimeout: tier === "unit" ? 10_000 : 120_000,
    hookTimeout: tier === "unit" ? 10_000 : 120_000,
    // Real-kernel tiers run test files one after another inside a package: they share one machine.
    fileParallelism: tier === "unit",
  },
});

export function weftProject(name: string) {
  // Under tools/ci/test-all.sh every package and tier also writes a JSON report, summed into one closing line.
  const reportDir = process.env.WEFT_REPORT_DIR;
  const reporters = reportDir ? ["default", ["json", { outputFile: `${reportDir}/${name}-${tier}.json` }]] : ["default"];
  return mergeConfig(shared, defineProject({ test: { name: `${name}:${tier}`, reporters: reporters as never } }));
}
