import { describe, expect, it } from "vitest";
import { fc, fuzz, fuzzSeed, hostileJson, hostileJsonText } from "./index.js";

describe("fuzz kit", () => {
  it("gives each property a fixed seed from its name", () => {
    expect(fuzzSeed("a")).toBe(fuzzSeed("a"));
    expect(fuzzSeed("a")).not.toBe(fuzzSeed("b"));
  });

  it("fails a property that does not hold, and names the counterexample", () => {
    expect(() => fuzz("kit: ints below 10", fc.integer({ min: 0, max: 100 }), (n) => expect(n).toBeLessThan(10), { numRuns: 200 })).toThrow(/Counterexample/);
  });

  it("fails a case slower than the hang threshold", () => {
    expect(() =>
      fuzz("kit: slow", fc.constant(1), () => {
        const until = performance.now() + 30;
        while (performance.now() < until);
      }, { numRuns: 2, hangMs: 10 }),
    ).toThrow(/hang threshold/);
  });

  it("generates deep nesting and JSON text that JSON.parse rejects or turns into surprises", () => {
    const values = fc.sample(hostileJson(), { numRuns: 2_000, seed: 7 });
    const depth = (v: unknown): number => { let d = 0; while (Array.isArray(v) || (typeof v === "object" && v !== null && "a" in v)) { v = Array.isArray(v) ? v[0] : (v as { a: unknown }).a; d++; } return d; };
    expect(Math.max(...values.map(depth))).toBeGreaterThan(5_000);
    const texts = fc.sample(hostileJsonText(["Network"]), { numRuns: 2_000, seed: 7 });
    expect(texts.some((t) => { try { JSON.parse(t); return false; } catch { return true; } })).toBe(true);
    expect(texts.some((t) => t.includes("NETWORK") || t.includes("network"))).toBe(true);
  });
});
