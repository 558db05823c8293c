/**
 * A process-wide registry of teardown functions, so namespaces, bridges and daemons created by tests do not
 * outlive an interrupted run. Each registered cleanup runs at most once: explicitly (its owner's destroy),
 * through runCleanups(), on SIGINT/SIGTERM, or, as a last resort, synchronously on process 'exit'.
 *
 * Signal handlers are installed only while something is registered: an empty registry leaves Node's default
 * signal behaviour untouched.
 */

export type CleanupFn = () => Promise<void> | void;

interface Entry {
  readonly run: CleanupFn;
  /** Synchronous fallback for the 'exit' event, where promises never settle. */
  readonly sync: (() => void) | undefined;
}

const entries = new Set<Entry>();
let running: Promise<void> | undefined;
let installed = false;

const SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM"];

function onSignal(signal: NodeJS.Signals): void {
  void runCleanups().finally(() => {
    uninstall();
    // Our listener suppressed the default action. If nobody else handles the signal, re-raise it so the
    // process ends the way it was asked to (exit status 128 + signo).
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  });
}

function onExit(): void {
  for (const e of [...entries].reverse()) {
    entries.delete(e);
    try {
      e.sync?.();
    } catch {
      // nothing useful can be done while exiting
    }
  }
}

function install(): void {
  if (installed) return;
  installed = true;
  for (const s of SIGNALS) process.on(s, onSignal);
  process.on("exit", onExit);
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  for (const s of SIGNALS) process.off(s, onSignal);
  process.off("exit", onExit);
}

/**
 * Registers `fn` for teardown; returns a function that unregisters it (call it once the object has been
 * destroyed normally). `sync`, if given, is used instead of `fn` when the process exits without having run
 * the asynchronous cleanups.
 */
export function registerCleanup(fn: CleanupFn, sync?: () => void): () => void {
  const entry: Entry = { run: fn, sync };
  entries.add(entry);
  install();
  return () => {
    entries.delete(entry);
    if (entries.size === 0 && running === undefined) uninstall();
  };
}

/** Runs every registered cleanup once, newest first, and empties the registry. Errors are collected and rethrown. */
export function runCleanups(): Promise<void> {
  if (running) return running;
  const drain = async (): Promise<void> => {
    await Promise.resolve(); // let `running` be assigned before any cleanup runs
    const errors: unknown[] = [];
    try {
      while (entries.size > 0) {
        for (const e of [...entries].reverse()) {
          if (!entries.delete(e)) continue;
          try {
            await e.run();
          } catch (err) {
            errors.push(err);
          }
        }
      }
    } finally {
      running = undefined;
      if (entries.size === 0) uninstall();
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanups failed`);
  };
  running = drain();
  return running;
}

/** Number of pending cleanups (for tests and diagnostics). */
export function pendingCleanups(): number {
  return entries.size;
}
