import { describeBackendConformance } from "@weft/backend-testkit";
import vxlan from "./index.js";

describeBackendConformance(vxlan, {
  encapsulates: true,
  families: ["v4", "v6", "dual"],
  config: { Type: "vxlan", VNI: 1 },
  invalidConfigs: [
    { config: { Type: "vxlan", VNI: 0 }, path: "Backend.VNI" },
    { config: { Type: "vxlan", VNI: 16777216 }, path: "Backend.VNI" },
    { config: { Type: "vxlan", VNI: "1" }, path: "Backend.VNI" },
    { config: { Type: "vxlan", Port: 70000 }, path: "Backend.Port" },
    { config: { Type: "vxlan", MTU: 100 }, path: "Backend.MTU" },
    { config: { Type: "vxlan", DirectRouting: "yes" }, path: "Backend.DirectRouting" },
    { config: { Type: "vxlan", learning: 1 }, path: "Backend.Learning" },
  ],
  malformedPeerData: [null, 42, "aa:bb:cc:dd:ee:ff", {}, { VNI: 1 }, { VNI: 1, VtepMAC: "zz:zz" }, { VNI: 1, VtepMAC: "01:00:5e:00:00:01" }, { VNI: 2, VtepMAC: "02:00:00:00:00:01" }],
  // Valid for the schema, impossible on the node: refused before the agent takes a lease.
  preflightRejects: [
    { name: "a VNI that makes weft-v6.<VNI> longer than 15 characters", family: "dual", config: { Type: "vxlan", VNI: 10_000_000 }, iface: { address: "198.18.0.1/24", address6: "2001:2::1/64" }, error: "Backend.VNI 10000000" },
    { name: "an underlay MTU that leaves IPv6 less than 1280", family: "v6", config: { Type: "vxlan", MTU: 1300 }, iface: { address6: "2001:2::1/64" }, error: "below IPv6's minimum 1280" },
    { name: "IPv6 enabled, no IPv6 address to send from", family: "dual", iface: { address: "198.18.0.1/24" }, error: "no IPv6 address to send VXLAN from" },
    { name: "IPv4 enabled, no IPv4 address to send from", family: "v4", iface: { address6: "2001:2::1/64" }, error: "no IPv4 address to send VXLAN from" },
  ],
});
