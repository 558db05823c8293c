/**
 * IpCoprocessRunner: a ProcessRunner that answers `ip -force -batch -` runs from one long-lived `ip -force
 * -batch -` process instead of starting one per batch (DESIGN §4: a warm coprocess answers a line in ~0.15 ms;
 * starting `ip` costs milliseconds). Everything else goes to the runner it wraps. Used by weftd's CNI server for
 * the node side of each pod ADD/DEL (docs/adr/0006-cni-latency.md), under LinuxKernel, which does not know.
 *
 * A batch run here gives the same RunResult a fresh process gives, so BatchExecutor (./linux/batch.ts) reads it
 * unchanged:
 * - after the batch's lines, an end marker line (an unknown object) is written; its `Command failed -:<n>`
 *   on stderr says the batch is done. The marker's own two lines are dropped from the result;
 * - iproute2 numbers lines from the start of the process, so every `Command failed -:<n>` is renumbered from
 *   the start of the batch;
 * - when a line ends the process (iproute2 exits on some failures; see batch.ts), the result is what it printed
 *   and its exit code, as for a fresh process, and the next batch starts a new coprocess;
 * - a batch that does not finish within its timeout kills the coprocess and fails as a timed-out run would.
 * Batches are serialised (one coprocess); each takes well under a millisecond of the coprocess's time.
 * Runs with `env` or `cwd`, or for another namespace than the coprocess's (`ip -n X`), go to the wrapped runner:
 * one coprocess per runner, in the caller's namespace or in the named one (`netns`), never one per pod.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { type RunOutcome, settleRun } from "./process-errors.js";
import type { ChildHandle, ProcessRunner, RunOptions, RunResult, SpawnOptions } from "./process.js";

const END = "weft-coprocess-end";
const COMMAND_FAILED = /^Command failed (.*):(\d+)\s*$/;
const BATCH_ARGS = ["-force", "-batch", "-"];

interface Coprocess {
  readonly child: ChildProcess;
  /** Lines written so far (iproute2's line numbers continue across batches). */
  lines: number;
  exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Called on every stderr chunk and on exit, for the batch in progress. */
  onEvent: (() => void) | undefined;
  stderr: string;
  stdout: string;
}

/**
 * A ProcessRunner that serves `ip [-n <netns>] -force -batch -` runs from one warm coprocess and hands every other
 * run to `base` (see the top of this file). Give it to LinuxKernel as its runner.
 */
export class IpCoprocessRunner implements ProcessRunner {
  private proc: Coprocess | undefined;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly base: ProcessRunner,
    private readonly opts: {
      readonly defaultTimeoutMs?: number;
      /** A /run/netns name: the coprocess is `ip -n <netns> -force -batch -` and serves LinuxKernel({ netns }). */
      readonly netns?: string;
    } = {},
  ) {
    this.args = opts.netns === undefined ? BATCH_ARGS : ["-n", opts.netns, ...BATCH_ARGS];
  }

  private readonly args: readonly string[];

  /** The coprocess's PID while one runs (tests: one process serves many batches). */
  get pid(): number | undefined {
    return this.proc?.child.pid;
  }

  run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const batch = file === "ip" && args.length === this.args.length && args.every((a, i) => a === this.args[i]);
    if (!batch || options.input === undefined || options.env || options.cwd) return this.base.run(file, args, options);
    const input = options.input;
    const result = this.tail.then(() => this.runBatch(input, options));
    this.tail = result.catch(() => undefined);
    return result;
  }

  spawn(file: string, args: readonly string[], options?: SpawnOptions): ChildHandle {
    return this.base.spawn(file, args, options);
  }

  /** Ends the coprocess (its stdin closes; it exits). A later batch starts a new one. */
  close(): void {
    const p = this.proc;
    this.proc = undefined;
    if (p && !p.exited) p.child.stdin?.end();
  }

  private start(): Coprocess {
    const child = spawn("ip", this.args, { stdio: ["pipe", "pipe", "pipe"] });
    const p: Coprocess = { child, lines: 0, exited: undefined, onEvent: undefined, stderr: "", stdout: "" };
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      p.stdout += d;
    });
    child.stderr!.setEncoding("utf8").on("data", (d: string) => {
      p.stderr += d;
      p.onEvent?.();
    });
    child.stdin!.on("error", () => undefined); // EPIPE after it exited: seen through 'close'
    const ended = (code: number | null, signal: NodeJS.Signals | null, error?: NodeJS.ErrnoException) => {
      if (p.exited) return;
      p.exited = { code, signal };
      if (error) (p as { spawnError?: NodeJS.ErrnoException }).spawnError = error;
      if (this.proc === p) this.proc = undefined;
      p.onEvent?.();
    };
    child.on("error", (err: NodeJS.ErrnoException) => ended(null, null, err));
    child.on("close", (code, signal) => ended(code, signal));
    // weftd's exit must not wait for it.
    child.unref();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    (child.stderr as unknown as { unref?: () => void }).unref?.();
    return p;
  }

  private runBatch(input: string, options: RunOptions): Promise<RunResult> {
    const p = (this.proc ??= this.start());
    const text = input.endsWith("\n") ? input : `${input}\n`;
    const count = text.split("\n").length - 1;
    const offset = p.lines;
    const endLine = offset + count + 1;
    p.lines = endLine;
    const timeoutMs = options.timeoutMs ?? this.opts.defaultTimeoutMs ?? 60_000;
    return new Promise<RunResult>((resolve, reject) => {
      let settled = false;
      const finish = (outcome: RunOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        p.onEvent = undefined;
        // What the coprocess printed before this batch (a start-up failure) belongs to it, as to a fresh process's.
        p.stderr = "";
        p.stdout = "";
        try {
          resolve(settleRun("ip", this.args, outcome, options));
        } catch (err) {
          reject(err);
        }
      };
      const timer = setTimeout(() => {
        if (this.proc === p) this.proc = undefined;
        p.child.kill("SIGKILL");
        finish({ timedOut: true, stdout: p.stdout, stderr: renumber(p.stderr, offset, endLine).text });
      }, timeoutMs);
      p.onEvent = () => {
        const r = renumber(p.stderr, offset, endLine);
        if (r.done) {
          // A batch with a failed line makes a fresh `ip -force -batch` exit 1, and every weft batch ends with a
          // failing sentinel: report what a fresh process would.
          finish({ exitCode: r.failed ? 1 : 0, timedOut: false, stdout: p.stdout, stderr: r.text });
        } else if (p.exited) {
          const spawnError = (p as { spawnError?: NodeJS.ErrnoException }).spawnError;
          finish({
            ...(spawnError?.code ? { spawnErrorCode: spawnError.code, spawnErrorMessage: spawnError.message } : {}),
            ...(p.exited.code !== null ? { exitCode: p.exited.code } : {}),
            ...(p.exited.signal ? { signal: p.exited.signal } : {}),
            timedOut: false,
            stdout: p.stdout,
            stderr: r.text,
          });
        }
      };
      if (p.exited) {
        p.onEvent();
        return;
      }
      p.child.stdin!.write(`${text}${END}\n`);
    });
  }
}

/**
 * The stderr of one batch as a fresh process would print it: line numbers from the batch's start, the end
 * marker's lines removed. `done` once the marker's `Command failed` line has been seen.
 */
export function renumber(stderr: string, offset: number, endLine: number): { text: string; done: boolean; failed: boolean } {
  const out: string[] = [];
  let pending: string[] = [];
  let done = false;
  let failed = false;
  const lines = stderr.split("\n");
  const complete = stderr.endsWith("\n") ? lines.length - 1 : lines.length - 1; // the last piece is partial or ""
  for (let i = 0; i < complete; i++) {
    const line = lines[i]!;
    const m = COMMAND_FAILED.exec(line);
    if (!m) {
      pending.push(line);
      continue;
    }
    const n = Number(m[2]);
    if (n === endLine) {
      done = true;
      pending = []; // the marker's "Object ... is unknown" text
      break;
    }
    failed = true;
    out.push(...pending, `Command failed ${m[1]}:${n - offset}`);
    pending = [];
  }
  out.push(...pending);
  const text = out.length ? `${out.join("\n")}\n` : "";
  return { text, done, failed };
}

