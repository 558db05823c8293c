/**
 * Zero-process reads and writes of the node namespace's links through /sys/class/net and /proc/sys/net.
 *
 * Kernel facts this relies on:
 * - /sys shows the network namespace of whoever MOUNTED it. kubelet and podman run the plugin in the host
 *   namespace with the host's /sys; `ip netns exec` (the tests) remounts /sys for the target namespace. So these
 *   reads describe the namespace the plugin runs in. They are only a fast path: the batch that follows would
 *   still fail cleanly (EEXIST / ENODEV) if /sys lied.
 * - /proc/sys/net shows the namespace of the process that opens it: correct for the plugin's own namespace.
 * - /sys/class/net/<dev>/bridge exists only for bridges; /sys/class/net/<dev>/brport/hairpin_mode only for
 *   bridge ports; `flags` is hex with IFF_UP = 0x1.
 */
import { existsSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { basename } from "node:path";

export interface SysLink {
  readonly exists: boolean;
  readonly isBridge: boolean;
  readonly up: boolean;
  readonly mtu?: number;
  readonly mac?: string;
  /** Name of the master device (bridge), when enslaved. */
  readonly master?: string;
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return undefined;
  }
}

export function sysLink(name: string, root = "/sys/class/net"): SysLink {
  const dir = `${root}/${name}`;
  const flags = read(`${dir}/flags`);
  if (flags === undefined) return { exists: false, isBridge: false, up: false };
  const mtu = Number(read(`${dir}/mtu`));
  const mac = read(`${dir}/address`);
  let master: string | undefined;
  try {
    master = basename(readlinkSync(`${dir}/master`));
  } catch {
    // not enslaved
  }
  return {
    exists: true,
    isBridge: existsSync(`${dir}/bridge`),
    up: (Number.parseInt(flags, 16) & 0x1) === 1,
    ...(Number.isFinite(mtu) && mtu > 0 ? { mtu } : {}),
    ...(mac ? { mac } : {}),
    ...(master ? { master } : {}),
  };
}

/** Turns hairpin mode on for a bridge port (the bridge may then send a frame back out the port it came in on). */
export function setHairpin(port: string): void {
  writeFileSync(`/sys/class/net/${port}/brport/hairpin_mode`, "1");
}

/** Writes a /proc/sys key of the plugin's own namespace when its value differs; returns false if the key is missing. */
export function ensureProcSys(key: string, value: string): boolean {
  const path = `/proc/sys/${key}`;
  const cur = read(path);
  if (cur === undefined) return false;
  if (cur !== value) writeFileSync(path, value);
  return true;
}
