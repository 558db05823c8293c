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
});
