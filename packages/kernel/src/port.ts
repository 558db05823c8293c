/**
 * The Kernel port (DESIGN §4): the only way Weft reads or changes Linux networking state. Two implementations:
 * the Linux adapter (./linux/, iproute2 `-json` reads and `-batch` writes) and the stateful fake in
 * @weft/kernel-testing. One contract suite (@weft/kernel-testing `describeKernelPortContract`) runs against both.
 *
 * Writes are batched: `apply(ops)` attempts every op in order and reports one result per op (iproute2's
 * `-force` semantics), so a reconcile pass costs a handful of process spawns however many peers there are.
 * Errors are classified once, here, into WeftError codes.
 */
import {
  type AddressSpec,
  type FdbSpec,
  type Family,
  type Link,
  type LinkSpec,
  type NeighbourSpec,
  type RouteSpec,
  WeftError,
  createToken,
} from "@weft/core";

/**
 * One write to the kernel, applied in batches by KernelPort.apply. `*.add` fails with KERNEL_EXISTS when the
 * object exists, `*.replace` creates or overwrites it, `*.del` fails with KERNEL_NOT_FOUND when it is already
 * gone, `fdb.append` adds another destination for a MAC, and `link.set` changes an existing link.
 */
export type KernelOp =
  | { readonly op: "link.add"; readonly link: LinkSpec }
  /**
   * Changes mtu / up / master / address / addrGenMode of an existing link; unset fields are left alone.
   * `addrGenMode` is applied before `up`, so a link brought up with "none" never gets a link-local address.
   */
  | {
      readonly op: "link.set";
      readonly name: string;
      readonly mtu?: number;
      readonly up?: boolean;
      /** Bridge to enslave to; `null` releases the link from its master. */
      readonly master?: string | null;
      readonly address?: string;
      readonly addrGenMode?: LinkSpec["addrGenMode"];
    }
  | { readonly op: "link.del"; readonly name: string }
  | { readonly op: "addr.add" | "addr.replace" | "addr.del"; readonly addr: AddressSpec }
  | { readonly op: "route.add" | "route.replace" | "route.del"; readonly route: RouteSpec }
  | { readonly op: "neigh.add" | "neigh.replace" | "neigh.del"; readonly neigh: NeighbourSpec }
  | { readonly op: "fdb.add" | "fdb.append" | "fdb.replace" | "fdb.del"; readonly fdb: FdbSpec };

/**
 * The kernel subset of WeftErrorCode: how the adapter classifies a failure (the object exists, is not there,
 * was rejected, permission, a transient condition, unsupported, anything else).
 */
export type KernelErrorCode = "KERNEL_EXISTS" | "KERNEL_NOT_FOUND" | "KERNEL_INVALID" | "KERNEL_PERMISSION" | "KERNEL_TRANSIENT" | "KERNEL_UNSUPPORTED" | "KERNEL_FAILED";

/** A kernel operation failed, classified by `code`; `operation` is the op, when there is one. */
export class KernelError extends WeftError {
  override readonly name = "KernelError";
  constructor(
    override readonly code: KernelErrorCode,
    message: string,
    /** The operation that failed, when there is one. */
    readonly operation?: KernelOp,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** The outcome of one op of a batch. */
export type OpResult = { readonly ok: true } | { readonly ok: false; readonly error: KernelError };

/** An address as read back, with the device it is on. */
export interface Address extends AddressSpec {
  readonly family: Family;
  readonly scope?: string;
  /** Set when the kernel marks it deprecated (preferred lifetime over): usable, but not to be chosen for new use. */
  readonly deprecated?: true;
}

/** Which routes KernelPort.listRoutes returns. */
export interface RouteQuery {
  readonly family: Family;
  /** Table id, or "all"; main (254) when unset. */
  readonly table?: number | "all";
  /** Only routes with this protocol number. */
  readonly protocol?: number;
}

/**
 * The kernel's answer to `ip route get <dst>`: the route it would use, after policy rules, from whichever
 * table they chose, and the source address it would pick. (Which table is not part of it: the kernel reports
 * it only while custom rules exist.)
 */
export interface RouteLookup {
  /** "local" when `dst` is an address of this namespace (dev is then `lo`). */
  readonly type: "unicast" | "local";
  readonly dev: string;
  readonly gateway?: string;
  /** The source address the kernel would use (prefsrc). */
  readonly src?: string;
}

/** A neighbour as read back (state may be any kernel NUD state; only some are settable). */
export type Neighbour = Omit<NeighbourSpec, "state" | "lladdr"> & { readonly lladdr?: string; readonly state: string };

/**
 * Read-back conventions (both implementations, checked by the contract suite):
 * - addresses and CIDRs in canonical form (IPv6 compressed), MACs lower-case; IPv4 host routes as /32;
 * - routes always carry family, dst, type, table, protocol; scope when it is global/link/host; metric for
 *   IPv6 always (the kernel's default is 1024) and for IPv4 only when non-zero; no dev on blackhole /
 *   unreachable / prohibit routes; only those three types and unicast are listed (local, broadcast, ... and
 *   multipath routes are left out);
 * - neighbours: state lower-case ("permanent"); multicast and unspecified destinations (kernel-made NOARP
 *   entries) are left out;
 * - a `dev` that does not exist: KERNEL_NOT_FOUND (thrown).
 */
export interface KernelPort {
  /** Every link in the namespace, Weft's or not. */
  listLinks(): Promise<Link[]>;
  /** Addresses on `dev`, or on every link when `dev` is unset. */
  listAddresses(dev?: string): Promise<Address[]>;
  /** Routes of one family matching `query`. */
  listRoutes(query: RouteQuery): Promise<RouteSpec[]>;
  /**
   * The route the kernel would take to the address `dst` (`ip route get`): policy rules and every table
   * considered. Undefined when there is no usable route (none, or an unreachable, prohibit or blackhole one).
   * FakeKernel models no policy rules: it answers from its addresses and the main table.
   */
  routeGet(dst: string): Promise<RouteLookup | undefined>;
  /** Neighbour entries, optionally of one device and one family. */
  listNeighbours(query: { readonly dev?: string; readonly family?: Family }): Promise<Neighbour[]>;
  /** Forwarding database entries of `dev`. */
  listFdb(query: { readonly dev: string }): Promise<FdbSpec[]>;
  /** Attempts every op in order; one result per op. Never throws for a failed op, only for a broken transport. */
  apply(ops: readonly KernelOp[]): Promise<OpResult[]>;
  /** `net.ipv4.ip_forward` style keys. Missing key: KERNEL_NOT_FOUND. */
  getSysctl(key: string): Promise<string>;
  /** Sets a sysctl (`net.ipv4.ip_forward` style key). */
  setSysctl(key: string, value: string): Promise<void>;
}

/** The KernelPort of the agent's network namespace. */
export const KERNEL = createToken<KernelPort>("weft.kernel");

/** A short, human-readable form of an op for error messages and logs (iproute2-like; never executed). */
export function describeOp(op: KernelOp): string {
  switch (op.op) {
    case "link.add":
      return `link add ${op.link.name} type ${op.link.kind}`;
    case "link.set": {
      const parts = [`link set ${op.name}`];
      if (op.mtu !== undefined) parts.push(`mtu ${op.mtu}`);
      if (op.address !== undefined) parts.push(`address ${op.address}`);
      if (op.master !== undefined) parts.push(op.master === null ? "nomaster" : `master ${op.master}`);
      if (op.addrGenMode !== undefined) parts.push(`addrgenmode ${op.addrGenMode}`);
      if (op.up !== undefined) parts.push(op.up ? "up" : "down");
      return parts.join(" ");
    }
    case "link.del":
      return `link del ${op.name}`;
    case "addr.add":
    case "addr.replace":
    case "addr.del":
      return `addr ${op.op.slice(5)} ${op.addr.address} dev ${op.addr.dev}`;
    case "route.add":
    case "route.replace":
    case "route.del": {
      const r = op.route;
      const parts = [`route ${op.op.slice(6)}`];
      if (r.type && r.type !== "unicast") parts.push(r.type);
      parts.push(r.dst);
      if (r.gateway) parts.push(`via ${r.gateway}`);
      if (r.dev) parts.push(`dev ${r.dev}`);
      if (r.table !== undefined) parts.push(`table ${r.table}`);
      if (r.protocol !== undefined) parts.push(`proto ${r.protocol}`);
      if (r.metric !== undefined) parts.push(`metric ${r.metric}`);
      return parts.join(" ");
    }
    case "neigh.add":
    case "neigh.replace":
    case "neigh.del":
      return `neigh ${op.op.slice(6)} ${op.neigh.ip} dev ${op.neigh.dev}`;
    case "fdb.add":
    case "fdb.append":
    case "fdb.replace":
    case "fdb.del":
      return `fdb ${op.op.slice(4)} ${op.fdb.mac} dev ${op.fdb.dev}${op.fdb.dst ? ` dst ${op.fdb.dst}` : ""}`;
  }
}

/** Throws the first failure of a batch (for callers that want all-or-error semantics). */
export function throwOnFailure(results: readonly OpResult[]): void {
  for (const r of results) if (!r.ok) throw r.error;
}
