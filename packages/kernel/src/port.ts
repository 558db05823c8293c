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

export type KernelOp =
  | { readonly op: "link.add"; readonly link: LinkSpec }
  /** Changes mtu / up / master / address of an existing link; unset fields are left alone. */
  | {
      readonly op: "link.set";
      readonly name: string;
      readonly mtu?: number;
      readonly up?: boolean;
      /** Bridge to enslave to; `null` releases the link from its master. */
      readonly master?: string | null;
      readonly address?: string;
    }
  | { readonly op: "link.del"; readonly name: string }
  | { readonly op: "addr.add" | "addr.replace" | "addr.del"; readonly addr: AddressSpec }
  | { readonly op: "route.add" | "route.replace" | "route.del"; readonly route: RouteSpec }
  | { readonly op: "neigh.add" | "neigh.replace" | "neigh.del"; readonly neigh: NeighbourSpec }
  | { readonly op: "fdb.add" | "fdb.append" | "fdb.replace" | "fdb.del"; readonly fdb: FdbSpec };

export type KernelErrorCode = "KERNEL_EXISTS" | "KERNEL_NOT_FOUND" | "KERNEL_INVALID" | "KERNEL_PERMISSION" | "KERNEL_TRANSIENT" | "KERNEL_UNSUPPORTED" | "KERNEL_FAILED";

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

export type OpResult = { readonly ok: true } | { readonly ok: false; readonly error: KernelError };

/** An address as read back, with the device it is on. */
export interface Address extends AddressSpec {
  readonly family: Family;
  readonly scope?: string;
}

export interface RouteQuery {
  readonly family: Family;
  /** Table id, or "all"; main (254) when unset. */
  readonly table?: number | "all";
  /** Only routes with this protocol number. */
  readonly protocol?: number;
}

/** A neighbour as read back (state may be any kernel NUD state; only some are settable). */
export type Neighbour = Omit<NeighbourSpec, "state" | "lladdr"> & { readonly lladdr?: string; readonly state: string };

export interface KernelPort {
  listLinks(): Promise<Link[]>;
  listAddresses(dev?: string): Promise<Address[]>;
  listRoutes(query: RouteQuery): Promise<RouteSpec[]>;
  listNeighbours(query: { readonly dev?: string; readonly family?: Family }): Promise<Neighbour[]>;
  listFdb(query: { readonly dev: string }): Promise<FdbSpec[]>;
  /** Attempts every op in order; one result per op. Never throws for a failed op, only for a broken transport. */
  apply(ops: readonly KernelOp[]): Promise<OpResult[]>;
  /** `net.ipv4.ip_forward` style keys. Missing key: KERNEL_NOT_FOUND. */
  getSysctl(key: string): Promise<string>;
  setSysctl(key: string, value: string): Promise<void>;
}

export const KERNEL = createToken<KernelPort>("weft.kernel");

/** Throws the first failure of a batch (for callers that want all-or-error semantics). */
export function throwOnFailure(results: readonly OpResult[]): void {
  for (const r of results) if (!r.ok) throw r.error;
}
