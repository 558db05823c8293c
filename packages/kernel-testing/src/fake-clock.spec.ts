import { type Clock, systemClock } from "@weft/core";
import { describe, expect, it } from "vitest";
import { FakeClock } from "./fake-clock.js";

describe("FakeClock as core's Clock", () => {
  it("is interchangeable with systemClock where code takes a Clock", () => {
    const clocks: Clock[] = [new FakeClock(5), systemClock];
    expect(clocks[0]!.now()).toBe(5);
  });

  it("rejects an aborted sleep with the signal's reason and forgets it; other sleeps still resolve", async () => {
    const clock = new FakeClock();
    const ac = new AbortController();
    const aborted = clock.sleep(1_000, ac.signal);
    let woke = false;
    void clock.sleep(500).then(() => (woke = true));
    expect(clock.pending).toBe(2);
    ac.abort(new Error("agent stopping"));
    await expect(aborted).rejects.toThrow("agent stopping");
    expect(clock.pending).toBe(1);
    await clock.advance(2_000);
    expect(woke).toBe(true);
    expect(clock.pending).toBe(0);
    const already = new AbortController();
    already.abort();
    await expect(clock.sleep(10, already.signal)).rejects.toMatchObject({ name: "AbortError" });
  });

  it("a sleep with a signal that never aborts resolves at its deadline", async () => {
    const clock = new FakeClock(100);
    const ac = new AbortController();
    let at = -1;
    void clock.sleep(50, ac.signal).then(() => (at = clock.now()));
    await clock.advance(49);
    expect(at).toBe(-1);
    await clock.advance(1);
    expect(at).toBe(150);
  });
});
