/**
 * The `ip xfrm` parsers on text as iproute2 6.1 prints it. Policies are also covered on a real kernel by the
 * XfrmPort contract (kernel-testing, netns tier); states only here, because these dev kernels cannot hold an ESP
 * state (the state text below is what `ip xfrm state list nokeys` prints for a charon SA with UDP encapsulation).
 */
import { describe, expect, it } from "vitest";
import { parseXfrmPolicies, parseXfrmStates } from "./linux-xfrm.js";

const STATES = `src 198.18.0.1 dst 198.18.0.2
\tproto esp spi 0xc5e4d2a1 reqid 1459748866 mode tunnel
\treplay-window 0 flag af-unspec
\taead rfc4106(gcm(aes)) 128
\tencap type espinudp sport 4500 dport 4500 addr 0.0.0.0
\tanti-replay context: seq 0x0, oseq 0x1a, bitmap 0x00000000
src 198.18.0.2 dst 198.18.0.1
\tproto esp spi 0x0000fe17 reqid 3 mode tunnel
\treplay-window 32 flag af-unspec
\tmark 0x5/0xff
\tif_id 0x77
`;

const POLICIES = `src 198.19.1.0/24 dst 198.19.2.0/24 uid 0
\tdir out action allow index 1 priority 375423 ptype main share any flag  (0x00000000)
\tlifetime config:
\t  limit: soft (INF)(bytes), hard (INF)(bytes)
\tlifetime current:
\t  0(bytes), 0(packets)
\t  add 2026-12-03 17:13:23 use -
\ttmpl src 198.18.0.1 dst 198.18.0.2
\t\tproto esp spi 0x00000000(0) reqid 1459748866(0x57020002) mode tunnel
\t\tlevel required share any
\t\tenc-mask ffffffff auth-mask ffffffff comp-mask ffffffff
src 198.19.3.0/24 dst 198.19.4.0/24 proto tcp dport 80 uid 0
\tdir fwd action allow index 10 priority 0 ptype main share any flag  (0x00000000)
\tmark 0x5/0xff
\ttmpl src 198.18.0.2 dst 198.18.0.1
\t\tproto esp spi 0x00000000(0) reqid 7(0x00000007) mode tunnel
\tif_id 0x77
src 0.0.0.0/0 dst 0.0.0.0/0 uid 0
\tsocket in action allow index 67 priority 0 ptype main share any flag  (0x00000000)
src ::/0 dst ::/0 uid 0
\tdir in action block index 20 priority 9 ptype sub share any flag  (0x00000000)
`;

describe("ip xfrm text", () => {
  it("states: addresses, proto, SPI, reqid, mode, mark and if_id; nothing else", () => {
    expect(parseXfrmStates(STATES)).toEqual([
      { src: "198.18.0.1", dst: "198.18.0.2", proto: "esp", spi: 0xc5e4d2a1, reqid: 1459748866, mode: "tunnel" },
      { src: "198.18.0.2", dst: "198.18.0.1", proto: "esp", spi: 0xfe17, reqid: 3, mode: "tunnel", mark: { value: 5, mask: 0xff }, ifId: 0x77 },
    ]);
    expect(parseXfrmStates("")).toEqual([]);
  });

  it("policies: direction, index, ptype, selector, template reqids, mark and if_id; socket policies are not listed", () => {
    expect(parseXfrmPolicies(POLICIES)).toEqual([
      { src: "198.19.1.0/24", dst: "198.19.2.0/24", dir: "out", index: 1, ptype: "main", reqids: [0x57020002] },
      { src: "198.19.3.0/24", dst: "198.19.4.0/24", dir: "fwd", index: 10, ptype: "main", reqids: [7], mark: { value: 5, mask: 0xff }, ifId: 0x77 },
      { src: "::/0", dst: "::/0", dir: "in", index: 20, ptype: "sub", reqids: [] },
    ]);
  });
});
