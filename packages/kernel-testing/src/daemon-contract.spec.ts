/**
 * The ManagedDaemonPort contract on FakeManagedDaemons (unit tier): the fake keeps the real adapter's rules.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ManagedDaemonFixture, describeManagedDaemonContract } from "./daemon-contract.js";
import { FakeDaemonTable, FakeManagedDaemons } from "./fake-managed-daemons.js";

let seq = 0;

describeManagedDaemonContract("FakeManagedDaemons", async (): Promise<ManagedDaemonFixture> => {
  const dir = mkdtempSync(join(tmpdir(), "weft-daemons-"));
  const table = new FakeDaemonTable()
    .install("fake-sleeper")
    .install("fake-stubborn", { ignoresTerm: true })
    .install("fake-failing", {
      start: (p) => {
        p.log("boom: cannot bind 198.18.0.1");
        return { exitCode: 3 };
      },
    });
  return {
    dir,
    port: (options = {}) => new FakeManagedDaemons(table, options),
    daemon: (kind, name, runDir) => ({
      name,
      runDir,
      command: `fake-${kind}`,
      args: [`tag-${++seq}`],
      detached: true,
      ...(kind === "stubborn" ? { ready: async () => true } : {}),
    }),
    other: async () => table.spawnOther("fake-sleeper", [`other-${++seq}`]),
    crash: (pid) => table.crash(pid),
    alive: async (pid) => table.processes.get(pid) !== undefined && !table.processes.get(pid)!.ended,
    cleanup: async () => {
      for (const p of table.running()) await table.crash(p.pid);
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
