import { describe, expect, it } from "vitest";
import { pendingCleanups, registerCleanup, runCleanups } from "./cleanup.js";

describe("cleanup registry", () => {
  it("runs each cleanup once, newest first, and empties the registry", async () => {
    const order: string[] = [];
    registerCleanup(() => void order.push("a"));
    registerCleanup(async () => void order.push("b"));
    const unregister = registerCleanup(() => void order.push("never"));
    unregister();
    expect(pendingCleanups()).toBe(2);
    expect(process.listenerCount("SIGTERM")).toBeGreaterThan(0);
    await runCleanups();
    await runCleanups();
    expect(order).toEqual(["b", "a"]);
    expect(pendingCleanups()).toBe(0);
  });

  it("keeps going after a failure and reports it", async () => {
    const order: string[] = [];
    registerCleanup(() => void order.push("a"));
    registerCleanup(() => {
      throw new Error("boom");
    });
    await expect(runCleanups()).rejects.toThrow("boom");
    expect(order).toEqual(["a"]);
    expect(pendingCleanups()).toBe(0);
  });

  it("removes its signal handlers once nothing is registered", () => {
    const before = process.listenerCount("SIGINT");
    const off = registerCleanup(() => undefined);
    expect(process.listenerCount("SIGINT")).toBe(before + 1);
    off();
    expect(process.listenerCount("SIGINT")).toBe(before);
  });
});
