/**
 * Time, injected. The renewal loop, the retry loops and the watch resume all read time and sleep through a
 * Clock, so unit tests drive them with a fake one instead of waiting out real TTLs.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms`; rejects with the signal's reason as soon as `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("This operation was aborted", "AbortError");
}

export const systemClock: Clock = {
  now: () => Date.now(),
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

/** Exponential backoff with ±20 % jitter, e.g. 100 ms doubling up to 5 s (Flannel's watch reconnect). */
export class Backoff {
  private current: number;
  constructor(
    private readonly minMs = 100,
    private readonly maxMs = 5_000,
    private readonly random: () => number = Math.random,
  ) {
    this.current = minMs;
  }

  /** The delay to wait now; the following call returns about twice as much, capped at max. */
  next(): number {
    const base = this.current;
    this.current = Math.min(this.maxMs, this.current * 2);
    const jitter = 0.8 + 0.4 * this.random();
    return Math.min(this.maxMs, Math.round(base * jitter));
  }

  reset(): void {
    this.current = this.minMs;
  }
}
