import { existsSync } from "node:fs";
import { afterEach, expect, it } from "vitest";
import { describeReal } from "./vitest.js";
import { createNetns, type TestNetns } from "./netns.js";
import { labRunner } from "./runner.js";
import { pendingCleanups } from "./cleanup.js";

describeReal("createNetns", () => {
  const made: TestNetns[] = [];
  afterEach(async () => {
    for (const ns of made.splice(0)) await ns.destroy();
  });

  it("creates a namespace with lo up, runs commands in it, and destroy leaves nothing", async () => {
    const ns = await createNetns("wn");
    made.push(ns);
    expect(ns.name.length).toBeLessThanOrEqual(15);
    expect(ns.path).toBe(`/run/netns/${ns.name}`);
    expect(existsSync(ns.path)).toBe(true);
    expect(pendingCleanups()).toBeGreaterThan(0);

    const lo = JSON.parse((await ns.ip(["-j", "link", "show", "lo"])).stdout) as { operstate: string; flags: string[] }[];
    expect(lo[0]!.flags).toContain("UP");
    const ping = await ns.run("ping", ["-c1", "-W1", "127.0.0.1"], { reject: false });
    expect(ping.exitCode).toBe(0);

    await ns.destroy();
    await ns.destroy(); // idempotent
    expect(existsSync(ns.path)).toBe(false);
    const list = await labRunner.run("ip", ["netns", "list"]);
    expect(list.stdout).not.toContain(ns.name);
    expect(pendingCleanups()).toBe(0);
  });

  it("gives every namespace its own name", async () => {
    const a = await createNetns();
    const b = await createNetns();
    made.push(a, b);
    expect(a.name).not.toBe(b.name);
  });
}, { tools: ["ping"] });
