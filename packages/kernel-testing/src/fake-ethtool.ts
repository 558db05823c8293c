/**
 * A stateful fake of the EthtoolPort. Devices come from a KernelPort when one is given (a device exists while
 * the kernel lists it, and its features live with its ifindex, so a device deleted and created again starts
 * with the defaults — exactly what makes a one-shot `ethtool -K` insufficient); otherwise from addDevice.
 * Fixed features refuse a change (KERNEL_UNSUPPORTED), unknown ones are KERNEL_INVALID, unknown devices
 * KERNEL_NOT_FOUND; `missing` makes every call fail as if ethtool were not installed.
 */
import { KernelError, type EthtoolPort, type KernelPort, type NicFeature, processMissingError } from "@weft/kernel";

/** Roughly what a veth or vxlan device reports (a few of ethtool's features). */
export const DEFAULT_NIC_FEATURES: Readonly<Record<string, NicFeature>> = {
  "rx-checksumming": { enabled: true, fixed: false },
  "tx-checksum-ipv4": { enabled: false, fixed: true },
  "tx-checksum-ip-generic": { enabled: true, fixed: false },
  "tx-checksum-ipv6": { enabled: false, fixed: true },
  "generic-segmentation-offload": { enabled: true, fixed: false },
  "generic-receive-offload": { enabled: false, fixed: false },
  "large-receive-offload": { enabled: false, fixed: true },
};

export interface FakeEthtoolOptions {
  /** Devices are the links of this kernel (by ifindex); without it, only those added with addDevice. */
  readonly kernel?: KernelPort;
  /** The features a device starts with; DEFAULT_NIC_FEATURES when unset. */
  readonly defaults?: Readonly<Record<string, NicFeature>>;
}

export class FakeEthtool implements EthtoolPort {
  /** Behave as if ethtool were not installed (every call: WeftError PROCESS_MISSING). */
  missing = false;
  private readonly kernel: KernelPort | undefined;
  private readonly defaults: Readonly<Record<string, NicFeature>>;
  /** Features by device key (`#<ifindex>` with a kernel, the name without). */
  private readonly state = new Map<string, Map<string, NicFeature>>();
  private readonly failures: Error[] = [];

  constructor(options: FakeEthtoolOptions = {}) {
    this.kernel = options.kernel;
    this.defaults = options.defaults ?? DEFAULT_NIC_FEATURES;
  }

  /** Adds a device (without a kernel), with the default features overridden by `features`. */
  addDevice(dev: string, features: Readonly<Record<string, NicFeature>> = {}): void {
    this.state.set(dev, new Map(Object.entries({ ...this.defaults, ...features })));
  }

  /** Removes a device added with addDevice. */
  removeDevice(dev: string): void {
    this.state.delete(dev);
  }

  /** The next call fails with `err` (fault injection), before anything is read or changed. */
  failNext(err: Error): void {
    this.failures.push(err);
  }

  /** A feature's current value, or "absent" when the device (or the feature) does not exist. */
  async stateOf(dev: string, feature: string): Promise<"on" | "off" | "absent"> {
    const f = (await this.device(dev))?.get(feature);
    return f === undefined ? "absent" : f.enabled ? "on" : "off";
  }

  async features(dev: string): Promise<ReadonlyMap<string, NicFeature>> {
    const d = await this.require("--show-features", dev);
    return new Map(d);
  }

  async setFeature(dev: string, feature: string, enabled: boolean): Promise<void> {
    const d = await this.require("--features", dev);
    const f = d.get(feature);
    if (!f) throw new KernelError("KERNEL_INVALID", `ethtool --features ${dev} ${feature}: no such feature`);
    if (f.enabled === enabled) return;
    if (f.fixed) throw new KernelError("KERNEL_UNSUPPORTED", `ethtool --features ${dev} ${feature} ${enabled ? "on" : "off"}: fixed by the driver`);
    d.set(feature, { ...f, enabled });
  }

  private async require(verb: string, dev: string): Promise<Map<string, NicFeature>> {
    const fault = this.failures.shift();
    if (fault) throw fault;
    if (this.missing) throw processMissingError("ethtool");
    const d = await this.device(dev);
    if (!d) throw new KernelError("KERNEL_NOT_FOUND", `ethtool ${verb} ${dev}: no such device`);
    return d;
  }

  private async device(dev: string): Promise<Map<string, NicFeature> | undefined> {
    if (!this.kernel) return this.state.get(dev);
    const link = (await this.kernel.listLinks()).find((l) => l.name === dev);
    if (!link) return undefined;
    const key = `#${link.index}`;
    let d = this.state.get(key);
    if (!d) {
      d = new Map(Object.entries(this.defaults));
      this.state.set(key, d);
    }
    return d;
  }
}
