/**
 * FakeProcessRunner: a ProcessRunner with scripted answers keyed by program name, for code that runs tools
 * (wg, nft, swanctl, ...) through the port. It records nothing: tests assert on what the code did with the
 * answers, never on the calls it made. A program with no script behaves like a missing one (PROCESS_MISSING),
 * a non-zero exit with `reject` unset throws PROCESS_FAILED, as ExecaRunner does.
 */
import { WeftError } from "@weft/core";
import type { ChildHandle, ProcessRunner, RunOptions, RunResult, SpawnOptions } from "@weft/kernel";

/** A fixed result, or a function of the arguments (and stdin) that computes one. */
export type ScriptedRun =
  | Partial<RunResult>
  | ((args: readonly string[], options: RunOptions) => Partial<RunResult> | Promise<Partial<RunResult>>);

/** Decides how a spawned program ends: `undefined` keeps it running until killed. */
export type ScriptedSpawn = (args: readonly string[], options: SpawnOptions) => { exitCode: number } | undefined;

export class FakeProcessRunner implements ProcessRunner {
  private readonly runs = new Map<string, ScriptedRun>();
  private readonly spawns = new Map<string, ScriptedSpawn>();
  private nextPid = 40_000;

  constructor(script: Readonly<Record<string, ScriptedRun>> = {}) {
    for (const [file, s] of Object.entries(script)) this.runs.set(file, s);
  }

  /** Scripts `run(file, ...)`; replaces an earlier script for the same program. */
  on(file: string, answer: ScriptedRun): this {
    this.runs.set(file, answer);
    return this;
  }

  /** Scripts `spawn(file, ...)`; by default a spawned program runs until killed. */
  onSpawn(file: string, answer: ScriptedSpawn = () => undefined): this {
    this.spawns.set(file, answer);
    return this;
  }

  async run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const script = this.runs.get(file);
    if (!script) throw new WeftError("PROCESS_MISSING", `program "${file}" not found on PATH (FakeProcessRunner has no script for it; add one with .on("${file}", ...))`);
    const partial = typeof script === "function" ? await script(args, options) : script;
    const result: RunResult = { exitCode: partial.exitCode ?? 0, stdout: partial.stdout ?? "", stderr: partial.stderr ?? "" };
    if (result.exitCode !== 0 && options.reject !== false) {
      const first = result.stderr.split("\n").find((l) => l.trim()) ?? "";
      throw new WeftError("PROCESS_FAILED", `${[file, ...args].join(" ")}: exit code ${result.exitCode}${first ? `: ${first.trim()}` : ""}`);
    }
    return result;
  }

  spawn(file: string, args: readonly string[], options: SpawnOptions = {}): ChildHandle {
    const script = this.spawns.get(file);
    if (!script) throw new WeftError("PROCESS_MISSING", `program "${file}" not found on PATH (FakeProcessRunner has no spawn script for it; add one with .onSpawn("${file}"))`);
    const pid = this.nextPid++;
    let finish!: (r: { code: number | null; signal: string | null }) => void;
    let done = false;
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
      finish = (r) => {
        if (done) return;
        done = true;
        resolve(r);
      };
    });
    const ending = script(args, options);
    if (ending) queueMicrotask(() => finish({ code: ending.exitCode, signal: null }));
    return {
      pid,
      exited,
      kill: (signal: NodeJS.Signals = "SIGTERM") => finish({ code: null, signal }),
    };
  }
}
