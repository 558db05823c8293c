import { describeBackendConformance } from "@weft/backend-testkit";
import { afterAll, beforeAll } from "vitest";
import { FakeCharonHost, TEST_PSK, fakeCharonOnPath } from "./fake-charon.spec-helper.js";
import ipsec from "./index.js";

// One machine room for the whole suite: every node's charon is a fake process in one table, talking to one
// FakeIpsec (so the nodes' connections establish). The kernel lacks ESP here, as on the dev machines: libipsec.
const host = new FakeCharonHost();
let restorePath: () => void;
beforeAll(() => {
  restorePath = fakeCharonOnPath();
});
afterAll(() => restorePath());

describeBackendConformance(ipsec, {
  encapsulates: true,
  families: ["v4"],
  config: { Type: "ipsec", PSK: TEST_PSK },
  requiresPeerData: false,
  ports: () => host.ports,
  invalidConfigs: [
    { config: { Type: "ipsec" }, path: "Backend.PSK" },
    { config: { Type: "ipsec", PSK: "short" }, path: "Backend.PSK" },
    { config: { Type: "ipsec", PSK: 42 }, path: "Backend.PSK" },
    { config: { Type: "ipsec", PSK: TEST_PSK, PSKFile: "/etc/weft/psk" }, path: "Backend.PSKFile" },
    { config: { Type: "ipsec", PSKFile: "relative/psk" }, path: "Backend.PSKFile" },
    { config: { Type: "ipsec", PSK: TEST_PSK, UDPEncap: "yes" }, path: "Backend.UDPEncap" },
    { config: { Type: "ipsec", PSK: TEST_PSK, ESPProposal: "aes128 gcm16" }, path: "Backend.ESPProposal" },
    { config: { Type: "ipsec", PSK: TEST_PSK, Mode: "xfrm" }, path: "Backend.Mode" },
  ],
  preflightRejects: [
    { name: "IPv6 enabled (ipsec is IPv4 only)", family: "dual", iface: { address: "198.18.0.1/24", address6: "2001:2::1/64" }, error: "IPv6 is not supported" },
    { name: "an unreadable PSKFile", iface: { address: "198.18.0.1/24" }, config: { Type: "ipsec", PSKFile: "/nonexistent/weft-psk" }, error: "Backend.PSKFile \"/nonexistent/weft-psk\" cannot be read (ENOENT)" },
    { name: "an underlay MTU too small for libipsec's 1400-byte ipsec0", iface: { address: "198.18.0.1/24", mtu: 1450 }, error: "below the 1485" },
  ],
});
