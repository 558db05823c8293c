/**
 * Throw-away network namespaces for tests. Each one is created with a unique name, gets `lo` up, and is
 * registered for teardown on signals/exit until destroy() runs.
 *
 * Kernel notes:
 * - `ip netns add` bind-mounts the namespace at /run/netns/<name>; `ip netns del` unmounts and unlinks it.
 *   Deleting a namespace also deletes every veth end inside it, which removes the peer end wherever it lives
 *   (that is how the root-side ends of a Lab disappear).
 * - The namespace itself lives on while a process still runs in it; only the name is gone. Kill your own
 *   processes first if the namespace must really vanish.
 */
import { existsSync } from "node:fs";
import type { RunOptions, RunResult } from "@weft/kernel";
import { WeftError } from "@weft/core";
import { registerCleanup } from "./cleanup.js";
import { uniqueName } from "./guards.js";
import { labRunner } from "./runner.js";

export interface TestNetns {
  readonly name: string;
  /** /run/netns/<name> (what CNI calls CNI_NETNS). */
  readonly path: string;
  /** Runs `ip netns exec <name> file args...`. */
  run(file: string, args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Runs `ip -n <name> args...` (cheaper than `run("ip", ...)`: no mount namespace, one exec). */
  ip(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Deletes the namespace. Idempotent; succeeds when it is already gone. */
  destroy(): Promise<void>;
}

export const NETNS_DIR = "/run/netns";

class Netns implements TestNetns {
  readonly path: string;
  private destroyed: Promise<void> | undefined;
  private unregister: () => void = () => undefined;

  constructor(readonly name: string) {
    this.path = `${NETNS_DIR}/${name}`;
  }

  arm(): void {
    this.unregister = registerCleanup(
      () => this.destroy(),
      () => {
        labRunner.runSync("ip", ["netns", "del", this.name]);
      },
    );
  }

  run(file: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return labRunner.run("ip", ["netns", "exec", this.name, file, ...args], opts);
  }

  ip(args: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return labRunner.run("ip", ["-n", this.name, ...args], opts);
  }

  destroy(): Promise<void> {
    this.destroyed ??= (async () => {
      const r = await labRunner.run("ip", ["netns", "del", this.name], { reject: false });
      if (r.exitCode !== 0 && existsSync(this.path)) {
        this.destroyed = undefined; // allow a retry
        throw new WeftError("PROCESS_FAILED", `ip netns del ${this.name}: ${r.stderr.trim()}; delete it by hand`);
      }
      this.unregister();
    })();
    return this.destroyed;
  }
}

/**
 * A TestNetns handle for an existing namespace `name`, NOT registered for cleanup (its owner tears it down,
 * e.g. a Lab deletes all its namespaces in one batch).
 */
export function adoptNetns(name: string): TestNetns {
  return new Netns(name);
}

/**
 * Creates a namespace named `<prefix><unique suffix>` (<= 15 characters), brings `lo` up, and registers it
 * for teardown. Default prefix "wn".
 */
export async function createNetns(prefix = "wn"): Promise<TestNetns> {
  for (let attempt = 0; ; attempt++) {
    const ns = new Netns(uniqueName(prefix));
    const r = await labRunner.run("ip", ["netns", "add", ns.name], { reject: false });
    if (r.exitCode !== 0) {
      // A name clash with another process is astronomically unlikely, but costs nothing to survive.
      if (attempt < 3 && /exists/i.test(r.stderr)) continue;
      throw new WeftError("PROCESS_FAILED", `ip netns add ${ns.name}: ${r.stderr.trim() || `exit code ${r.exitCode}`}`);
    }
    ns.arm();
    try {
      await ns.ip(["link", "set", "lo", "up"]);
    } catch (err) {
      await ns.destroy().catch(() => undefined);
      throw err;
    }
    return ns;
  }
}
