import { describeBackendConformance } from "@weft/backend-testkit";
import { MANAGED_DAEMONS, WIREGUARD } from "@weft/kernel";
import { type FakeKernel, FakeWireGuardHost } from "@weft/kernel-testing";
import wireguard from "./index.js";

describeBackendConformance(wireguard, {
  encapsulates: true,
  families: ["v4", "v6", "dual"],
  config: { Type: "wireguard" },
  // Each node: its own FakeKernel (network namespace, the kit's default) and its own fake wireguard-go/wg host
  // (mount namespace); a restarted agent gets new ports over the same host.
  ports: () => {
    const host = new FakeWireGuardHost();
    return (c, kernel) => {
      const { daemons, wireguard: wg } = host.agent(kernel as FakeKernel);
      c.register(MANAGED_DAEMONS, { useValue: daemons });
      c.register(WIREGUARD, { useValue: wg });
    };
  },
  invalidConfigs: [
    { config: { Type: "wireguard", ListenPort: 0 }, path: "Backend.ListenPort" },
    { config: { Type: "wireguard", ListenPortV6: "51821" }, path: "Backend.ListenPortV6" },
    { config: { Type: "wireguard", MTU: 100 }, path: "Backend.MTU" },
    { config: { Type: "wireguard", PSK: "not-a-key" }, path: "Backend.PSK" },
    { config: { Type: "wireguard", PSK: 42 }, path: "Backend.PSK" },
    { config: { Type: "wireguard", PersistentKeepaliveInterval: -1 }, path: "Backend.PersistentKeepaliveInterval" },
    { config: { Type: "wireguard", Mode: "both" }, path: "Backend.Mode" },
  ],
  malformedPeerData: [null, 42, "key", {}, { PublicKey: "abc" }, { PublicKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", Port: 0 }, { PublicKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", Port: "51820" }],
  preflightRejects: [
    { name: "the same port for both devices in Mode separate", family: "dual", config: { Type: "wireguard", ListenPort: 5000, ListenPortV6: 5000 }, iface: { address: "198.18.0.1/24", address6: "2001:2::1/64" }, error: "Backend.ListenPort and Backend.ListenPortV6" },
    { name: "an underlay MTU that leaves IPv6 less than 1280", family: "v6", config: { Type: "wireguard", MTU: 1300 }, iface: { address6: "2001:2::1/64" }, error: "below IPv6's minimum 1280" },
    { name: "IPv6 enabled, no IPv6 address for peers to reach", family: "dual", iface: { address: "198.18.0.1/24" }, error: "no IPv6 address" },
    { name: "Mode ipv6 without an IPv6 address", family: "v4", config: { Type: "wireguard", Mode: "ipv6" }, iface: { address: "198.18.0.1/24" }, error: "Backend.Mode is ipv6" },
  ],
});
