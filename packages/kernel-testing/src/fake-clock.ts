/**
 * FakeClock: time that moves only when a test says so. Code under test takes a Clock (now + sleep) instead of
 * Date.now/setTimeout; tests call `advance(ms)` and every sleep whose deadline falls inside the window
 * resolves, in deadline order, with the clock reading that deadline. Continuations that sleep again inside
 * the window are honoured (a loop that sleeps 100 ms runs ten times on advance(1000)). A sleep given an
 * AbortSignal rejects with the signal's reason when it aborts, as systemClock's does.
 */

import { type Clock, abortReason } from "@weft/core";

/** Core's Clock, re-exported here for code that already imports it from the kit. */
export type { Clock };

interface Sleeper {
  readonly at: number;
  readonly seq: number;
  readonly resolve: () => void;
}

/** Lets every already-resolved promise chain run (setImmediate fires after the microtask queue drains). */
const settle = () => new Promise<void>((r) => setImmediate(r));

export class FakeClock implements Clock {
  private current: number;
  private sleepers: Sleeper[] = [];
  private seq = 0;

  constructor(startMs = 0) {
    this.current = startMs;
  }

  now(): number {
    return this.current;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (!(ms > 0)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.sleepers = this.sleepers.filter((s) => s !== sleeper);
        reject(abortReason(signal!));
      };
      const sleeper: Sleeper = {
        at: this.current + ms,
        seq: this.seq++,
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      this.sleepers.push(sleeper);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Number of sleeps not yet resolved (to check that code under test is waiting). */
  get pending(): number {
    return this.sleepers.length;
  }

  /** Moves the clock forward by `ms`, resolving due sleeps in order and letting their continuations run. */
  async advance(ms: number): Promise<void> {
    if (ms < 0) throw new RangeError(`FakeClock.advance: ms ${ms} is negative; time only moves forward`);
    const target = this.current + ms;
    await settle();
    for (;;) {
      let next: Sleeper | undefined;
      for (const s of this.sleepers) if (s.at <= target && (!next || s.at < next.at || (s.at === next.at && s.seq < next.seq))) next = s;
      if (!next) break;
      this.sleepers = this.sleepers.filter((s) => s !== next);
      this.current = next.at;
      next.resolve();
      await settle();
    }
    this.current = target;
    await settle();
  }
}
