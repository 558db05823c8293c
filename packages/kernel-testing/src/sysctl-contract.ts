/**
 * The OwnedSysctls contract: one suite, run on the FakeKernel (unit tier) and on the LinuxKernel in a fresh
 * network namespace (netns tier), so the fake's sysctls behave as the kernel's for what Weft relies on: a
 * changed key is restored to the value found before Weft first changed it, also by a restarted agent.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type KernelPort, OwnedSysctls, type SysctlRecords } from "@weft/kernel";

export interface OwnedSysctlFixture {
  readonly kernel: KernelPort;
  /** Records over the agent's state: every call gives a new instance on the SAME storage (a restarted agent). */
  records(): SysctlRecords;
  /** An up device of this kernel (its per-device keys exist). */
  readonly device: string;
  cleanup(): Promise<void>;
}

export function describeOwnedSysctlContract(name: string, factory: () => Promise<OwnedSysctlFixture>): void {
  describe(`OwnedSysctls contract: ${name}`, () => {
    let fx: OwnedSysctlFixture;
    let k: KernelPort;
    let key: string;
    beforeEach(async () => {
      fx = await factory();
      k = fx.kernel;
      key = `net.ipv4.conf.${fx.device}.rp_filter`;
      // A known starting point: 0 (the namespace default), whatever the fixture had.
      await k.setSysctl(key, "0");
    });
    afterEach(async () => {
      await fx?.cleanup();
    });

    it("records the value found before the first change, and restore puts it back and forgets it", async () => {
      const s = new OwnedSysctls(k, fx.records());
      await s.set(key, "2");
      expect(await k.getSysctl(key)).toBe("2");
      expect(await s.owned()).toEqual([{ key, original: "0" }]);
      await s.restore(key);
      expect(await k.getSysctl(key)).toBe("0");
      expect(await s.owned()).toEqual([]);
    });

    it("keeps the first original across later changes; a key already at the value is not recorded", async () => {
      const s = new OwnedSysctls(k, fx.records());
      await s.set(key, "0");
      expect(await s.owned()).toEqual([]);
      await s.set(key, "1");
      await s.set(key, "2");
      expect(await s.owned()).toEqual([{ key, original: "0" }]);
      // The slash spelling is the same key.
      await s.restore(key.replaceAll(".", "/"));
      expect(await k.getSysctl(key)).toBe("0");
    });

    it("a restarted agent (new instance on the same state) still restores the value from before Weft", async () => {
      await new OwnedSysctls(k, fx.records()).set(key, "2");
      const restarted = new OwnedSysctls(k, fx.records());
      await restarted.set(key, "2");
      expect(await restarted.owned()).toEqual([{ key, original: "0" }]);
      await restarted.restore(key);
      expect(await k.getSysctl(key)).toBe("0");
    });

    it("a missing key is NOT_FOUND and recorded nowhere; restoring an unrecorded key changes nothing", async () => {
      const s = new OwnedSysctls(k, fx.records());
      await expect(s.set("net.ipv4.conf.wt-nosuch.rp_filter", "2")).rejects.toMatchObject({ code: "KERNEL_NOT_FOUND" });
      await expect(s.set("net.ipv4.conf.x y.rp_filter", "2")).rejects.toMatchObject({ code: "KERNEL_INVALID" });
      expect(await s.owned()).toEqual([]);
      await s.restore(key);
      expect(await k.getSysctl(key)).toBe("0");
    });

    it("restoring a key whose device is gone drops the record", async () => {
      const s = new OwnedSysctls(k, fx.records());
      const r = await k.apply([{ op: "link.add", link: { name: "wt-sc0", kind: "veth", veth: { peer: "wt-sc1" } } }]);
      expect(r[0]!.ok).toBe(true);
      await s.set("net.ipv4.conf.wt-sc0.rp_filter", "2");
      await k.apply([{ op: "link.del", name: "wt-sc0" }]);
      await s.restore("net.ipv4.conf.wt-sc0.rp_filter");
      expect(await s.owned()).toEqual([]);
    });
  });
}
