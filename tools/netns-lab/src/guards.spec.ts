import { describe, expect, it } from "vitest";
import { MAX_IFNAME, onPath, realKernelStatus, uniqueName } from "./guards.js";

describe("uniqueName", () => {
  it("keeps the prefix and fits an interface name", () => {
    for (const prefix of ["wt", "wn", "weftlab", "a"]) {
      const n = uniqueName(prefix);
      expect(n.startsWith(prefix)).toBe(true);
      expect(n.length).toBeLessThanOrEqual(MAX_IFNAME);
      expect(n).toMatch(/^[a-z0-9-]+$/);
    }
  });

  it("uses len characters after the prefix, clamped to 15 in total", () => {
    expect(uniqueName("wt", 6)).toHaveLength(8);
    expect(uniqueName("wt")).toHaveLength(10);
    expect(uniqueName("abcdefghij", 12)).toHaveLength(15);
  });

  it("never repeats within a process", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) seen.add(uniqueName("wt", 6));
    expect(seen.size).toBe(5000);
  });

  it("rejects prefixes that leave too little room or are not name-safe", () => {
    expect(() => uniqueName("abcdefghijklm")).toThrow(/shorter prefix/);
    expect(() => uniqueName("Wt")).toThrow(/lower-case/);
    expect(() => uniqueName("w t")).toThrow(/lower-case/);
  });
});

describe("realKernelStatus", () => {
  it("names a missing tool in the reason", () => {
    const s = realKernelStatus(["weft-no-such-tool-xyz"]);
    expect(s.ok).toBe(false);
    if (!s.ok) expect(s.reason).toContain("weft-no-such-tool-xyz");
  });

  it("finds programs on PATH and only executable files", () => {
    expect(onPath("sh")).toBe(true);
    expect(onPath("/bin/sh")).toBe(true);
    expect(onPath("/etc/passwd")).toBe(false);
    expect(onPath("weft-no-such-tool-xyz")).toBe(false);
  });
});
