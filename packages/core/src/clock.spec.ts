import { describe, expect, it } from "vitest";
import { Backoff, abortReason, systemClock } from "./clock.js";

describe("Backoff", () => {
  it("doubles from min to max with ±20 % jitter by default, and starts over on reset", () => {
    const low = new Backoff({ random: () => 0 });
    expect([low.next(), low.next(), low.next()]).toEqual([80, 160, 320]);
    const high = new Backoff({ random: () => 0.999999 });
    expect([high.next(), high.next()]).toEqual([120, 240]);
    const b = new Backoff({ minMs: 100, maxMs: 5_000, random: () => 0.5 });
    const seen = Array.from({ length: 8 }, () => b.next());
    expect(seen).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    b.reset();
    expect(b.next()).toBe(100);
  });

  it("waits exactly the step without jitter; peek shows it without advancing", () => {
    const b = new Backoff({ minMs: 250, maxMs: 1_000, jitter: 0 });
    expect(b.peek()).toBe(250);
    expect(b.peek()).toBe(250);
    expect([b.next(), b.next(), b.next(), b.next()]).toEqual([250, 500, 1000, 1000]);
    expect(b.peek()).toBe(1000);
  });

  it("never exceeds max, even with the jitter at its top", () => {
    const b = new Backoff({ minMs: 4_000, maxMs: 5_000, random: () => 0.999999 });
    expect([b.next(), b.next()]).toEqual([4800, 5000]);
  });

  it("rejects a nonsensical range or jitter with a line naming the value", () => {
    expect(() => new Backoff({ minMs: 0 })).toThrow(/minMs 0 and maxMs 5000/);
    expect(() => new Backoff({ minMs: 10, maxMs: 5 })).toThrow(/minMs 10 and maxMs 5/);
    expect(() => new Backoff({ jitter: 1 })).toThrow(/jitter 1 must be in \[0, 1\)/);
  });
});

describe("systemClock", () => {
  it("sleeps, and rejects with the signal's reason at once when aborted", async () => {
    const t0 = systemClock.now();
    await systemClock.sleep(20);
    expect(systemClock.now() - t0).toBeGreaterThanOrEqual(15);

    const ac = new AbortController();
    const pending = systemClock.sleep(60_000, ac.signal);
    ac.abort(new Error("shutting down"));
    await expect(pending).rejects.toThrow("shutting down");

    const done = new AbortController();
    done.abort();
    await expect(systemClock.sleep(1, done.signal)).rejects.toMatchObject({ name: "AbortError" });
    expect(abortReason(done.signal)).toMatchObject({ name: "AbortError" });
  });
});
