/** Which rows a datapath bench run measures (WEFT_BENCH_DATAPATH*), and when it may write docs/benchmarks.md. */
import { describe, expect, it } from "vitest";
import { DATAPATH_BACKENDS, datapathSelection } from "./datapath.js";

describe("datapathSelection", () => {
  it("defaults to every backend, 5 s, 3 runs: a full run that writes the docs", () => {
    expect(datapathSelection({})).toEqual({ backends: [...DATAPATH_BACKENDS], partial: false, seconds: 5, runs: 3 });
    expect(DATAPATH_BACKENDS).toEqual(["host-gw", "vxlan", "wireguard", "ipsec"]);
  });

  it("a subset, in table order, each once, case and spaces forgiven: a smoke run", () => {
    expect(datapathSelection({ WEFT_BENCH_DATAPATH: " IPsec, wireguard,ipsec " })).toEqual({ backends: ["wireguard", "ipsec"], partial: true, seconds: 5, runs: 3 });
  });

  it("another duration or run count is a smoke run too", () => {
    expect(datapathSelection({ WEFT_BENCH_DATAPATH_SECONDS: "2", WEFT_BENCH_DATAPATH_RUNS: "1" })).toMatchObject({ partial: true, seconds: 2, runs: 1 });
  });

  it("an unknown backend or a bad number is one line naming the variable and the fix", () => {
    expect(() => datapathSelection({ WEFT_BENCH_DATAPATH: "wireguard,gre" })).toThrow(
      'WEFT_BENCH_DATAPATH="wireguard,gre": unknown backend gre; use a comma-separated list of host-gw, vxlan, wireguard, ipsec',
    );
    expect(() => datapathSelection({ WEFT_BENCH_DATAPATH: "," })).toThrow(/unknown backend \(none given\)/);
    expect(() => datapathSelection({ WEFT_BENCH_DATAPATH_SECONDS: "0.5" })).toThrow('WEFT_BENCH_DATAPATH_SECONDS="0.5": not a whole number of at least 1');
  });
});
