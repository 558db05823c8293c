/**
 * The XFRM port: the kernel's IPsec security associations (states) and security policies, as `ip xfrm` shows
 * them, read and deleted one by one. Weft never adds XFRM objects (charon does, in kernel mode); it only finds
 * the ones it owns that no charon holds any more (a charon killed with -9 leaves its states and policies behind)
 * and deletes exactly those. One implementation runs `ip xfrm` through the ProcessRunner (./linux-xfrm.ts); the
 * stateful fake is @weft/kernel-testing's FakeXfrm; one contract suite (`describeXfrmPortContract`) runs on both.
 *
 * Keys are never read: states are listed with `nokeys`, and nothing here carries key material.
 */
import { createToken } from "@weft/core";

/** An XFRM mark (`mark 0x5/0xff`); both numbers. */
export interface XfrmMark {
  readonly value: number;
  readonly mask: number;
}

/** What identifies one state to the kernel (and to `ip xfrm state delete`). */
export interface XfrmStateId {
  readonly src: string;
  readonly dst: string;
  /** `esp`, `ah`, `comp`, ... */
  readonly proto: string;
  /** The SPI as a number (0 .. 2^32-1). */
  readonly spi: number;
  readonly mark?: XfrmMark;
}

/** One XFRM state (an SA) as the kernel reports it, without its keys. */
export interface XfrmState extends XfrmStateId {
  /** The request id that ties the state to its policies' templates (0 when none). */
  readonly reqid: number;
  /** `tunnel`, `transport`, ... */
  readonly mode: string;
  readonly ifId?: number;
}

/** What identifies one policy to `ip xfrm policy delete` (by its kernel index). */
export interface XfrmPolicyId {
  /** `in`, `out` or `fwd`. */
  readonly dir: string;
  /** The kernel's index of the policy (unique per direction while it exists). */
  readonly index: number;
  /** `main` (the default) or `sub`. */
  readonly ptype?: string;
  readonly mark?: XfrmMark;
  readonly ifId?: number;
}

/** One XFRM policy as the kernel reports it. */
export interface XfrmPolicy extends XfrmPolicyId {
  /** The selector's source and destination (CIDRs). */
  readonly src: string;
  readonly dst: string;
  /** The reqids of its templates, in order (empty for a policy without templates). */
  readonly reqids: readonly number[];
}

/**
 * Lists and deletes XFRM states and policies of this network namespace. Errors are classified once in the
 * adapter (tool-errors.ts): deleting what is not there is KERNEL_NOT_FOUND, a missing `ip` is PROCESS_MISSING.
 */
export interface XfrmPort {
  /** Every state (no keys). */
  listStates(): Promise<XfrmState[]>;
  /** Every policy (in, out, fwd; main and sub). */
  listPolicies(): Promise<XfrmPolicy[]>;
  /** Deletes one state. KERNEL_NOT_FOUND when there is none with that id. */
  deleteState(id: XfrmStateId): Promise<void>;
  /** Deletes one policy by direction and index. KERNEL_NOT_FOUND when there is none. */
  deletePolicy(id: XfrmPolicyId): Promise<void>;
}

/** The agent's XfrmPort. */
export const XFRM = createToken<XfrmPort>("weft.xfrm");
