/**
 * Property-based test of what weftctl reads from weftd (issue 15): any /status text is weftd's status or a one-line
 * EndpointError; whatever is accepted renders (status, peers, --json) with no control character a terminal acts on,
 * one table line per peer, and --json gives back exactly what weftd sent.
 */
import { fc, fuzz, hostileJsonText } from "@weft/fuzz";
import { describe, expect, it } from "vitest";
import { safeJson } from "./escape.js";
import { EndpointError } from "./http-client.js";
import { renderPeers } from "./peers.js";
import { parseStatus, renderStatus } from "./status.js";

const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;
const KEYS = ["phase", "ready", "reason", "subnet", "ipv6Subnet", "publicIP", "publicIPv6", "backendType", "backend", "mtu", "peers", "peer", "state"];

// Short hostile strings (every code unit, escapes, bidi); the kit's hostileString adds 100 kB strings, which cost
// minutes at 10,000 cases here without finding more (the escaping is per character).
const text = fc.oneof(fc.string({ maxLength: 40, unit: "binary" }), fc.string({ maxLength: 20, unit: "grapheme" }), fc.constantFrom("A".repeat(5000), "running", "198.19.1.0/24", "programmed", "failed", "\u001b]0;x\u0007", "a\nb", "\u202e", "\u009b1m"));
const peer = fc.record({ peer: text, state: text, publicIP: fc.option(text, { nil: undefined }), reason: fc.option(text, { nil: undefined }) }, { requiredKeys: ["peer", "state"] });
const statusLike = fc
  .record(
    {
      phase: text,
      ready: fc.boolean(),
      reason: text,
      subnet: text,
      publicIP: text,
      backendType: text,
      backend: fc.record({ datapath: text, reason: text, gauges: fc.array(fc.tuple(text, fc.integer()), { maxLength: 3 }).map((e) => Object.fromEntries(e)) }, { requiredKeys: [] }),
      mtu: fc.integer({ min: 0, max: 9000 }),
      peers: fc.array(peer, { maxLength: 6 }),
    },
    { requiredKeys: ["phase", "ready", "peers"] },
  )
  .map((s) => JSON.stringify(s));

describe("weftctl on any /status", () => {
  it("accepts weftd's status or says why in one EndpointError line; what it accepts renders without control characters", () => {
    fuzz("ctl: /status parse and render", fc.oneof({ weight: 3, arbitrary: statusLike }, { weight: 1, arbitrary: hostileJsonText(KEYS) }), (body) => {
      let s;
      try {
        s = parseStatus("http://127.0.0.1:8081", body);
      } catch (err) {
        expect(err).toBeInstanceOf(EndpointError);
        expect((err as Error).message).not.toMatch(/\n/);
        return;
      }
      const out = renderStatus({ endpoint: "http://127.0.0.1:8081", status: s, readyz: { ready: s.ready, reason: s.reason } });
      expect(out).not.toMatch(CONTROL);
      const table = renderPeers(s.peers);
      expect(table).not.toMatch(CONTROL);
      // One line per peer and the header (a newline inside a field is escaped, so it cannot add one).
      expect(table.split("\n").length - 1).toBe(s.peers.length === 0 ? 1 : s.peers.length + 1);
      const json = safeJson(s);
      expect(json).not.toMatch(CONTROL);
      expect(JSON.parse(json)).toEqual(JSON.parse(JSON.stringify(s)));
    });
  }, 240_000);
});
