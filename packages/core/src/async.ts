/** Resolves after `ms`, or at once when `signal` aborts (never rejects). The one abortable sleep of the codebase. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Runs tasks one after another, in the order they were queued: one task's failure does not stop the next.
 * For work that must not overlap with itself (a reconcile pass planned against a state another is changing, a
 * netfilter restore racing a removal, a read-modify-write of a record file).
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `task` once every task queued before it has settled; settles as `task` does. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const next = this.tail.then(task, task);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
