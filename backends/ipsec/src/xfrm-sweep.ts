/**
 * Weft's XFRM leftovers in kernel mode: states and policies that carry Weft's reqids but that no charon holds any
 * more. charon removes its XFRM states and policies when it exits cleanly, but `kill -9` (or an OOM kill) leaves
 * them in the kernel: stale states, and policies that keep matching pod traffic for peers that may be gone
 * (Flannel leaves its policies behind the same way).
 *
 * Ownership mark: every Weft CHILD_SA has a fixed reqid, `0x57` ('W') in the top byte and the peer subnet's number
 * in the low 24 bits (reqidFor), so each connection of a node has its own, and charon puts it on every XFRM state
 * and policy template of the SA. charon's own reqids count up from 1 and other IKE daemons' from small numbers
 * too; a state or policy without a Weft reqid (or a policy with any template that is not Weft's) is never
 * touched.
 *
 * Held: a state is held while charon reports a CHILD_SA with its SPI (in or out); a policy while charon reports a
 * CHILD_SA with its reqid or has a Weft connection loaded whose remote selector gives that reqid (charon replaces
 * such a policy in place when the SA comes up; deleting it would race with that). Everything else with a Weft
 * reqid is a leftover. The kernel is read before charon, so an SA charon installs in between is seen as held.
 * charon not answering while it runs -> the read fails and nothing is deleted this pass; charon not running ->
 * it holds nothing.
 *
 * The kind `ipsec-xfrm` has one object per node, `leftovers`, desired empty (declared in kernel mode only): drift
 * is any leftover, repaired by deleting it. It comes after `ipsec-charon` (so a charon (re)started in the pass is
 * asked, and its predecessor's leftovers go before the connections load) and before `ipsec-conn`. At teardown
 * charon is stopped first, so everything with a Weft reqid goes. In libipsec mode (the datapath in charon's
 * strongswan.conf) the kind lists nothing and does nothing.
 */
import { KernelError, type OpResult, type XfrmPolicy, type XfrmPort, type XfrmState, asKernelError } from "@weft/kernel";
import type { Drift, ObjectReconciler } from "@weft/reconcile";
import { CHARON_KIND, CONN_KIND, type CharonHandle, OWNED_PREFIX } from "./reconcilers.js";

export const XFRM_KIND = "ipsec-xfrm";
/** Top byte of every Weft reqid ('W'). */
export const REQID_TAG = 0x57;
const LOW = 2 ** 24;

/** The reqid of the connection to a peer with pod subnet `subnet` (an IPv4 CIDR): Weft's tag, the subnet's number. */
export function reqidFor(subnet: string): number {
  const [addr = "", len = "32"] = subnet.split("/");
  const ip = addr.split(".").reduce((n, o) => n * 256 + Number(o), 0);
  const number = Math.floor(ip / 2 ** (32 - Number(len)));
  return REQID_TAG * LOW + (number % LOW);
}

/** Whether `reqid` is one Weft gives its CHILD_SAs. */
export function isWeftReqid(reqid: number): boolean {
  return Math.floor(reqid / LOW) === REQID_TAG;
}

/** The node's XFRM leftovers as one object. */
export interface XfrmLeftovers {
  readonly name: "leftovers";
  readonly states: readonly XfrmState[];
  readonly policies: readonly XfrmPolicy[];
}

/** What is desired: no leftover. */
export const NO_LEFTOVERS: XfrmLeftovers = { name: "leftovers", states: [], policies: [] };

type XfrmOp = { readonly op: "state.delete"; readonly state: XfrmState } | { readonly op: "policy.delete"; readonly policy: XfrmPolicy };

const hex = (n: number) => `0x${n.toString(16)}`;

export class XfrmReconciler implements ObjectReconciler<XfrmLeftovers, XfrmOp> {
  readonly kind = XFRM_KIND;
  readonly after = [CHARON_KIND] as const;
  readonly before = [CONN_KIND] as const;

  constructor(
    private readonly charon: CharonHandle,
    private readonly xfrm: XfrmPort,
  ) {}

  key(o: XfrmLeftovers): string {
    return o.name;
  }

  async listOwned(): Promise<XfrmLeftovers[]> {
    if (this.charon.datapathOnDisk() !== "kernel") return [];
    // The kernel first, then charon: an SA installed in between is held, never a leftover.
    const [states, policies] = await Promise.all([this.xfrm.listStates(), this.xfrm.listPolicies()]);
    const held = await this.held();
    return [
      {
        name: "leftovers",
        states: states.filter((s) => isWeftReqid(s.reqid) && !held.spis.has(s.spi)),
        policies: policies.filter((p) => p.reqids.length > 0 && p.reqids.every(isWeftReqid) && !p.reqids.some((r) => held.reqids.has(r))),
      },
    ];
  }

  drift(_desired: XfrmLeftovers, actual: XfrmLeftovers): Drift {
    if (actual.states.length + actual.policies.length === 0) return undefined;
    return `${actual.states.length} XFRM states and ${actual.policies.length} policies with Weft's reqids that charon does not hold: delete`;
  }

  addOps(): XfrmOp[] {
    return [];
  }

  updateOps(_desired: XfrmLeftovers, actual: XfrmLeftovers): XfrmOp[] {
    return this.deleteOps(actual);
  }

  removeOps(o: XfrmLeftovers): XfrmOp[] {
    return this.deleteOps(o);
  }

  async apply(ops: readonly XfrmOp[]): Promise<OpResult[]> {
    const out: OpResult[] = [];
    for (const op of ops) {
      try {
        if (op.op === "state.delete") await this.xfrm.deleteState(op.state);
        else await this.xfrm.deletePolicy(op.policy);
        out.push({ ok: true });
      } catch (err) {
        // Gone already (charon or the kernel's lifetime got there first): the goal holds.
        if (err instanceof KernelError && err.code === "KERNEL_NOT_FOUND") out.push({ ok: true });
        else out.push({ ok: false, error: asKernelError(err, op.op === "state.delete" ? `delete XFRM state spi ${hex(op.state.spi)}` : `delete XFRM policy dir ${op.policy.dir} index ${op.policy.index}`) });
      }
    }
    return out;
  }

  /** The leftovers as plain data (the conformance kit compares them before and after a backend's lifetime). */
  async snapshot(): Promise<unknown[]> {
    return (await this.listOwned()).flatMap((o) => [...o.states, ...o.policies]);
  }

  private deleteOps(o: XfrmLeftovers): XfrmOp[] {
    return [...o.policies.map((policy) => ({ op: "policy.delete" as const, policy })), ...o.states.map((state) => ({ op: "state.delete" as const, state }))];
  }

  /** SPIs and reqids charon holds now; nothing when it is not running. */
  private async held(): Promise<{ spis: Set<number>; reqids: Set<number> }> {
    const socket = this.charon.socket;
    try {
      const sas = await this.charon.ipsec.listSas(socket);
      const conns = await this.charon.ipsec.listConnections(socket);
      const children = sas.flatMap((s) => s.children);
      const spis = new Set(children.flatMap((c) => [c.spiIn, c.spiOut]).filter((x): x is number => x !== undefined));
      const reqids = new Set(children.map((c) => c.reqid).filter((x): x is number => x !== undefined));
      for (const c of conns) if (c.name.startsWith(OWNED_PREFIX)) for (const ts of c.remoteTs) reqids.add(reqidFor(ts));
      return { spis, reqids };
    } catch (err) {
      // charon gone: it holds nothing. charon running but not answering: do not guess, skip this pass.
      if (err instanceof KernelError && err.code === "KERNEL_TRANSIENT" && !(await this.charon.running())) return { spis: new Set(), reqids: new Set() };
      throw err;
    }
  }
}
