/**
 * IpsecPort: IKE connections, shared keys and security associations of one strongSwan charon, reached through
 * its VICI socket (the adapter, ViciIpsec, speaks VICI itself; see ./vici.ts for why not swanctl), plus the one
 * kernel question an IPsec backend must ask first: can this kernel do ESP at all?
 *
 * Every call names the VICI socket of the charon it talks to: a node runs its own charon with its own socket
 * (./charon.ts), and several agents on one machine (the netns lab) each have theirs.
 *
 * Errors are classified once, here:
 *   - no socket file / a stale one (charon gone) / no answer -> KernelError KERNEL_TRANSIENT ("charon is not
 *     running"): the daemon reconciler restarts charon, the next pass loads again;
 *   - charon refuses a connection (`success: no`, e.g. an unknown proposal) -> KERNEL_INVALID with charon's own
 *     errmsg; the backend translates it into a line naming its config key;
 *   - unload/terminate of something charon does not have -> KERNEL_NOT_FOUND (a remove that succeeds).
 * A shared key's secret is sent over the socket only: never in argv, a log line, an error or a file here.
 */
import { createToken } from "@weft/core";

/** One IKEv2 connection with one tunnel-mode CHILD_SA, PSK-authenticated, as Weft loads it. */
export interface IpsecConnection {
  /** Connection name; the CHILD_SA has the same name. */
  readonly name: string;
  readonly localAddr: string;
  readonly remoteAddr: string;
  /** Traffic selectors (CIDRs) of the CHILD_SA. */
  readonly localTs: readonly string[];
  readonly remoteTs: readonly string[];
  /** IKE proposal (e.g. `aes256-sha256-modp4096`); desired only, charon does not report it back. */
  readonly ikeProposal?: string;
  /** ESP proposal of the CHILD_SA; desired only. */
  readonly espProposal?: string;
  /** Force UDP encapsulation (NAT-T) even without NAT; desired only. */
  readonly encap?: boolean;
  /** This side starts the SA when the connection is loaded (start_action start); else it only responds. */
  readonly initiator?: boolean;
  /** Seconds between dead-peer checks (default 10); a dead peer's SA is restarted by the initiator. */
  readonly dpdDelay?: number;
  /**
   * A fixed reqid for the CHILD_SA (charon's `reqid`; default: one charon allocates, counting from 1). In kernel
   * mode it is on every XFRM state and policy template of the CHILD_SA: how their owner finds them again. Desired
   * only, charon does not report it back with the connection (it does with each CHILD_SA).
   */
  readonly reqid?: number;
}

/** A CHILD_SA as charon reports it. */
export interface IpsecChildSa {
  readonly name: string;
  /** INSTALLED when it carries traffic; also REKEYING, CREATED, ... */
  readonly state: string;
  readonly localTs: readonly string[];
  readonly remoteTs: readonly string[];
  /** ESP in UDP (NAT-T or forced encapsulation; always with kernel-libipsec). */
  readonly encap: boolean;
  /** The reqid its XFRM states and policy templates carry (kernel mode). */
  readonly reqid?: number;
  /** Its inbound and outbound SPIs (the XFRM states' `spi`), when charon reports them. */
  readonly spiIn?: number;
  readonly spiOut?: number;
}

/** An IKE_SA as charon reports it, with its CHILD_SAs. */
export interface IpsecSa {
  /** Name of the connection it belongs to. */
  readonly connection: string;
  /** ESTABLISHED when up; CONNECTING while it is being set up. */
  readonly state: string;
  readonly localAddr: string;
  readonly remoteAddr: string;
  readonly initiator: boolean;
  readonly children: readonly IpsecChildSa[];
}

/** What the kernel can do for IPsec. */
export interface KernelEspSupport {
  /** The kernel has the ESP transform (kernel-mode IPsec can carry packets). */
  readonly available: boolean;
  /** Why not, in one line (e.g. "kernel lacks ESP: ip xfrm state add ... proto esp: Requested type not found"). */
  readonly reason?: string;
}

/** Connections, shared keys and SAs of one charon, through its VICI socket. Faked by FakeIpsec in kernel-testing. */
export interface IpsecPort {
  /** charon's version string; throws KERNEL_TRANSIENT when it does not answer (also a readiness check). */
  version(socket: string): Promise<string>;
  /** Loads (or replaces, same name) a connection. KERNEL_INVALID with charon's reason when it refuses it. */
  loadConnection(socket: string, conn: IpsecConnection): Promise<void>;
  /** Unloads a connection and terminates its SAs. KERNEL_NOT_FOUND when charon has no such connection. */
  unloadConnection(socket: string, name: string): Promise<void>;
  /** The loaded connections (proposals, encap and initiator are not reported by charon and are left out). */
  listConnections(socket: string): Promise<IpsecConnection[]>;
  /** The IKE_SAs and their CHILD_SAs. */
  listSas(socket: string): Promise<IpsecSa[]>;
  /** Starts the connection's SAs without waiting for them (charon keeps trying). */
  initiate(socket: string, name: string): Promise<void>;
  /** Loads (or replaces) an IKE pre-shared key that matches any peer identity. The secret goes over the socket only. */
  loadSharedKey(socket: string, id: string, secret: string): Promise<void>;
  /** KERNEL_NOT_FOUND when there is no key with that id. */
  unloadSharedKey(socket: string, id: string): Promise<void>;
  /** Ids of the loaded shared keys (never their secrets). */
  listSharedKeys(socket: string): Promise<string[]>;
  /** Whether the kernel of this network namespace has ESP (kernel mode) or not (then only kernel-libipsec works). */
  kernelEsp(): Promise<KernelEspSupport>;
  /**
   * Gives the charons this agent starts a private /var/run/charon.pid (a file in `runDir` bind-mounted over it in
   * the agent's own mount namespace), for labs that run several agents on one machine
   * (PRIVATE_CHARON_PIDFILE_ENV). CONFIG_INVALID when the agent shares its parent's or PID 1's mount namespace.
   */
  usePrivatePidFile(runDir: string): Promise<void>;
}

/** The agent's IpsecPort. */
export const IPSEC = createToken<IpsecPort>("weft.ipsec");
