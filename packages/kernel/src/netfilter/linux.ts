/** The Linux netfilter adapter of a mode, for the composition root (which holds the ProcessRunner). */
import type { ProcessRunner } from "../process.js";
import { IptablesNetfilter, type IptablesNetfilterOptions } from "./iptables.js";
import { NftablesNetfilter, type NftablesNetfilterOptions } from "./nftables.js";
import type { NetfilterMode, NetfilterPort } from "./port.js";

/** Both adapters' options (Weft's names, programs, timeouts); the traffic rules provide them. */
export interface LinuxNetfilterOptions {
  readonly iptables: IptablesNetfilterOptions;
  readonly nftables: NftablesNetfilterOptions;
}

/** IptablesNetfilter or NftablesNetfilter over `runner`, by mode. */
export function linuxNetfilter(mode: NetfilterMode, runner: ProcessRunner, options: LinuxNetfilterOptions): NetfilterPort {
  return mode === "nftables" ? new NftablesNetfilter(runner, options.nftables) : new IptablesNetfilter(runner, options.iptables);
}
