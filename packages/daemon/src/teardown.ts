/**
 * `weftd --teardown`: removes everything Weft owns on this node — devices with the owned prefix, routes with
 * Weft's protocol mark, their neighbours and FDB entries, both kinds of traffic rules, and subnet.env. Nothing
 * that Weft did not mark is touched. The store lease is left to expire (or be reclaimed by this node).
 */
import "reflect-metadata";
import { LOGGER, type Logger, STATE_DIR } from "@weft/core";
import { KERNEL, type KernelPort, type ProcessRunner, linuxNetfilter, registerLinuxPorts } from "@weft/kernel";
import { DatapathEngine, registerDatapath } from "@weft/reconcile";
import { container as rootContainer } from "tsyringe";
import { BUILTIN_BACKENDS } from "./builtins.js";
import type { Flags } from "./flags.js";
import { removeSubnetFile } from "./subnet-file.js";
import { cleanupOtherMode, trafficNetfilterOptions } from "./traffic/index.js";

export async function teardown(deps: { flags: Flags; logger: Logger; kernel: KernelPort; runner: ProcessRunner }): Promise<void> {
  const c = rootContainer.createChildContainer();
  c.register(LOGGER, { useValue: deps.logger });
  c.register(KERNEL, { useValue: deps.kernel });
  c.register(STATE_DIR, { useValue: deps.flags["state-dir"] });
  registerLinuxPorts(c, deps.runner, deps.logger);
  // The built-in backends' own kinds go too, through their reconcilers (wireguard's wg-device ends its
  // wireguard-go by the PID in the state dir). Registering binds their reconcilers; no backend is started.
  for (const m of BUILTIN_BACKENDS) m.register(c);
  registerDatapath(c);
  const report = await c.resolve(DatapathEngine).teardown();
  // Cleaning up "the other mode" of each mode removes both.
  const netfilter = (mode: "iptables" | "nftables") => linuxNetfilter(mode, deps.runner, trafficNetfilterOptions());
  await cleanupOtherMode("iptables", netfilter);
  await cleanupOtherMode("nftables", netfilter);
  removeSubnetFile(deps.flags["subnet-file"]);
  const removed = report.kinds.reduce((n, k) => n + k.removed, 0);
  deps.logger.info("teardown complete", { removed, failures: report.failures });
  if (report.failures > 0) throw new Error(`${report.failures} kernel objects could not be removed; see the log above`);
}
