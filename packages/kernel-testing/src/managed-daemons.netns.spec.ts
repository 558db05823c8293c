/**
 * The ManagedDaemonPort contract on LinuxManagedDaemons with real processes: `sleep` as the plain daemon, a
 * tiny node program (argv, no shell) that ignores SIGTERM or fails at once. Needs root (the tier runs as
 * root; the PID checks read /proc inside @weft/kernel): fails under CI=true without it. Every process a test
 * leaves is ended by PID in cleanup.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ChildHandle, ExecaRunner, LinuxManagedDaemons } from "@weft/kernel";
import { describeReal } from "@weft/netns-lab/vitest";
import { type ManagedDaemonFixture, describeManagedDaemonContract } from "./daemon-contract.js";

const runner = new ExecaRunner();
let seq = 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Alive and not a zombie, by `ps` (tests outside @weft/kernel do not read /proc). */
async function alive(pid: number): Promise<boolean> {
  const r = await runner.run("ps", ["-o", "stat=", "-p", String(pid)], { reject: false });
  return r.exitCode === 0 && r.stdout.trim() !== "" && !r.stdout.trim().startsWith("Z");
}

const STUBBORN = "process.on('SIGTERM', () => {}); require('node:fs').writeFileSync(process.argv[1], ''); setInterval(() => {}, 1e6);";
const FAILING = "console.error('boom: cannot bind 198.18.0.1'); process.exit(3);";

describeReal(
  "LinuxManagedDaemons with real processes",
  () => {
    describeManagedDaemonContract("LinuxManagedDaemons", async (): Promise<ManagedDaemonFixture> => {
      const dir = mkdtempSync(join(tmpdir(), "weft-daemons-"));
      const pids = new Set<number>();
      const others: ChildHandle[] = [];
      const ports: LinuxManagedDaemons[] = [];
      return {
        dir,
        port: (options = {}) => {
          const p = new LinuxManagedDaemons({ runner, ...options });
          ports.push(p);
          return p;
        },
        daemon: (kind, name, runDir) => {
          const tag = `${process.pid}.${++seq}`;
          if (kind === "sleeper") return { name, runDir, command: "sleep", args: ["3600", `0.${tag.replace(".", "")}`], detached: true };
          if (kind === "failing") return { name, runDir, command: process.execPath, args: ["-e", FAILING, tag], detached: true };
          const ready = join(dir, `${name}.${tag}.ready`);
          return { name, runDir, command: process.execPath, args: ["-e", STUBBORN, ready], detached: true, ready: async () => existsSync(ready) };
        },
        other: async () => {
          const h = runner.spawn("sleep", ["3600", `0.9${++seq}`]);
          others.push(h);
          return h.pid;
        },
        crash: async (pid) => {
          pids.add(pid);
          process.kill(pid, "SIGKILL");
          for (let i = 0; i < 100 && (await alive(pid)); i++) await sleep(20);
        },
        alive: async (pid) => {
          pids.add(pid);
          return alive(pid);
        },
        cleanup: async () => {
          for (const h of others) h.kill("SIGKILL");
          // Whatever a failed test left: by PID, and only ours (the PIDs this fixture saw).
          for (const pid of pids) if (await alive(pid)) process.kill(pid, "SIGKILL");
          rmSync(dir, { recursive: true, force: true });
        },
      };
    });
  },
  { tools: ["sleep", "ps"] },
);
