/**
 * A disposable stack for multi-step setup (STYLE 7): every step that changed something registers its undo;
 * on failure the undos run in reverse order. An undo that fails does not stop the others; its error is kept
 * so the caller can mention it next to the original failure.
 */
export class Rollback {
  private readonly undos: Array<{ what: string; fn: () => Promise<unknown> | unknown }> = [];

  /** Registers the undo of a step that just succeeded. */
  defer(what: string, fn: () => Promise<unknown> | unknown): void {
    this.undos.push({ what, fn });
  }

  /** Forgets every undo: the whole operation succeeded. */
  commit(): void {
    this.undos.length = 0;
  }

  /** Runs the undos newest first; returns one line per undo that failed. */
  async unwind(): Promise<string[]> {
    const problems: string[] = [];
    while (this.undos.length > 0) {
      const u = this.undos.pop()!;
      try {
        await u.fn();
      } catch (err) {
        problems.push(`${u.what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    return problems;
  }
}
