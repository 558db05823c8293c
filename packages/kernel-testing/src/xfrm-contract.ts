/**
 * The XfrmPort contract: one suite, run on FakeXfrm (unit) and on LinuxXfrm in a fresh network namespace (netns
 * tier). It imports vitest, so it is not part of the package index.
 *
 * States need a transform the kernel has (ESP, AH or IPComp): where it has none (these dev machines: XFRM without
 * esp4), the caller says so in the `statesUnsupported` option and the state cases are reported as "not run: <reason>";
 * policies need no transform and always run.
 */
import { isWeftError } from "@weft/core";
import type { XfrmMark, XfrmPort } from "@weft/kernel";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

/** A policy to add: a selector and one tunnel-mode ESP template with `reqid` (198.18.0.0/15 only). */
export interface ContractPolicy {
  readonly src: string;
  readonly dst: string;
  readonly dir: "in" | "out" | "fwd";
  readonly reqid: number;
  readonly tmplSrc: string;
  readonly tmplDst: string;
  readonly mark?: XfrmMark;
  readonly ifId?: number;
}

/** A tunnel-mode ESP state with a null cipher to add (nothing carries packets). */
export interface ContractState {
  readonly src: string;
  readonly dst: string;
  readonly spi: number;
  readonly reqid: number;
}

export interface XfrmPortFixture {
  readonly port: XfrmPort;
  addPolicy(p: ContractPolicy): Promise<void>;
  addState(s: ContractState): Promise<void>;
  cleanup(): Promise<void>;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  return isWeftError(err) ? err.code : `no WeftError (${String(err)})`;
}

const OURS = 0x57000102;
const THEIRS = 7;

export function describeXfrmPortContract(
  name: string,
  factory: () => Promise<XfrmPortFixture>,
  /**
   * Known before the tests are declared: why this kernel cannot hold states (it lacks ESP). The state case is then
   * declared as "not run: <reason>" — the one gate the test summary lists by name instead of failing the tier.
   */
  options: { readonly statesUnsupported?: string } = {},
): void {
  describe(`XfrmPort contract: ${name}`, () => {
    let fx: XfrmPortFixture;
    beforeEach(async () => {
      fx = await factory();
    });
    afterEach(async () => {
      await fx?.cleanup();
    });

    it("a fresh namespace has no state and no policy", async () => {
      expect(await fx.port.listStates()).toEqual([]);
      expect(await fx.port.listPolicies()).toEqual([]);
    });

    it("lists policies with direction, selector, template reqids, mark and if_id; deletes exactly the one named", async () => {
      await fx.addPolicy({ src: "198.19.1.0/24", dst: "198.19.2.0/24", dir: "out", reqid: OURS, tmplSrc: "198.18.0.1", tmplDst: "198.18.0.2" });
      await fx.addPolicy({ src: "198.19.2.0/24", dst: "198.19.1.0/24", dir: "fwd", reqid: OURS, tmplSrc: "198.18.0.2", tmplDst: "198.18.0.1", ifId: 0x77 });
      await fx.addPolicy({ src: "198.19.2.0/24", dst: "198.19.1.0/24", dir: "in", reqid: OURS, tmplSrc: "198.18.0.2", tmplDst: "198.18.0.1", mark: { value: 5, mask: 0xff } });
      await fx.addPolicy({ src: "198.19.3.0/24", dst: "198.19.4.0/24", dir: "out", reqid: THEIRS, tmplSrc: "198.18.0.1", tmplDst: "198.18.0.3" });
      const listed = await fx.port.listPolicies();
      const shape = listed.map(({ index: _i, ...p }) => p).sort((a, b) => `${a.dir}${a.src}`.localeCompare(`${b.dir}${b.src}`));
      expect(shape).toEqual([
        { src: "198.19.2.0/24", dst: "198.19.1.0/24", dir: "fwd", ptype: "main", reqids: [OURS], ifId: 0x77 },
        { src: "198.19.2.0/24", dst: "198.19.1.0/24", dir: "in", ptype: "main", reqids: [OURS], mark: { value: 5, mask: 0xff } },
        { src: "198.19.1.0/24", dst: "198.19.2.0/24", dir: "out", ptype: "main", reqids: [OURS] },
        { src: "198.19.3.0/24", dst: "198.19.4.0/24", dir: "out", ptype: "main", reqids: [THEIRS] },
      ]);
      for (const p of listed.filter((x) => x.reqids.includes(OURS))) await fx.port.deletePolicy(p);
      expect((await fx.port.listPolicies()).map((p) => [p.dir, p.src, p.reqids])).toEqual([["out", "198.19.3.0/24", [THEIRS]]]);
      expect(await codeOf(fx.port.deletePolicy(listed.find((p) => p.dir === "fwd")!))).toBe("KERNEL_NOT_FOUND");
    });

    it("deleting a state that does not exist is KERNEL_NOT_FOUND", async () => {
      expect(await codeOf(fx.port.deleteState({ src: "198.18.0.1", dst: "198.18.0.2", proto: "esp", spi: 0xc0ffee }))).toBe("KERNEL_NOT_FOUND");
    });

    const statesCase = "lists states with SPI, reqid, proto and mode (never keys); deletes exactly the one named";
    if (options.statesUnsupported) it.skip(`not run: ${options.statesUnsupported} (${statesCase})`, () => {});
    else it(statesCase, async () => {
      await fx.addState({ src: "198.18.0.1", dst: "198.18.0.2", spi: 0xc1000001, reqid: OURS });
      await fx.addState({ src: "198.18.0.2", dst: "198.18.0.1", spi: 0xc1000002, reqid: OURS });
      await fx.addState({ src: "198.18.0.1", dst: "198.18.0.3", spi: 0xc1000003, reqid: THEIRS });
      const listed = await fx.port.listStates();
      expect(listed.map((s) => [s.src, s.dst, s.proto, s.spi, s.reqid, s.mode]).sort()).toEqual(
        [
          ["198.18.0.1", "198.18.0.2", "esp", 0xc1000001, OURS, "tunnel"],
          ["198.18.0.2", "198.18.0.1", "esp", 0xc1000002, OURS, "tunnel"],
          ["198.18.0.1", "198.18.0.3", "esp", 0xc1000003, THEIRS, "tunnel"],
        ].sort(),
      );
      await fx.port.deleteState(listed.find((s) => s.spi === 0xc1000001)!);
      expect((await fx.port.listStates()).map((s) => s.spi).sort()).toEqual([0xc1000002, 0xc1000003]);
      expect(await codeOf(fx.port.deleteState(listed.find((s) => s.spi === 0xc1000001)!))).toBe("KERNEL_NOT_FOUND");
    });
  });
}
