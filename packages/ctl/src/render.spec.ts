import { describe, expect, it } from "vitest";
import { IPSEC_STATUS, NOT_READY_STATUS, READY_STATUS } from "./fixtures.js";
import { EndpointError } from "./http-client.js";
import { renderPeers, sortPeers } from "./peers.js";
import { parseStatus, peerCounts, renderStatus } from "./status.js";

const EP = "http://127.0.0.1:9099";

describe("renderStatus", () => {
  it("summarises a ready agent: phase, subnet, public IP, backend, MTU, peer counts by state", () => {
    expect(renderStatus({ endpoint: EP, status: READY_STATUS, readyz: { ready: true, reason: "" } })).toBe(
      [
        "weftd at http://127.0.0.1:9099",
        "  phase:      running",
        "  ready:      yes",
        "  subnet:     198.19.1.0/24",
        "  public IP:  198.18.0.1",
        "  backend:    vxlan",
        "  MTU:        1450",
        "  peers:      3 (2 programmed, 1 unreachable)",
        "  1 peer is not programmed: see weftctl peers",
        "",
      ].join("\n"),
    );
  });

  it("says why an agent is not ready, and shows both families", () => {
    const text = renderStatus({ endpoint: EP, status: NOT_READY_STATUS, readyz: { ready: false, reason: "1 peers failed to program" } });
    expect(text).toContain("  ready:      no: 1 peers failed to program\n");
    expect(text).toContain("  subnet:     198.19.1.0/24, 2001:2:0:1::/64\n");
    expect(text).toContain("  public IP:  198.18.0.1, 2001:2::1\n");
    expect(text).toContain("  peers:      1 (1 failed)\n");
  });

  it("shows the backend's own status: its datapath with the reason, and its gauges", () => {
    expect(renderStatus({ endpoint: EP, status: IPSEC_STATUS, readyz: { ready: true, reason: "" } })).toBe(
      [
        "weftd at http://127.0.0.1:9099",
        "  phase:      running",
        "  ready:      yes",
        "  subnet:     198.19.1.0/24",
        "  public IP:  198.18.0.1",
        "  backend:    ipsec",
        "  datapath:   libipsec (auto: kernel lacks ESP)",
        "  gauges:     connections_desired 2, connections_loaded 2, sas_up 1",
        "  MTU:        1400",
        "  peers:      2 (2 programmed)",
        "",
      ].join("\n"),
    );
    // A backend without a status shows neither line.
    expect(renderStatus({ endpoint: EP, status: READY_STATUS, readyz: { ready: true, reason: "" } })).not.toMatch(/datapath:|gauges:/);
  });

  it("shows an agent that has no lease yet", () => {
    const text = renderStatus({ endpoint: EP, status: { phase: "lease", ready: false, reason: "phase lease", peers: [] }, readyz: { ready: false, reason: "phase lease" } });
    expect(text).toContain("  phase:      lease\n  ready:      no: phase lease\n  subnet:     -\n");
    expect(text).toContain("  peers:      none\n");
    expect(text).not.toContain("weftctl peers");
  });
});

describe("peerCounts", () => {
  it("orders weftd's states first and unknown ones after", () => {
    expect(peerCounts([{ peer: "a", state: "zzz" }, { peer: "b", state: "failed" }, { peer: "c", state: "programmed" }, { peer: "d", state: "failed" }])).toEqual([
      ["programmed", 1],
      ["failed", 2],
      ["zzz", 1],
    ]);
  });
});

describe("renderPeers", () => {
  it("prints an aligned table, peers that are not programmed first", () => {
    expect(renderPeers(READY_STATUS.peers)).toBe(
      [
        "SUBNET         PUBLIC IP   STATE        REASON",
        "198.19.4.0-24  198.18.0.4  unreachable  no route to 198.18.0.4 on the underlay",
        "198.19.2.0-24  198.18.0.2  programmed",
        "198.19.3.0-24  198.18.0.3  programmed",
        "",
      ].join("\n"),
    );
  });

  it("sorts subnet keys numerically and says so when there are no peers", () => {
    expect(sortPeers([{ peer: "198.19.10.0-24", state: "programmed" }, { peer: "198.19.9.0-24", state: "programmed" }]).map((p) => p.peer)).toEqual(["198.19.9.0-24", "198.19.10.0-24"]);
    expect(renderPeers([])).toMatch(/^no peers: /);
  });
});

describe("parseStatus", () => {
  it("accepts weftd's JSON and rejects anything else with one line naming the endpoint", () => {
    expect(parseStatus(EP, JSON.stringify(READY_STATUS))).toEqual(READY_STATUS);
    expect(() => parseStatus(EP, "<html>")).toThrow(EndpointError);
    expect(() => parseStatus(EP, "<html>")).toThrow(`weftd at ${EP} answered /status with something that is not JSON`);
    expect(() => parseStatus(EP, JSON.stringify({ phase: "running", ready: true }))).toThrow(/not weftd's status \(phase, ready, peers\)/);
    expect(() => parseStatus(EP, JSON.stringify({ ...READY_STATUS, peers: [{ peer: 1 }] }))).toThrow(/not weftd's status/);
    expect(parseStatus(EP, JSON.stringify(IPSEC_STATUS))).toEqual(IPSEC_STATUS);
    expect(() => parseStatus(EP, JSON.stringify({ ...IPSEC_STATUS, backend: { gauges: { sas_up: "2" } } }))).toThrow(/not weftd's status/);
    expect(() => parseStatus(EP, JSON.stringify({ ...IPSEC_STATUS, backend: "libipsec" }))).toThrow(/not weftd's status/);
  });
});
