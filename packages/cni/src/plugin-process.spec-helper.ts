/**
 * Test fixture (unit tier): the Node plugin (src/main.ts) as a real process, bundled once per test file with
 * esbuild from the sources, and the C shim compiled from shim/weft-cni-shim.c, so tests can compare what the
 * runtime would see through each path, and can bound with a timeout a case that might hang (a child can be
 * killed; a synchronous loop in the test's own worker cannot).
 */
import { SpawnRunner } from "@weft/kernel";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { afterAll } from "vitest";
import { patchShim } from "./install.js";

const MAIN_SRC = fileURLToPath(new URL("./main.ts", import.meta.url));
const SHIM_SRC = fileURLToPath(new URL("../shim/weft-cni-shim.c", import.meta.url));

let dir: string | undefined;
let plugin: Promise<string> | undefined;
let shim: Promise<string> | undefined;

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
  plugin = undefined;
  shim = undefined;
});

function workDir(): string {
  dir ??= mkdtempSync(join(tmpdir(), "weft-cni-proc-"));
  return dir;
}

/** The Node plugin as one CommonJS file (the same bundle the executable carries, without the code cache loader). */
export function pluginScript(): Promise<string> {
  plugin ??= (async () => {
    const out = join(workDir(), "weft-cni.cjs");
    // Executable with an absolute interpreter: the shim's fallback is executed directly (no PATH).
    await build({
      entryPoints: [MAIN_SRC],
      bundle: true,
      platform: "node",
      target: "node20",
      format: "cjs",
      conditions: ["@weft/source"],
      outfile: out,
      logLevel: "warning",
      banner: { js: `#!${process.execPath}` },
    });
    chmodSync(out, 0o755);
    return out;
  })();
  return plugin;
}

/**
 * The C shim compiled with the machine's C compiler (as `npm run shim` does, not static), with the bundled Node
 * plugin written into its fallback slot as `weft-cni install` does: when its socket is absent, it runs that.
 */
export function shimBinary(): Promise<string> {
  shim ??= (async () => {
    const compiled = join(workDir(), "weft-cni-shim");
    const r = await runProcess("cc", ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-o", compiled, SHIM_SRC], { ...process.env } as Record<string, string>, "", 60_000);
    if (r.exitCode !== 0) throw new Error(`compiling the shim failed: ${r.stderr}`);
    const out = join(workDir(), "weft");
    writeFileSync(out, patchShim(readFileSync(compiled), await pluginScript()), { mode: 0o755 });
    return out;
  })();
  return shim;
}

export interface ProcessOutcome {
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** True when the process was killed at the deadline (a hang). */
  readonly timedOut: boolean;
}

/**
 * Runs `file args` (argv, no shell) with exactly `env` (through `env -i`, so nothing of the test's own environment
 * leaks in) and `stdin`, through the ProcessRunner port; stops it after `timeoutMs` (SIGTERM, then SIGKILL).
 */
export async function runProcess(file: string, args: readonly string[], env: Record<string, string>, stdin: string, timeoutMs: number): Promise<ProcessOutcome> {
  const started = performance.now();
  const r = await new SpawnRunner().run("env", ["-i", ...Object.entries(env).map(([k, v]) => `${k}=${v}`), file, ...args], { input: stdin, timeoutMs, reject: false });
  const timedOut = performance.now() - started >= timeoutMs;
  return { exitCode: timedOut ? null : r.exitCode, stdout: r.stdout, stderr: r.stderr, timedOut };
}

/** Runs the bundled Node plugin as the runtime would (CNI_* in the environment, the config on stdin). */
export async function runPluginProcess(env: Record<string, string>, stdin: string, timeoutMs = 20_000): Promise<ProcessOutcome> {
  return runProcess(process.execPath, [await pluginScript()], env, stdin, timeoutMs);
}
