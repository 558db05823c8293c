/**
 * The author API as docs/writing-a-backend.md states it (its `<!-- author-surface -->` table): every token the
 * table lists resolves in a backend's container, from the package the table names, and the three the guide says
 * are not in it (the writable KERNEL, PROCESS_RUNNER, the store) do not. Read from the guide, so a token added
 * to or dropped from the wiring without the guide (or the other way round) fails here.
 */
import "reflect-metadata";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as core from "@weft/core";
import { BACKEND, type Backend, type BackendModule } from "@weft/core";
import * as kernel from "@weft/kernel";
import { describe, expect, it } from "vitest";
import { TEST_TOPOLOGY, testNetConf } from "./leases.js";
import { startTestAgent } from "./test-agent.js";

const GUIDE = join(import.meta.dirname, "..", "..", "..", "docs", "writing-a-backend.md");

/** The rows of the guide's author-surface table: token name and the package it is imported from. */
function surfaceRows(): { token: string; from: string }[] {
  const text = readFileSync(GUIDE, "utf8");
  const start = text.indexOf("<!-- author-surface -->");
  expect(start, "docs/writing-a-backend.md has no <!-- author-surface --> table").toBeGreaterThanOrEqual(0);
  const rows: { token: string; from: string }[] = [];
  for (const line of text.slice(start).split("\n").slice(1)) {
    if (!line.startsWith("|")) break;
    const m = /^\| `(\w+)` \| `(@weft\/\w+)` \|/.exec(line);
    if (m) rows.push({ token: m[1]!, from: m[2]! });
  }
  return rows;
}

const packages: Record<string, Record<string, unknown>> = { "@weft/core": core, "@weft/kernel": kernel };

/** A backend that does nothing: only its container is looked at. */
const idle: BackendModule = {
  type: "idle",
  configSchema: { parse: (input) => input },
  mtuOverhead: () => 0,
  register(c) {
    const backend: Backend = { registerSubnet: async () => ({}), addPeer: async () => ({ state: "programmed" }), removePeer: async () => {}, close: async () => {} };
    c.register(BACKEND, { useValue: backend });
  },
};

describe("the author API in docs/writing-a-backend.md", () => {
  it("lists exactly what a backend's container resolves, and the guide's exclusions are not in it", async () => {
    const rows = surfaceRows();
    expect(rows.map((r) => r.token)).toEqual(expect.arrayContaining(["DATAPATH", "LOGGER", "KERNEL_VIEW", "MANAGED_DAEMONS", "CLOCK", "STATE_DIR"]));
    const n = TEST_TOPOLOGY.node(1);
    const agent = await startTestAgent({
      backends: [idle],
      config: testNetConf({ Type: "idle" }, "v4"),
      iface: { address: n.address },
      leases: { subnet: n.subnet, nodeName: n.nodeName },
    });
    try {
      for (const { token, from } of rows) {
        const value = packages[from]?.[token];
        expect(typeof value, `${token} is not exported by ${from}, as the guide says`).toBe("symbol");
        expect(agent.container.isRegistered(value as symbol, true), `${token} does not resolve in a backend's container`).toBe(true);
      }
      // Nothing else of core's or the kernel's tokens is there, but BACKEND (what the module itself binds).
      const listed = new Set(rows.map((r) => r.token));
      const unlisted = Object.entries(packages).flatMap(([from, exports]) =>
        Object.entries(exports)
          .filter(([name, v]) => typeof v === "symbol" && !listed.has(name) && name !== "BACKEND" && agent.container.isRegistered(v as symbol, true))
          .map(([name]) => `${from} ${name}`),
      );
      expect(unlisted, "tokens a backend can resolve that the guide's table does not list").toEqual([]);
      // What the guide says a backend cannot reach.
      expect(agent.container.isRegistered(kernel.KERNEL, true)).toBe(false);
      expect(agent.container.isRegistered(kernel.PROCESS_RUNNER, true)).toBe(false);
      expect(agent.container.isRegistered(Symbol.for("weft.subnet-manager"), true)).toBe(false);
      // The read-only view really is read-only.
      expect(Object.keys(agent.container.resolve(kernel.KERNEL_VIEW))).not.toContain("apply");
    } finally {
      await agent.close();
    }
  });
});
