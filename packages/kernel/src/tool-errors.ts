/**
 * One classification for every program a kernel port runs (iproute2, wg, ethtool, iptables-restore, nft,
 * swanctl...): a finished run with a non-zero exit becomes a typed error, the same way in every port (STYLE 4).
 *
 *   - the program is not installed -> WeftError PROCESS_MISSING naming the Debian package to install. The
 *     runner reports ENOENT itself; through `ip netns exec` (tests, several agents per host) it shows up as
 *     ip's own "exec of ... failed" and exit 255, through a shell as exit 127 — both are recognised here;
 *   - any other failure -> KernelError with a KernelErrorCode (exists / not found / invalid / permission /
 *     transient / unsupported, else KERNEL_FAILED), from the tool's own rules first, then the errno and
 *     extack texts every tool prints (classifyKernelMessage), and the message
 *     `<command> exited <code>: <first stderr line>`.
 *
 * Ports pass their tool-specific texts as `rules` (wg's "Unable to access interface: Protocol not supported"
 * means the device is gone, not that something is unsupported); everything else is shared.
 */
import { WeftError, errorMessage } from "@weft/core";
import { classifyKernelMessage } from "./linux/classify.js";
import { KernelError, type KernelErrorCode, type KernelOp } from "./port.js";
import type { RunResult } from "./process.js";

/** Debian package that ships each program we are known to start (for PROCESS_MISSING messages). */
const DEBIAN_PACKAGE: Readonly<Record<string, string>> = {
  ip: "iproute2",
  bridge: "iproute2",
  tc: "iproute2",
  ss: "iproute2",
  etcd: "etcd-server",
  etcdctl: "etcd-client",
  wg: "wireguard-tools",
  "wireguard-go": "wireguard-go",
  swanctl: "strongswan-swanctl",
  charon: "strongswan-charon",
  nft: "nftables",
  iptables: "iptables",
  "iptables-restore": "iptables",
  "iptables-save": "iptables",
  ip6tables: "iptables",
  "ip6tables-restore": "iptables",
  "ip6tables-save": "iptables",
  ping: "iputils-ping",
  iperf3: "iperf3",
  ethtool: "ethtool",
  sysctl: "procps",
  conntrack: "conntrack",
  podman: "podman",
  nsenter: "util-linux",
  unshare: "util-linux",
};

function baseName(file: string): string {
  const slash = file.lastIndexOf("/");
  return slash >= 0 ? file.slice(slash + 1) : file;
}

/** The Debian package that ships `file` (a name or a path), when Weft knows it. */
export function debianPackageOf(file: string): string | undefined {
  return DEBIAN_PACKAGE[baseName(file)];
}

/** The PROCESS_MISSING error for `file`, with the install hint (`apt-get install ... <package>`). */
export function processMissingError(file: string, cause?: unknown): WeftError {
  const pkg = debianPackageOf(file);
  const fix = pkg
    ? `install it: apt-get install -y --no-install-recommends ${pkg}`
    : `install the Debian package that provides "${baseName(file)}" or fix PATH`;
  return new WeftError("PROCESS_MISSING", `program "${file}" not found on PATH; ${fix}`, { cause });
}

/** The first non-blank line of `text`, trimmed ("" when there is none). */
export function firstLine(text: string): string {
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (t !== "") return t;
  }
  return "";
}

/** `file args...` as one line for messages, cut at 200 characters. */
export function describeCommand(file: string, args: readonly string[]): string {
  const shown = [file, ...args].join(" ");
  return shown.length > 200 ? `${shown.slice(0, 197)}...` : shown;
}

/**
 * True when a run that resolved (`reject: false`) shows that the program itself was not found: the ENOENT
 * `ip netns exec` prints with exit 255, or a shell's exit 127.
 */
export function isToolMissing(result: Pick<RunResult, "exitCode" | "stderr">): boolean {
  if (result.exitCode === 0) return false;
  if (/exec of "[^"]*" failed: No such file or directory/.test(result.stderr)) return true;
  return result.exitCode === 127 && /not found|No such file/i.test(result.stderr);
}

/** Tool-specific texts, tried in order before the shared ones: the first pattern that matches gives the code. */
export type ToolErrorRules = ReadonlyArray<readonly [RegExp, KernelErrorCode]>;

/** The KernelErrorCode for a tool's error text: `rules` first, then the texts every tool prints. */
export function classifyToolMessage(text: string, rules: ToolErrorRules = []): KernelErrorCode {
  for (const [re, code] of rules) if (re.test(text)) return code;
  return classifyKernelMessage(text);
}

/** Options of toolError. */
export interface ToolErrorOptions {
  /** Tool-specific texts tried before the shared ones. */
  readonly rules?: ToolErrorRules;
  /** How the command is named in the message; `file args...` (cut at 200 characters) when unset. */
  readonly command?: string;
  /** The kernel op the run carried out, attached to the KernelError. */
  readonly operation?: KernelOp;
  /** Appended to the message, e.g. the payload line a restore rejected. */
  readonly suffix?: string;
}

/**
 * The error for a finished run of `file args` that failed: PROCESS_MISSING (naming the Debian package) when
 * the program is not there, otherwise a KernelError classified from stderr (stdout when stderr is empty),
 * with the message `<command> exited <code>: <first line>`. Call it only when `result.exitCode !== 0`.
 */
export function toolError(file: string, args: readonly string[], result: RunResult, options: ToolErrorOptions = {}): WeftError {
  if (isToolMissing(result)) return processMissingError(file, result);
  const text = result.stderr.trim() !== "" ? result.stderr : result.stdout;
  const code = classifyToolMessage(text, options.rules);
  const detail = firstLine(text);
  const command = options.command ?? describeCommand(file, args);
  const message = `${command} exited ${result.exitCode}${detail ? `: ${detail}` : ""}${options.suffix ?? ""}`;
  return new KernelError(code, message, options.operation, { cause: result });
}

/**
 * `err` as a KernelError, for an OpResult: a KernelError as it is, anything else (PROCESS_MISSING, a timeout,
 * a runner failure) as KERNEL_FAILED with `context: <its message>` and the original as cause.
 */
export function asKernelError(err: unknown, context: string, operation?: KernelOp): KernelError {
  if (err instanceof KernelError) return err;
  return new KernelError("KERNEL_FAILED", `${context}: ${errorMessage(err)}`, operation, { cause: err });
}
