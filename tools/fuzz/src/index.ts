/**
 * The fuzz kit: one place that decides how many cases a property runs, from which seed, and how a hang is
 * detected, so every parser's property-based test (issue 15) runs the same way in the unit tier and in the long
 * `npm run bench -- fuzz` run.
 *
 * - `WEFT_FUZZ_RUNS` sets the cases per property (default 10,000; the bench command sets 1,000,000).
 * - `WEFT_FUZZ_SEED` overrides the seed; by default each property has a fixed seed derived from its name, so a
 *   failure reproduces on every run and every machine (fast-check prints the seed and path to replay it).
 * - `WEFT_FUZZ_REPORT` names a file that receives one JSON line per property (name, runs, seed, ms, slowest case):
 *   the bench command sums them into docs/benchmarks.md.
 *
 * @packageDocumentation
 */
import { appendFileSync } from "node:fs";
import fc from "fast-check";

export { fc };

/** Cases per property: `WEFT_FUZZ_RUNS`, else 10,000 (the floor for the unit tier). */
export function fuzzRuns(): number {
  const raw = process.env.WEFT_FUZZ_RUNS;
  if (raw === undefined || raw === "") return 10_000;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`WEFT_FUZZ_RUNS=${JSON.stringify(raw)} is not a positive integer; unset it or give a count such as 10000`);
  return n;
}

/** A fixed 31-bit seed from a property's name (FNV-1a), unless `WEFT_FUZZ_SEED` overrides it. */
export function fuzzSeed(name: string): number {
  const raw = process.env.WEFT_FUZZ_SEED;
  if (raw !== undefined && raw !== "") return Number(raw) | 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h & 0x7fffffff;
}

/**
 * A case slower than this is a hang (a super-linear parser, an unbounded loop): the property fails and
 * fast-check shrinks to the smallest input that is still this slow. Generous on purpose: it detects hangs, it
 * does not measure speed (that is tools/bench's job).
 */
export const HANG_MS = 2_000;

export interface FuzzOptions {
  /** Cases to run; default {@link fuzzRuns}. A property that is costly per case may ask for fewer only with a reason. */
  readonly numRuns?: number;
  /** Hang threshold per case; default {@link HANG_MS}. */
  readonly hangMs?: number;
}

/**
 * Runs a synchronous property over `arb` with the kit's runs, seed and hang detection. `check` returns nothing
 * and throws (an `expect` failure) when the property does not hold.
 */
export function fuzz<T>(name: string, arb: fc.Arbitrary<T>, check: (value: T) => void, options: FuzzOptions = {}): void {
  const numRuns = options.numRuns ?? fuzzRuns();
  const hangMs = options.hangMs ?? HANG_MS;
  const seed = fuzzSeed(name);
  let slowest = 0;
  const started = performance.now();
  fc.assert(
    fc.property(arb, (value) => {
      const t0 = performance.now();
      check(value);
      const ms = performance.now() - t0;
      if (ms > slowest) slowest = ms;
      if (ms > hangMs) throw new Error(`one case took ${ms.toFixed(0)} ms (over the ${hangMs} ms hang threshold)`);
    }),
    { numRuns, seed, endOnFailure: false, includeErrorInReport: true },
  );
  report(name, numRuns, seed, performance.now() - started, slowest);
}

/** The asynchronous form of {@link fuzz}, for parsers behind a promise (a CNI request, a store read). */
export async function fuzzAsync<T>(name: string, arb: fc.Arbitrary<T>, check: (value: T) => Promise<void>, options: FuzzOptions = {}): Promise<void> {
  const numRuns = options.numRuns ?? fuzzRuns();
  const hangMs = options.hangMs ?? HANG_MS;
  const seed = fuzzSeed(name);
  let slowest = 0;
  const started = performance.now();
  await fc.assert(
    fc.asyncProperty(arb, async (value) => {
      const t0 = performance.now();
      let timer: NodeJS.Timeout | undefined;
      const hang = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`one case did not finish within the ${hangMs} ms hang threshold`)), hangMs);
      });
      try {
        await Promise.race([check(value), hang]);
      } finally {
        clearTimeout(timer);
      }
      const ms = performance.now() - t0;
      if (ms > slowest) slowest = ms;
    }),
    { numRuns, seed, endOnFailure: false, includeErrorInReport: true },
  );
  report(name, numRuns, seed, performance.now() - started, slowest);
}

function report(name: string, runs: number, seed: number, ms: number, slowestMs: number): void {
  const file = process.env.WEFT_FUZZ_REPORT;
  if (!file) return;
  appendFileSync(file, JSON.stringify({ name, runs, seed, ms: Math.round(ms), slowestMs: Math.round(slowestMs * 10) / 10 }) + "\n");
}

/**
 * Hostile strings: what an attacker or a broken tool puts in a field: control characters and terminal escapes,
 * NUL, newlines, non-ASCII, very long runs, and the prototype keys JavaScript objects trip over.
 */
export function hostileString(maxLength = 64): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.string({ maxLength, unit: "binary" }) },
    { weight: 2, arbitrary: fc.string({ maxLength }) },
    { weight: 1, arbitrary: fc.constantFrom("__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "", " ", "\u0000", "\n", "\u001b[31m", "\u001b]0;x\u0007", "$(id)", "`id`", "../..", "-x", "é", "\uFEFF", "\uD800") },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 5 }).map((k) => "A".repeat(k * 20_000)) },
  );
}

/** JSON values including deep nesting (to 6,000 levels: past a naive recursive walk's stack) and odd numbers. */
export function hostileJson(): fc.Arbitrary<unknown> {
  const deep = fc.tuple(fc.integer({ min: 1, max: 6_000 }), fc.constantFrom("array", "object")).map(([depth, kind]) => {
    let v: unknown = 1;
    for (let i = 0; i < depth; i++) v = kind === "array" ? [v] : { a: v };
    return v;
  });
  return fc.oneof(
    { weight: 6, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
    { weight: 1, arbitrary: deep },
    { weight: 1, arbitrary: fc.constantFrom(null, -0, 1e308, Number.MAX_SAFE_INTEGER + 2, 0.1, -1, 65536, 4294967296) },
  );
}

/**
 * JSON *text* (not a value): what arrives on the wire, including what JSON.parse turns into surprises: 1e400
 * (Infinity), duplicate keys differing in case, deeply nested brackets, trailing garbage, a BOM, and truncation.
 */
export function hostileJsonText(keys: readonly string[] = []): fc.Arbitrary<string> {
  const key = keys.length > 0 ? fc.oneof(fc.constantFrom(...keys), fc.constantFrom(...keys).map(caseVariant), fc.string({ maxLength: 8 })) : fc.string({ maxLength: 8 });
  const scalarText = fc.oneof(
    fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
    fc.constantFrom("1e400", "-1e400", "1e-400", "0x10", "NaN", "Infinity", "true", "null", '"\\u0000"', '"\\ud800"', "01", "-0", "1.0"),
  );
  const object = fc.array(fc.tuple(key, scalarText), { maxLength: 8 }).map((entries) => "{" + entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",") + "}");
  const nested = fc.tuple(fc.integer({ min: 1, max: 8_000 }), fc.constantFrom("[", "{\"a\":")).map(([depth, open]) => open.repeat(depth) + "1" + (open === "[" ? "]" : "}").repeat(depth));
  return fc.oneof(
    { weight: 6, arbitrary: object },
    { weight: 1, arbitrary: nested },
    { weight: 1, arbitrary: fc.tuple(object, fc.string({ maxLength: 4 })).map(([o, g]) => o + g) },
    { weight: 1, arbitrary: fc.tuple(object, fc.nat()).map(([o, n]) => o.slice(0, n % (o.length + 1))) },
    { weight: 1, arbitrary: object.map((o) => "\uFEFF" + o) },
  );
}

function caseVariant(key: string): string {
  return key === key.toLowerCase() ? key.toUpperCase() : key.toLowerCase();
}
