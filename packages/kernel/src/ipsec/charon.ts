/**
 * charon as a managed daemon (ManagedDaemonPort): where the binary is, the strongswan.conf Weft writes for it, and
 * the ManagedDaemonSpec that starts it with that file (STRONGSWAN_CONF), its own VICI socket and its own run
 * directory.
 *
 * What charon does that surprises (reference/linux-lab.md §6):
 *   - Its PID file is hard-coded to /var/run/charon.pid (no option). A second charon in the same mount namespace
 *     refuses to start ("charon already running"); the ManagedDaemonPort keeps its own PID file in the run
 *     directory and adopts by that.
 *   - With kernel-libipsec the TUN is always `ipsec0` (`ipsec%d`), ESP always goes in UDP 4500, and
 *     start_action=trap never fires (see vici-ipsec.ts).
 *   - The VICI socket file is not removed when charon exits: a stale file is removed before a start.
 *   - Without `flush_line = yes` its file log is block-buffered.
 * Weft's strongswan.conf loads an explicit plugin list (load_modular = no) so the machine's /etc/strongswan.d
 * changes nothing, and contains no secret (the PSK goes over VICI only).
 */
import { existsSync, mkdirSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { basename, delimiter, dirname, join } from "node:path";
import { WeftError } from "@weft/core";
import type { ManagedDaemonSpec } from "../daemon/port.js";
import { bindMount, isMountPoint, requireOwnMountNamespace } from "../mount-ns.js";
import type { ProcessRunner } from "../process.js";

/** Where Debian and other distributions install charon, after PATH (Flannel's list, reference/flannel.md §3.4.2). */
export const CHARON_LOCATIONS = ["/usr/lib/ipsec/charon", "/usr/libexec/ipsec/charon", "/usr/lib/strongswan/charon", "/usr/libexec/strongswan/charon"] as const;

/** The Debian packages a libipsec charon needs (kernel-libipsec is in libcharon-extra-plugins; aes-gcm and ecp in the standard plugins). */
export const CHARON_PACKAGES = "strongswan-charon libcharon-extra-plugins libstrongswan-standard-plugins";

/** How charon puts SAs into effect: kernel XFRM (`kernel`) or userspace ESP through the `ipsec0` TUN (`libipsec`). */
export type CharonDatapath = "kernel" | "libipsec";

/** The TUN kernel-libipsec creates (its name is hard-coded in libipsec). */
export const LIBIPSEC_DEVICE = "ipsec0";
/** kernel-libipsec sets ipsec0's MTU to 1400 and reads packets into buffers of that size. */
export const LIBIPSEC_MTU = 1400;

/**
 * The charon executable: the first `charon` on PATH, then CHARON_LOCATIONS. Throws WeftError PROCESS_MISSING,
 * one line naming the Debian packages, when there is none.
 */
export function locateCharon(path = process.env.PATH ?? "", exists: (p: string) => boolean = existsSync): string {
  for (const dir of path.split(delimiter)) {
    if (dir && exists(join(dir, "charon"))) return join(dir, "charon");
  }
  for (const p of CHARON_LOCATIONS) if (exists(p)) return p;
  throw new WeftError(
    "PROCESS_MISSING",
    `ipsec: strongSwan's charon is not installed (not on PATH, nor in ${CHARON_LOCATIONS.join(", ")}); install it: apt-get install -y --no-install-recommends ${CHARON_PACKAGES}`,
  );
}

/** Files of one charon instance, all in its run directory. */
export interface CharonFiles {
  readonly runDir: string;
  readonly conf: string;
  readonly socket: string;
  readonly log: string;
}

export function charonFiles(runDir: string): CharonFiles {
  return { runDir, conf: join(runDir, "strongswan.conf"), socket: join(runDir, "charon.vici"), log: join(runDir, "charon-ike.log") };
}

/** The strongswan.conf Weft writes for a charon with `datapath`. No secret ever goes in it. */
export function charonConf(files: CharonFiles, datapath: CharonDatapath): string {
  const kernelPlugins = datapath === "libipsec" ? "kernel-libipsec kernel-netlink" : "kernel-netlink";
  return `# Written by weftd (backend ipsec); replaced on every start. Datapath: ${datapath}.
charon {
  load_modular = no
  load = random nonce openssl aes sha1 sha2 hmac gcm kdf pem pkcs1 x509 pubkey ${kernelPlugins} socket-default vici
  # Weft routes pod subnets itself (via ${LIBIPSEC_DEVICE} in libipsec mode); in kernel mode the XFRM policies catch the traffic.
  install_routes = ${datapath === "kernel" ? "yes" : "no"}
  retransmit_timeout = 1.0
  retransmit_base = 1.4
  retransmit_tries = 4
  plugins {
    vici {
      socket = unix://${files.socket}
    }
  }
  filelog {
    weft {
      path = ${files.log}
      default = 1
      ike = 1
      knl = 1
      time_format = %H:%M:%S
      flush_line = yes
    }
  }
  syslog {
    daemon {
      default = -1
    }
  }
}
`;
}

/**
 * Writes charon's strongswan.conf into its run directory (0700, file 0600) and removes a stale VICI socket;
 * call right before a start.
 */
export function prepareCharon(files: CharonFiles, datapath: CharonDatapath): void {
  mkdirSync(files.runDir, { recursive: true, mode: 0o700 });
  writeFileSync(files.conf, charonConf(files, datapath), { mode: 0o600 });
  rmSync(files.socket, { force: true });
}

/**
 * The ManagedDaemonSpec of a node's charon: detached (it outlives an agent restart, which adopts it), ready when
 * its VICI socket answers `ready`.
 */
export function charonDaemonSpec(options: {
  readonly runDir: string;
  readonly command: string;
  readonly ready?: () => Promise<boolean>;
  readonly readyTimeoutMs?: number;
}): ManagedDaemonSpec {
  const files = charonFiles(options.runDir);
  return {
    name: "charon",
    command: options.command,
    args: [],
    env: { STRONGSWAN_CONF: files.conf },
    runDir: options.runDir,
    detached: true,
    readyTimeoutMs: options.readyTimeoutMs ?? 10_000,
    ...(options.ready ? { ready: options.ready } : {}),
  };
}

/** Where charon writes its PID file, hard-coded (strings of the binary: `/var/run/charon.pid`). */
export const CHARON_PID_FILE = "/var/run/charon.pid";
/**
 * Environment variable for labs that run several agents on one machine, one per network namespace: when "1",
 * the agent bind-mounts a private file over /var/run/charon.pid in its OWN mount namespace (`ip netns exec`
 * gives each command one) before it starts charon, so each node's charon has its own PID file and the second
 * one does not refuse with "charon already running". Refused when the agent shares its parent's or PID 1's
 * mount namespace (it would change the machine's view).
 */
export const PRIVATE_CHARON_PIDFILE_ENV = "WEFT_IPSEC_PRIVATE_PIDFILE";

/**
 * Gives charons started by this process a private /var/run/charon.pid (see PRIVATE_CHARON_PIDFILE_ENV): binds
 * `<runDir>/charon.pid.private` over it, once per mount namespace. charon cannot unlink a mount point (EBUSY,
 * which it ignores); it truncates and rewrites the file instead, and truncates it when it exits.
 */
export async function usePrivateCharonPidFile(runDir: string, runner: ProcessRunner): Promise<void> {
  requireOwnMountNamespace(
    (shares) =>
      `${PRIVATE_CHARON_PIDFILE_ENV}=1 but the agent is not in a mount namespace of its own (it shares ${shares}, or it cannot tell): ` +
      `binding over ${CHARON_PID_FILE} would change it for the whole machine; run the agent in its own mount namespace (ip netns exec gives it one) or unset ${PRIVATE_CHARON_PIDFILE_ENV}`,
  );
  const dir = realpathSync(dirname(CHARON_PID_FILE));
  const target = join(dir, basename(CHARON_PID_FILE));
  // Already bound (an agent restarted in the same namespace): done.
  if (isMountPoint(target)) return;
  // A bind needs an existing target: an empty file is what charon itself leaves after a clean exit.
  if (!existsSync(target)) writeFileSync(target, "", { mode: 0o644 });
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const source = join(runDir, "charon.pid.private");
  if (!existsSync(source)) writeFileSync(source, "", { mode: 0o644 });
  await bindMount(runner, source, target);
}
