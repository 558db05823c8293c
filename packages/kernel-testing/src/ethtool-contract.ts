/**
 * The EthtoolPort contract: one suite, run on FakeEthtool (unit) and on LinuxEthtool over a veth in a fresh
 * network namespace (netns tier). It imports vitest, so it is not part of the package index.
 */
import { isWeftError } from "@weft/core";
import type { EthtoolPort } from "@weft/kernel";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

export interface EthtoolPortFixture {
  readonly port: EthtoolPort;
  /** An existing device whose `tx-checksum-ip-generic` can be changed and whose `tx-checksum-ipv4` is fixed off. */
  readonly dev: string;
  cleanup(): Promise<void>;
}

const GENERIC = "tx-checksum-ip-generic";
const FIXED = "tx-checksum-ipv4";

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  return isWeftError(err) ? err.code : `no WeftError (${String(err)})`;
}

export function describeEthtoolPortContract(name: string, factory: () => Promise<EthtoolPortFixture>): void {
  describe(`EthtoolPort contract: ${name}`, () => {
    let fx: EthtoolPortFixture;
    beforeEach(async () => {
      fx = await factory();
    });
    afterEach(async () => {
      await fx?.cleanup();
    });

    it("reads the features of a device, with fixed ones marked", async () => {
      const f = await fx.port.features(fx.dev);
      expect(f.get(GENERIC)).toEqual({ enabled: true, fixed: false });
      expect(f.get(FIXED)).toEqual({ enabled: false, fixed: true });
    });

    it("turns a feature off and on again; setting the value it has succeeds and changes nothing", async () => {
      await fx.port.setFeature(fx.dev, GENERIC, false);
      expect((await fx.port.features(fx.dev)).get(GENERIC)?.enabled).toBe(false);
      await fx.port.setFeature(fx.dev, GENERIC, false);
      expect((await fx.port.features(fx.dev)).get(GENERIC)?.enabled).toBe(false);
      await fx.port.setFeature(fx.dev, GENERIC, true);
      expect((await fx.port.features(fx.dev)).get(GENERIC)?.enabled).toBe(true);
    });

    it("a fixed feature cannot be changed: KERNEL_UNSUPPORTED, and it stays as it was", async () => {
      expect(await codeOf(fx.port.setFeature(fx.dev, FIXED, true))).toBe("KERNEL_UNSUPPORTED");
      expect((await fx.port.features(fx.dev)).get(FIXED)).toEqual({ enabled: false, fixed: true });
    });

    it("an unknown feature is KERNEL_INVALID", async () => {
      expect(await codeOf(fx.port.setFeature(fx.dev, "no-such-feature", false))).toBe("KERNEL_INVALID");
    });

    it("a missing device is KERNEL_NOT_FOUND for reads and writes", async () => {
      expect(await codeOf(fx.port.features("weft-nodev0"))).toBe("KERNEL_NOT_FOUND");
      expect(await codeOf(fx.port.setFeature("weft-nodev0", GENERIC, false))).toBe("KERNEL_NOT_FOUND");
    });
  });
}
