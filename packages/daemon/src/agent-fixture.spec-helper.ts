/**
 * What the Agent unit specs share: a node's fake kernel with its underlay (eth0, 198.18.0.x/24, a default
 * route), and weftd's flags for a kube-mode agent whose files live in one directory.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { FakeKernel } from "@weft/kernel-testing";
import { type Flags, parseFlags } from "./flags.js";

/** Gives `kernel` the node's underlay: eth0 up at MTU 1500 with `address`/24 and a default route. */
export function withUnderlay<K extends FakeKernel>(kernel: K, address = "198.18.0.1"): K {
  kernel.addExternalLink({ name: "eth0", kind: "veth", veth: { peer: "eth0-peer" }, up: true, mtu: 1500 });
  kernel.addExternalAddress({ dev: "eth0", address: `${address}/24` });
  kernel.addExternalRoute({ family: "v4", dst: "0.0.0.0/0", gateway: "198.18.0.254", dev: "eth0" });
  return kernel;
}

/** A node's fake kernel (ip_forward off) with its underlay. */
export function nodeKernel(address = "198.18.0.1"): FakeKernel {
  return withUnderlay(new FakeKernel({ sysctls: { "net.ipv4.ip_forward": "0" } }), address);
}

/** Writes `netConf` to `<dir>/net-conf.json` and returns the flags of a kube-mode agent keeping its files in `dir`. */
export function kubeAgentFlags(dir: string, netConf: unknown): Flags {
  writeFileSync(join(dir, "net-conf.json"), JSON.stringify(netConf));
  return parseFlags([
    "--kube-subnet-mgr",
    "--net-config-path", join(dir, "net-conf.json"),
    "--subnet-file", join(dir, "subnet.env"),
    "--state-dir", join(dir, "state"),
    "--iface", "eth0",
    "--resync-interval", "1",
  ]);
}
