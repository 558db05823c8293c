/**
 * FakeXfrm: the XfrmPort over in-memory tables of one network namespace, for unit tests. A test (or a fake
 * charon) adds states and policies with `addState`/`addPolicy`; the port lists and deletes them with the
 * kernel's rules the contract checks: a state is identified by dst, SPI, proto (and mark), a policy by direction
 * and index (and its mark and if_id); deleting what is not there is KERNEL_NOT_FOUND. Tests assert on `states`
 * and `policies` (the final state), not on calls.
 */
import { KernelError, type XfrmMark, type XfrmPolicy, type XfrmPolicyId, type XfrmPort, type XfrmState, type XfrmStateId } from "@weft/kernel";

const sameMark = (a: XfrmMark | undefined, b: XfrmMark | undefined) => (a?.value ?? 0) === (b?.value ?? 0) && (a?.mask ?? 0) === (b?.mask ?? 0);

export class FakeXfrm implements XfrmPort {
  readonly states: XfrmState[] = [];
  readonly policies: XfrmPolicy[] = [];
  private nextIndex = 8;

  /** Adds a state (as charon or an operator would); EEXIST as KERNEL_EXISTS when dst/SPI/proto/mark is taken. */
  addState(s: XfrmState): void {
    if (this.states.some((x) => this.isState(x, s))) throw new KernelError("KERNEL_EXISTS", `ip xfrm state add: File exists (spi 0x${s.spi.toString(16)})`);
    this.states.push({ ...s });
  }

  /** Adds a policy and returns it with the index the kernel gave it (an index in `p` is ignored). */
  addPolicy(p: Omit<XfrmPolicy, "index"> & { index?: number }): XfrmPolicy {
    const taken = this.policies.some((x) => x.dir === p.dir && x.src === p.src && x.dst === p.dst && (x.ptype ?? "main") === (p.ptype ?? "main") && sameMark(x.mark, p.mark) && x.ifId === p.ifId);
    if (taken) throw new KernelError("KERNEL_EXISTS", `ip xfrm policy add: File exists (${p.src} ${p.dst} dir ${p.dir})`);
    const dirBits = p.dir === "in" ? 0 : p.dir === "out" ? 1 : 2;
    const added: XfrmPolicy = { ...p, ptype: p.ptype ?? "main", reqids: [...p.reqids], index: (this.nextIndex++ << 3) | dirBits };
    this.policies.push(added);
    return added;
  }

  async listStates(): Promise<XfrmState[]> {
    return this.states.map((s) => ({ ...s }));
  }

  async listPolicies(): Promise<XfrmPolicy[]> {
    return this.policies.map((p) => ({ ...p, reqids: [...p.reqids] }));
  }

  async deleteState(id: XfrmStateId): Promise<void> {
    const i = this.states.findIndex((x) => this.isState(x, id));
    if (i < 0) throw new KernelError("KERNEL_NOT_FOUND", `ip xfrm state delete ... spi 0x${id.spi.toString(16)} exited 2: RTNETLINK answers: No such process`);
    this.states.splice(i, 1);
  }

  async deletePolicy(id: XfrmPolicyId): Promise<void> {
    const i = this.policies.findIndex((x) => x.dir === id.dir && x.index === id.index && (x.ptype ?? "main") === (id.ptype ?? "main") && sameMark(x.mark, id.mark) && (x.ifId ?? 0) === (id.ifId ?? 0));
    if (i < 0) throw new KernelError("KERNEL_NOT_FOUND", `ip xfrm policy delete dir ${id.dir} index ${id.index} exited 2: RTNETLINK answers: No such file or directory`);
    this.policies.splice(i, 1);
  }

  private isState(x: XfrmStateId, id: XfrmStateId): boolean {
    return x.dst === id.dst && x.spi === id.spi && x.proto === id.proto && sameMark(x.mark, id.mark);
  }
}
