import { isWeftError } from "@weft/core";
import { describe, expect, it } from "vitest";
import { describeEthtoolPortContract } from "./ethtool-contract.js";
import { FakeEthtool } from "./fake-ethtool.js";
import { FakeKernel } from "./fake-kernel.js";

describeEthtoolPortContract("FakeEthtool", async () => {
  const port = new FakeEthtool();
  port.addDevice("wv0");
  return { port, dev: "wv0", cleanup: async () => undefined };
});

describeEthtoolPortContract("FakeEthtool on a FakeKernel", async () => {
  const kernel = new FakeKernel();
  await kernel.apply([{ op: "link.add", link: { name: "wv0", kind: "dummy" } }]);
  return { port: new FakeEthtool({ kernel }), dev: "wv0", cleanup: async () => undefined };
});

describe("FakeEthtool", () => {
  it("a device recreated in the kernel starts with the defaults again", async () => {
    const kernel = new FakeKernel();
    const eth = new FakeEthtool({ kernel });
    await kernel.apply([{ op: "link.add", link: { name: "wv0", kind: "dummy" } }]);
    await eth.setFeature("wv0", "tx-checksum-ip-generic", false);
    expect(await eth.stateOf("wv0", "tx-checksum-ip-generic")).toBe("off");
    await kernel.apply([{ op: "link.del", name: "wv0" }]);
    expect(await eth.stateOf("wv0", "tx-checksum-ip-generic")).toBe("absent");
    await kernel.apply([{ op: "link.add", link: { name: "wv0", kind: "dummy" } }]);
    expect(await eth.stateOf("wv0", "tx-checksum-ip-generic")).toBe("on");
  });

  it("missing ethtool is PROCESS_MISSING naming the package; failNext fails one call", async () => {
    const eth = new FakeEthtool();
    eth.addDevice("wv0");
    eth.failNext(new Error("boom"));
    await expect(eth.features("wv0")).rejects.toThrow("boom");
    await expect(eth.features("wv0")).resolves.toBeDefined();
    eth.missing = true;
    const err = await eth.features("wv0").catch((e: unknown) => e);
    expect(isWeftError(err, "PROCESS_MISSING")).toBe(true);
    expect((err as Error).message).toContain("apt-get install -y --no-install-recommends ethtool");
  });
});
