/**
 * Classification of iproute2 / kernel error text into KernelErrorCodes, done once, here (STYLE 4).
 *
 * The texts below were collected on this machine (iproute2 6.1, kernel 6.x) by running bad batch lines in a
 * scratch namespace. Several surprises, in the order they are matched:
 * - `ip tuntap add` of an existing name fails with "ioctl(TUNSETIFF): Device or resource busy": that is
 *   "exists", not a transient EBUSY.
 * - Address errors are extack texts, not errno strings: "Error: ipv4: Address already assigned.",
 *   "Error: ipv6: address not found.".
 * - A route whose IPv4 gateway is not reachable gives "Error: Nexthop has invalid gateway." (EINVAL); the same
 *   for IPv6 gives "RTNETLINK answers: No route to host" (EHOSTUNREACH). Both are the caller's fault: INVALID.
 * - A route via a down device gives "Error: Nexthop device is not up." / "Error: Device for nexthop is not up.".
 * - An FDB dst of the wrong family for the vxlan gives "Address family not supported by protocol": INVALID,
 *   although it contains "not supported".
 * - `link set X master Y` with a missing Y prints `Error: argument "Y" is wrong: Device does not exist`.
 */
import type { KernelErrorCode } from "../port.js";

const RULES: ReadonlyArray<readonly [RegExp, KernelErrorCode]> = [
  [/TUNSETIFF\): Device or resource busy/, "KERNEL_EXISTS"],
  [/File exists|already assigned|already exists/i, "KERNEL_EXISTS"],
  [/Address family not supported/i, "KERNEL_INVALID"],
  [/Unknown device type|not supported|Protocol not available/i, "KERNEL_UNSUPPORTED"],
  [/Operation not permitted|Permission denied/i, "KERNEL_PERMISSION"],
  [/No buffer space|Device or resource busy|Resource temporarily unavailable|Cannot allocate memory|timed out/i, "KERNEL_TRANSIENT"],
  [/No such process|No such file or directory|No such device|Cannot find device|does not exist|not found|Cannot open network namespace/i, "KERNEL_NOT_FOUND"],
  [
    /Invalid argument|invalid|is wrong|garbage|out of range|Network is unreachable|No route to host|is not up|Network is down|Cannot assign requested address|^Error: /im,
    "KERNEL_INVALID",
  ],
];

export function classifyKernelMessage(text: string): KernelErrorCode {
  for (const [re, code] of RULES) if (re.test(text)) return code;
  return "KERNEL_FAILED";
}
