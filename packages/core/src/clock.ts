/**
 * Time, injected, and the one retry backoff of the codebase. Loops that wait (lease renewal, store retries,
 * watch reconnects, a managed daemon's restart) read time and sleep through a {@link Clock}, so unit tests drive
 * them with a fake one (`FakeClock` in @weft/kernel-testing) instead of waiting out real delays. Timers only:
 * no I/O here.
 */

/** What code that waits needs from time. {@link systemClock} in production; a fake clock in tests. */
export interface Clock {
  /** Milliseconds since the epoch (a fake clock: milliseconds on that clock). */
  now(): number;
  /**
   * Resolves after `ms` milliseconds of this clock; rejects with the signal's reason (see {@link abortReason})
   * as soon as `signal` aborts, so a loop that sleeps stops at once on shutdown.
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The reason an aborted `signal` carries, or a DOMException "AbortError" when it carries none. */
export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("This operation was aborted", "AbortError");
}

/** The wall clock when this process's monotonic clock (performance.now) started. */
const EPOCH_AT_ORIGIN = Date.now() - performance.now();

/**
 * The real clock: setTimeout, and a now() that reads as epoch milliseconds but moves only with elapsed
 * (monotonic) time, so a step of the wall clock (NTP at boot, `date -s`) cannot make a deadline, a backoff or a
 * lease renewal fire early or hours late.
 */
export const systemClock: Clock = {
  now: () => EPOCH_AT_ORIGIN + performance.now(),
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortReason(signal));
        return;
      }
      const onAbort = () => {
        clearTimeout(timer);
        reject(abortReason(signal!));
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, Math.max(0, ms));
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  },
};

/** How a {@link Backoff} grows. */
export interface BackoffOptions {
  /** The first delay, and the one after reset() (default 100 ms). */
  readonly minMs?: number;
  /** The cap (default 5 s). */
  readonly maxMs?: number;
  /**
   * Spread of each delay as a fraction: 0.2 (the default) waits between 0.8 and 1.2 times the step, so many
   * agents that failed together do not retry together; 0 waits exactly the step.
   */
  readonly jitter?: number;
  /** Source of randomness in [0, 1) for the jitter (default Math.random; tests pass a fixed one). */
  readonly random?: () => number;
}

/**
 * Exponential backoff: min doubling up to max, each delay jittered (by default 100 ms to 5 s, ±20 %, Flannel's
 * watch reconnect). Call next() before each retry and reset() once the operation works again.
 */
export class Backoff {
  private readonly minMs: number;
  private readonly maxMs: number;
  private readonly jitter: number;
  private readonly random: () => number;
  private current: number;

  constructor(options: BackoffOptions = {}) {
    this.minMs = options.minMs ?? 100;
    this.maxMs = options.maxMs ?? 5_000;
    this.jitter = options.jitter ?? 0.2;
    this.random = options.random ?? Math.random;
    if (!(this.minMs > 0) || !(this.maxMs >= this.minMs)) {
      throw new RangeError(`Backoff: minMs ${this.minMs} and maxMs ${this.maxMs} must satisfy 0 < minMs <= maxMs`);
    }
    if (!(this.jitter >= 0 && this.jitter < 1)) throw new RangeError(`Backoff: jitter ${this.jitter} must be in [0, 1), e.g. 0.2`);
    this.current = this.minMs;
  }

  /** The delay to wait now; the following call returns about twice as much, capped at max. */
  next(): number {
    const base = this.current;
    this.current = Math.min(this.maxMs, this.current * 2);
    const spread = this.jitter === 0 ? 1 : 1 - this.jitter + 2 * this.jitter * this.random();
    return Math.min(this.maxMs, Math.round(base * spread));
  }

  /** The step next() would use, without jitter and without advancing (e.g. to pause before a quick reconnect). */
  peek(): number {
    return this.current;
  }

  /** Back to the first delay: call it once the operation works again. */
  reset(): void {
    this.current = this.minMs;
  }
}
