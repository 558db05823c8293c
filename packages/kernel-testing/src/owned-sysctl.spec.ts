import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileSysctlRecords, MemorySysctlRecords } from "@weft/kernel";
import { FakeKernel } from "./fake-kernel.js";
import { describeOwnedSysctlContract } from "./sysctl-contract.js";

function fake(): FakeKernel {
  const k = new FakeKernel();
  k.addExternalLink({ name: "eth0", kind: "veth", veth: { peer: "eth0-peer" }, up: true, mtu: 1500 });
  return k;
}

describeOwnedSysctlContract("FakeKernel, records in memory", async () => {
  const records = new MemorySysctlRecords();
  return { kernel: fake(), records: () => records, device: "eth0", cleanup: async () => undefined };
});

describeOwnedSysctlContract("FakeKernel, records in a state dir", async () => {
  const dir = mkdtempSync(join(tmpdir(), "weft-sysctl-"));
  return { kernel: fake(), records: () => new FileSysctlRecords(dir), device: "eth0", cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
});
