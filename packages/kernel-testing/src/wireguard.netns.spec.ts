/**
 * The WireGuardPort contract on LinuxWireGuard with real wireguard-go and wg, the device's wireguard-go run by
 * LinuxManagedDaemons inside a fresh network namespace (`ip netns exec`: it execs, so the PID is
 * wireguard-go's). Device names are unique per test: /var/run/wireguard is this machine's, shared by every
 * namespace. Needs root, wireguard-go and wg: fails under CI=true without them.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ChildHandle, ExecaRunner, LinuxKernel, LinuxManagedDaemons, LinuxWireGuard, type ProcessRunner } from "@weft/kernel";
import { createNetns, uniqueName } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { expect, it } from "vitest";
import { type WireGuardFixture, describeWireGuardContract } from "./wireguard-contract.js";

const runner = new ExecaRunner();

/** Spawns inside namespace `ns` (`ip netns exec` execs the program: same PID); runs everything else as is. */
function spawnIn(ns: string, started: ChildHandle[]): ProcessRunner {
  return {
    run: (file, args, options) => runner.run(file, args, options),
    spawn: (file, args, options) => {
      const h = runner.spawn("ip", ["netns", "exec", ns, file, ...args], options);
      started.push(h);
      return h;
    },
  };
}

describeReal(
  "LinuxWireGuard with wireguard-go in a network namespace",
  () => {
    describeWireGuardContract("LinuxWireGuard", async (): Promise<WireGuardFixture> => {
      const ns = await createNetns("wwg");
      const dir = mkdtempSync(join(tmpdir(), "weft-wg-"));
      const started: ChildHandle[] = [];
      const device = uniqueName("wgc");
      return {
        wireguard: new LinuxWireGuard({ runner }),
        daemons: new LinuxManagedDaemons({ runner: spawnIn(ns.name, started) }),
        kernel: new LinuxKernel({ runner, netns: ns.name }),
        dir,
        device,
        cleanup: async () => {
          // By the handles of what this test started (never by name); their TUNs go with them. A wireguard-go
          // ended by SIGKILL leaves its UAPI socket file in the machine's /var/run/wireguard: remove this test's.
          for (const h of started) h.kill("SIGKILL");
          await Promise.all(started.map((h) => h.exited));
          rmSync(join("/var/run/wireguard", `${device}.sock`), { force: true });
          await ns.destroy();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    });

    it("refuses a private socket directory while sharing its parent's mount namespace (it would hide the machine's sockets)", async () => {
      const dir = mkdtempSync(join(tmpdir(), "weft-wg-"));
      try {
        await expect(new LinuxWireGuard({ runner }).usePrivateSocketDir(join(dir, "sockets"))).rejects.toMatchObject({ code: "CONFIG_INVALID" });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
  { tools: ["wireguard-go", "wg"] },
);
