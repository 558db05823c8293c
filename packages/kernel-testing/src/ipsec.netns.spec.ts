/**
 * The IpsecPort contract against a real charon (kernel-libipsec) in a fresh network namespace per test, plus the
 * ESP probe. Needs root and strongSwan (CHARON_PACKAGES): fails under CI=true without them.
 *
 * charon's PID file is hard-coded to /var/run/charon.pid (linux-lab §6), so these tests start one charon at a
 * time and end it by PID before the next.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ExecaRunner, type ProcessRunner, ViciIpsec, charonFiles, locateCharon, prepareCharon } from "@weft/kernel";
import { createNetns } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { expect, it } from "vitest";
import { describeIpsecPortContract } from "./ipsec-contract.js";

const host = new ExecaRunner();

function runnerIn(netns: string): ProcessRunner {
  return {
    run: (file, args, opts) => host.run("ip", ["netns", "exec", netns, file, ...args], opts),
    spawn: (file, args, opts) => host.spawn("ip", ["netns", "exec", netns, file, ...args], opts),
  };
}

describeReal(
  "ViciIpsec on a real charon in a network namespace",
  () => {
    describeIpsecPortContract("ViciIpsec", async () => {
      const ns = await createNetns("wi");
      const dir = mkdtempSync(join(tmpdir(), "weft-ipsec-"));
      const files = charonFiles(join(dir, "run"));
      let child: ReturnType<ProcessRunner["spawn"]> | undefined;
      const cleanup = async () => {
        if (child) {
          child.kill("SIGTERM");
          await Promise.race([child.exited, sleep(5000)]);
        }
        await ns.destroy();
        rmSync(dir, { recursive: true, force: true });
      };
      try {
        await ns.ip(["link", "add", "wi0", "type", "veth", "peer", "name", "wi1"]);
        await ns.ip(["addr", "add", "198.18.77.1/24", "dev", "wi0"]);
        await ns.ip(["link", "set", "wi0", "up"]);
        await ns.ip(["link", "set", "wi1", "up"]);
        prepareCharon(files, "libipsec");
        child = runnerIn(ns.name).spawn(locateCharon(), [], { env: { STRONGSWAN_CONF: files.conf }, stdoutFile: join(dir, "charon.out"), stderrFile: join(dir, "charon.out") });
        const port = new ViciIpsec(runnerIn(ns.name));
        const deadline = Date.now() + 10_000;
        for (;;) {
          try {
            await port.version(files.socket);
            break;
          } catch (err) {
            if (Date.now() > deadline) throw err;
            await sleep(20);
          }
        }
        // A stale socket file: what a dead charon leaves behind.
        const dead = join(dir, "dead.vici");
        writeFileSync(dead, "");
        return { port, socket: files.socket, deadSocket: dead, cleanup };
      } catch (err) {
        await cleanup();
        throw err;
      }
    });

    it("the ESP probe says whether this kernel has ESP, and leaves no XFRM state behind", async () => {
      const ns = await createNetns("wi");
      try {
        const r = await new ViciIpsec(runnerIn(ns.name)).kernelEsp();
        if (!r.available) expect(r.reason).toMatch(/^kernel lacks ESP: /);
        expect((await ns.ip(["xfrm", "state"])).stdout.trim()).toBe("");
      } finally {
        await ns.destroy();
      }
    });
  },
  { tools: ["ip"] },
);
