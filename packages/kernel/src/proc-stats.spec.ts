import { openSync, closeSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { readProcessStats } from "./proc-stats.js";

describe("readProcessStats", () => {
  it("reads this process's RSS, CPU time, open fds and threads, and sees a new fd", () => {
    const a = readProcessStats(process.pid)!;
    expect(a.pid).toBe(process.pid);
    expect(a.rssBytes).toBeGreaterThan(10 * 2 ** 20);
    // VmRSS and Node's rss agree to within a few MiB.
    expect(Math.abs(a.rssBytes - process.memoryUsage().rss)).toBeLessThan(64 * 2 ** 20);
    expect(a.cpuSeconds).toBeGreaterThan(0);
    expect(a.threads).toBeGreaterThanOrEqual(1);
    const fd = openSync("/dev/null", "r");
    try {
      expect(readProcessStats(process.pid)!.openFds).toBe(a.openFds + 1);
    } finally {
      closeSync(fd);
    }
  });

  it("gives undefined for a process that does not exist, and refuses a PID that is not one", () => {
    expect(readProcessStats(2 ** 22 + 1)).toBeUndefined();
    expect(() => readProcessStats(0)).toThrow(/not a positive integer/);
  });
});
