/**
 * weftd's stop signals (issue 15, #1): the first SIGTERM/SIGINT stops the agent wherever it is; a second one while
 * it stops exits at once, non-zero, saying so.
 */
import { EventEmitter } from "node:events";
import { MemoryLogger } from "@weft/core";
import { describe, expect, it } from "vitest";
import { installStopSignals } from "./main.js";

describe("installStopSignals", () => {
  function setUp() {
    const source = new EventEmitter();
    const log = new MemoryLogger();
    const controller = new AbortController();
    const exits: number[] = [];
    const dispose = installStopSignals(source, log, controller, (code) => exits.push(code));
    return { source, log, controller, exits, dispose };
  }

  it("the first SIGTERM aborts the run and says so; nothing exits yet", () => {
    const t = setUp();
    t.source.emit("SIGTERM");
    expect(t.controller.signal.aborted).toBe(true);
    expect(t.exits).toEqual([]);
    expect(t.log.records.map((r) => `${r.level} ${r.msg}`)).toEqual(["info received SIGTERM: stopping; the datapath stays up for the next agent"]);
  });

  it("a second SIGTERM or SIGINT while stopping exits at once with 128 + its number, saying so", () => {
    const t = setUp();
    t.source.emit("SIGTERM");
    t.source.emit("SIGTERM");
    expect(t.exits).toEqual([143]);
    const u = setUp();
    u.source.emit("SIGTERM");
    u.source.emit("SIGINT");
    expect(u.exits).toEqual([130]);
    expect(u.log.records.at(-1)).toMatchObject({ level: "error", msg: "received SIGINT again while stopping: exiting now, without waiting for the stop to finish" });
  });

  it("removes its handlers when disposed", () => {
    const t = setUp();
    t.dispose();
    expect(t.source.listenerCount("SIGTERM") + t.source.listenerCount("SIGINT")).toBe(0);
    t.source.emit("SIGTERM");
    expect(t.controller.signal.aborted).toBe(false);
  });
});
