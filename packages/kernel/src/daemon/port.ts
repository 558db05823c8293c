/**
 * ManagedDaemonPort: a supervised long-lived helper process of the datapath (wireguard-go, strongSwan's charon),
 * the one place Weft starts, finds, adopts and stops such a process. Shared by every backend that needs one.
 *
 * The rules it keeps (what the kernel and these daemons do that surprises):
 *   - A daemon may outlive the agent (`detached`): a restarted agent ADOPTS it instead of starting another, so
 *     the datapath it carries stays up. Adoption is by the PID recorded in the daemon's run directory, and only
 *     after checking that the PID is still that program with those arguments (PIDs are reused).
 *   - Stop is by that PID (TERM, then KILL after a grace period). Never by name.
 *   - A start that fails (exit before ready, not ready in time) is a KernelError whose message carries the
 *     daemon's own last log lines (never secrets: daemons here log no key material), and the next start waits
 *     out a backoff (KERNEL_TRANSIENT until then), so a crash loop does not spin.
 *   - Every file of a daemon lives in its own run directory (0700): PID file, log, sockets it is told to use.
 */
import { createToken } from "@weft/core";

/** What a managed daemon is: how to start it, where its files live and how to tell it is ready. */
export interface ManagedDaemonSpec {
  /** Unique per agent; names the PID and log files (`<runDir>/<name>.pid`, `<runDir>/<name>.log`). */
  readonly name: string;
  /** Program, found on PATH (or an absolute path). */
  readonly command: string;
  /** Every argument its own element; never a shell. */
  readonly args: readonly string[];
  /** Extra environment (e.g. STRONGSWAN_CONF); the agent's own is inherited. Values are never logged. */
  readonly env?: Readonly<Record<string, string>>;
  /** Directory for its PID file, log and sockets; created 0700. */
  readonly runDir: string;
  /**
   * How the agent knows the daemon is up and serving (its socket answers). Polled after a start until it
   * resolves true or `readyTimeoutMs` passes; also asked when adopting.
   */
  readonly ready?: () => Promise<boolean>;
  /** How long a start may take to become ready; default 5000 ms. */
  readonly readyTimeoutMs?: number;
  /**
   * What `ready` waits for, for error messages ("its UAPI socket answered"); default "it was ready". Makes a
   * failed start read `wireguard-go -f weft-wg exited (code 1) before its UAPI socket answered: <log tail>`.
   */
  readonly readiness?: string;
  /**
   * Runs right before the program is started (after the backoff check, and after a recorded process that is
   * alive but not ready was stopped): clears what a previous run left that the new one cannot reuse (a TUN
   * wireguard-go cannot attach to, a stale socket). Not run when a live, ready daemon is adopted.
   */
  readonly prepare?: () => Promise<void>;
  /** Keep it running when the agent exits (own session, stdio to the log file). */
  readonly detached?: boolean;
}

/** The parts of a spec that identify a daemon's files and process (what `stop` and `find` need at least). */
export type ManagedDaemonRef = Pick<ManagedDaemonSpec, "name" | "runDir" | "command" | "args">;

/** A daemon as found: running (with its PID), or not. */
export interface DaemonState {
  readonly name: string;
  readonly running: boolean;
  readonly pid?: number;
  /** True when this agent did not start it (an earlier agent did) and took it over. */
  readonly adopted?: boolean;
}

/** Starts, finds, adopts and stops managed daemons. Implemented in @weft/kernel; faked in @weft/kernel-testing. */
export interface ManagedDaemonPort {
  /**
   * The daemon recorded in its run directory, when that PID is alive (not a zombie) and still this program
   * with these arguments. Never starts or signals anything.
   */
  find(spec: ManagedDaemonRef): Promise<DaemonState>;
  /**
   * Adopts the running daemon (when `ready` says it serves) or starts it, then waits until `ready`.
   * Idempotent. A recorded process that is alive but not ready is stopped and replaced. Throws KernelError
   * (KERNEL_FAILED with the daemon's last log lines; KERNEL_TRANSIENT while the backoff after a failed start
   * runs — it doubles per consecutive failed start, capped, and resets after a good one; a daemon that died
   * after it was ready is restarted at once) or WeftError PROCESS_MISSING naming the Debian package when the
   * program is not installed.
   */
  ensure(spec: ManagedDaemonSpec): Promise<DaemonState>;
  /** Stops it by its recorded PID (TERM, then KILL); removes the PID file. Tolerant when it is not running. */
  stop(spec: ManagedDaemonRef): Promise<void>;
  /**
   * The daemon's last `lines` log lines (for error messages), blank lines and box-drawing banner lines left
   * out, joined with " | "; "" when there is no log.
   */
  logTail(spec: Pick<ManagedDaemonSpec, "name" | "runDir">, lines?: number): Promise<string>;
}

/** The agent's ManagedDaemonPort. */
export const MANAGED_DAEMONS = createToken<ManagedDaemonPort>("weft.managed-daemons");
