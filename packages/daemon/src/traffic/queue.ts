/**
 * Runs calls one after another: an ensure overlapping a cleanup (a resync timer firing during shutdown)
 * would otherwise plan against a state the other is changing.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const next = this.tail.then(task, task);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
