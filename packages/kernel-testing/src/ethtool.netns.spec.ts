/**
 * The EthtoolPort contract against the real ethtool, on a veth in a fresh network namespace per test. Needs
 * root: fails under CI=true without it.
 */
import { ExecaRunner, LinuxEthtool } from "@weft/kernel";
import { createNetns } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { NetnsRunner } from "./netns-runner.js";
import { describeEthtoolPortContract } from "./ethtool-contract.js";

const host = new ExecaRunner();

describeReal(
  "LinuxEthtool in a network namespace",
  () => {
    describeEthtoolPortContract("LinuxEthtool", async () => {
      const ns = await createNetns("we");
      try {
        await ns.ip(["link", "add", "wv0", "type", "veth", "peer", "name", "wv1"]);
      } catch (err) {
        await ns.destroy();
        throw err;
      }
      return { port: new LinuxEthtool(new NetnsRunner(host, ns.name)), dev: "wv0", cleanup: () => ns.destroy() };
    });
  },
  { tools: ["ethtool"] },
);
