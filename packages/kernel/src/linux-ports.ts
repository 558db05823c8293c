/**
 * The Linux adapters of the kernel ports a backend may declare, bound in one place for every composition root
 * that builds a backend's container (weftd's agent through wireBackend, and `weftd --teardown`).
 */
import type { Logger } from "@weft/core";
import type { DependencyContainer } from "tsyringe";
import { MANAGED_DAEMONS } from "./daemon/port.js";
import { LinuxManagedDaemons } from "./daemon/linux-managed-daemons.js";
import { LinuxEthtool } from "./ethtool/linux-ethtool.js";
import { ETHTOOL } from "./ethtool/port.js";
import { IPSEC } from "./ipsec/port.js";
import { ViciIpsec } from "./ipsec/vici-ipsec.js";
import type { ProcessRunner } from "./process.js";
import { LinuxWireGuard } from "./wireguard/linux-wireguard.js";
import { WIREGUARD } from "./wireguard/port.js";
import { LinuxXfrm } from "./xfrm/linux-xfrm.js";
import { XFRM } from "./xfrm/port.js";

/**
 * Registers the Linux adapter of every kernel port a backend may declare (MANAGED_DAEMONS, WIREGUARD, IPSEC,
 * XFRM, ETHTOOL) in `container`, each over `runner`; `logger` gets the adapters' info lines. One instance per port
 * and call: an agent that restarts calls it again, and the new instances adopt what the old ones left running.
 */
export function registerLinuxPorts(container: DependencyContainer, runner: ProcessRunner, logger: Logger): void {
  container.register(MANAGED_DAEMONS, { useValue: new LinuxManagedDaemons({ runner, logger }) });
  container.register(WIREGUARD, { useValue: new LinuxWireGuard({ runner, logger }) });
  container.register(IPSEC, { useValue: new ViciIpsec(runner) });
  container.register(XFRM, { useValue: new LinuxXfrm(runner) });
  container.register(ETHTOOL, { useValue: new LinuxEthtool(runner) });
}
