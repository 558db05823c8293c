/** The OwnedSysctls contract on the real kernel: a LinuxKernel in a fresh namespace, records in a temporary state dir. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExecaRunner, FileSysctlRecords, LinuxKernel } from "@weft/kernel";
import { createNetns } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { describeOwnedSysctlContract } from "./sysctl-contract.js";

const runner = new ExecaRunner();

describeReal("OwnedSysctls on the real kernel", () => {
  describeOwnedSysctlContract("LinuxKernel in a network namespace, records in a state dir", async () => {
    const ns = await createNetns("ws");
    const dir = mkdtempSync(join(tmpdir(), "weft-sysctl-"));
    const cleanup = async () => {
      rmSync(dir, { recursive: true, force: true });
      await ns.destroy();
    };
    try {
      await ns.ip(["link", "add", "wu0", "type", "veth", "peer", "name", "wu1"]);
      await ns.ip(["link", "set", "wu0", "up"]);
    } catch (err) {
      await cleanup();
      throw err;
    }
    return { kernel: new LinuxKernel({ runner, netns: ns.name }), records: () => new FileSysctlRecords(dir), device: "wu0", cleanup };
  });
});
