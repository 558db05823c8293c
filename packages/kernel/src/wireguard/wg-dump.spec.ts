import { describe, expect, it } from "vitest";
import { parseWgDump } from "./wg-dump.js";

describe("wg show dump", () => {
  it("parses interface and peers", () => {
    const d = parseWgDump("priv\tpub\t51820\toff\nPK\t(none)\t[2001:2::2]:51821\t2001:2:0:102::/64,198.19.2.0/24\t0\t0\t0\toff\n");
    expect(d).toEqual({ publicKey: "pub", listenPort: 51820, peers: [{ publicKey: "PK", endpoint: "[2001:2::2]:51821", allowedIPs: ["198.19.2.0/24", "2001:2:0:102::/64"], latestHandshake: 0, persistentKeepalive: 0 }] });
  });

  it("keeps a peer's PSK (to compare, never to log) and reads an interface without a key", () => {
    const d = parseWgDump("(none)\t(none)\t0\toff\nPK\tPSK=\t(none)\t(none)\t0\t0\t0\t25\n");
    expect(d).toEqual({ listenPort: 0, peers: [{ publicKey: "PK", presharedKey: "PSK=", allowedIPs: [], latestHandshake: 0, persistentKeepalive: 25 }] });
  });
});
