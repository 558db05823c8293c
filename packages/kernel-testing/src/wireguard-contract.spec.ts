/**
 * The WireGuardPort contract on FakeWireGuard and FakeManagedDaemons (unit tier).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeKernel } from "./fake-kernel.js";
import { FakeWireGuardHost } from "./fake-wireguard.js";
import { type WireGuardFixture, describeWireGuardContract } from "./wireguard-contract.js";

describeWireGuardContract("FakeWireGuard", async (): Promise<WireGuardFixture> => {
  const dir = mkdtempSync(join(tmpdir(), "weft-wg-"));
  const kernel = new FakeKernel();
  const host = new FakeWireGuardHost();
  const { daemons, wireguard } = host.agent(kernel);
  return {
    wireguard,
    daemons,
    kernel,
    dir,
    device: "weft-wgc0",
    cleanup: async () => {
      for (const p of host.daemons.running()) await host.daemons.crash(p.pid);
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
