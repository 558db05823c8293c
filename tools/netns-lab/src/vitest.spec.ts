import { describe, expect, it } from "vitest";
import { isCI } from "./vitest.js";

describe("isCI (real tiers fail instead of skipping when it is true)", () => {
  it("is on for any value but unset, empty, 0 and false", () => {
    for (const v of ["true", "1", "yes", "TRUE", "woodpecker"]) expect(isCI({ CI: v }), v).toBe(true);
    for (const v of [undefined, "", "0", "false", " False "]) expect(isCI({ CI: v }), String(v)).toBe(false);
  });
});
