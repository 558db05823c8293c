/**
 * Running ops through `ip -force -batch -` / `bridge -force -batch -`, one process per run of consecutive ops
 * of one tool, and mapping every outcome back to its op.
 *
 * How iproute2 6.1 reports, as verified on this machine:
 * - A failed line prints its error text, then `Command failed -:<line>` (1-based, counting every line
 *   read), all on stderr. With -force the next line runs. A line that succeeds prints nothing.
 * - BUT some failures end the process instead, with no `Command failed` line: every kernel error of
 *   `ip neigh add|replace|del` (ipneigh.c calls exit(2)), and argument lookups that fail (`link set X master
 *   <missing>`, `link add ... type vxlan dev <missing>`, `peer ... netns <missing>`, any "garbage" token).
 *   Lines after it never run, and the successes before it left no trace.
 * So after each line that may end the process (neigh add/del, link ops naming another device or a netns)
 * and after the last line, we send a sentinel, `weft-sentinel`: an unknown object, which costs one parse and
 * prints `Object "weft-sentinel" is unknown ...` + `Command failed -:<n>`. The last sentinel seen tells how
 * far the process got. If it stopped early, the line that ended it is the one after the last sentinel (or
 * after the last failed line in that stretch); if the stretch leaves more than one candidate (a line we did
 * not expect to end anything did), the candidates are probed once more with a sentinel after each line.
 * Re-running lines that already ran is harmless (they were applied moments ago: EXISTS / no-op), and only the
 * probe's stopping point is used. Then a new process continues after the line that ended the first.
 * Sentinels are not put after every line because their stderr doubles the cost of a 5,000-route batch.
 *
 * After a neighbour op ends a process, the neighbour table is read once and the remaining neigh add/del ops
 * that would obviously fail (add of an existing entry, del of a missing one) are answered without being
 * sent, so a batch with many such ops does not cost one process each.
 */
import { IPAddress } from "@weft/core";
import { describeOp, KernelError, type KernelOp, type OpResult } from "../port.js";
import type { RunResult } from "../process.js";
import { classifyKernelMessage } from "./classify.js";
import { type CompiledOp, type Tool, compileOp } from "./commands.js";
import { BUILTIN_LINK_KIND_SET, type LinkKinds } from "./link-kinds.js";
import { InvalidValue } from "./validate.js";

export const SENTINEL = "weft-sentinel";

/** The stdin of one batch process, and for each input line (1-based line n at index n-1) what it is. */
export function batchInput(lines: readonly string[], sentinelAfter: (i: number) => boolean): { input: string; layout: LineRole[] } {
  let input = "";
  const layout: LineRole[] = [];
  lines.forEach((l, i) => {
    input += `${l}\n`;
    layout.push({ index: i, sentinel: false });
    if (sentinelAfter(i) || i === lines.length - 1) {
      input += `${SENTINEL}\n`;
      layout.push({ index: i, sentinel: true });
    }
  });
  return { input, layout };
}

export interface LineRole {
  /** The op line this input line is, or follows (for a sentinel). */
  readonly index: number;
  readonly sentinel: boolean;
}

export interface BatchOutcome {
  /** Op lines (0-based) that failed, with their error text. */
  readonly failures: ReadonlyArray<{ readonly index: number; readonly message: string }>;
  /** The last op line known to be done (a sentinel after it was seen); -1 when none. */
  readonly doneThrough: number;
  /** Text after the last marker: what a process that stopped early said last. */
  readonly trailing: string;
}

const COMMAND_FAILED = /^Command failed .*:(\d+)\s*$/;

/** Reads the stderr of a batch built by batchInput. */
export function parseBatchStderr(stderr: string, layout: readonly LineRole[]): BatchOutcome {
  const failures: Array<{ index: number; message: string }> = [];
  let text: string[] = [];
  let doneThrough = -1;
  for (const raw of stderr.split("\n")) {
    const m = COMMAND_FAILED.exec(raw);
    if (!m) {
      const t = raw.trim();
      if (t) text.push(t);
      continue;
    }
    const role = layout[Number(m[1]) - 1];
    if (role?.sentinel) {
      // Text since the last marker is the sentinel's own complaint, after any warnings of a line that succeeded.
      doneThrough = role.index;
    } else if (role) {
      failures.push({ index: role.index, message: text.join("; ") || "failed without a message" });
    }
    text = [];
  }
  return { failures, doneThrough, trailing: text.join("; ") };
}

/** Ops whose line may end the ip process instead of failing alone (see the note at the top). */
function mayEndProcess(op: KernelOp): boolean {
  switch (op.op) {
    case "neigh.add":
    case "neigh.del":
      return true;
    case "link.add":
      return op.link.master !== undefined || op.link.vxlan?.dev !== undefined || op.link.veth?.peerNetns !== undefined;
    case "link.set":
      return typeof op.master === "string";
    default:
      return false;
  }
}

export type BatchRunner = (tool: Tool, input: string) => Promise<RunResult>;

interface Item {
  readonly opIndex: number;
  readonly line: string;
  readonly followUps: readonly string[];
  /** Gets a sentinel after it: its op may end the process (mayEndProcess). */
  readonly risky: boolean;
}

const neighKey = (dev: string, ip: string) => `${dev} ${IPAddress.tryParse(ip)?.toString() ?? ip}`;

export class BatchExecutor {
  constructor(
    private readonly run: BatchRunner,
    /** Keys "dev ip" of every neighbour entry (any state); used only after a neighbour op ended a process. */
    private readonly readNeighbourKeys: () => Promise<Set<string>>,
    /** The link kinds `link.add` may create. */
    private readonly kinds: LinkKinds = BUILTIN_LINK_KIND_SET,
  ) {}

  async apply(ops: readonly KernelOp[]): Promise<OpResult[]> {
    const results: Array<OpResult | undefined> = new Array(ops.length);
    const compiled: Array<CompiledOp | undefined> = ops.map((op, i) => {
      try {
        return compileOp(op, this.kinds);
      } catch (err) {
        if (!(err instanceof InvalidValue)) throw err;
        results[i] = { ok: false, error: new KernelError("KERNEL_INVALID", `${describeOp(op)}: ${err.message}; nothing was sent`, op) };
        return undefined;
      }
    });

    // Consecutive ops of one tool form one group; ops refused above do not split a group.
    let group: Item[] = [];
    let groupTool: Tool | undefined;
    for (let i = 0; i < ops.length; i++) {
      const c = compiled[i];
      if (!c) continue;
      if (groupTool !== undefined && c.tool !== groupTool) {
        await this.runGroup(groupTool, group, ops, results);
        group = [];
      }
      groupTool = c.tool;
      const risky = mayEndProcess(ops[i]!);
      c.lines.forEach((line, k) => group.push({ opIndex: i, line, followUps: k === c.lines.length - 1 ? c.followUps : [], risky }));
    }
    if (groupTool !== undefined && group.length) await this.runGroup(groupTool, group, ops, results);
    // (Array.from, not map: `results` is sparse and map would skip the holes.)
    return Array.from(results, (r) => r ?? { ok: true });
  }

  private async runGroup(tool: Tool, items: Item[], ops: readonly KernelOp[], results: Array<OpResult | undefined>): Promise<void> {
    const queue = [...items];
    const fail = (it: Item, message: string) => {
      if (results[it.opIndex]) return; // the first failure of an op is the one reported
      const op = ops[it.opIndex]!;
      results[it.opIndex] = { ok: false, error: new KernelError(classifyKernelMessage(message), `${tool} ${it.line}: ${message}`, op) };
    };

    let pos = 0;
    while (pos < queue.length) {
      // A segment ends after an item with follow-ups: those run (in the next segment) only if it succeeded.
      let end = pos;
      while (end < queue.length - 1 && queue[end]!.followUps.length === 0) end++;
      const seg = queue.slice(pos, end + 1);
      const { input, layout } = batchInput(
        seg.map((s) => s.line),
        (i) => seg[i]!.risky,
      );
      const r = await this.run(tool, input);
      const out = parseBatchStderr(r.stderr, layout);

      let resumeAt = seg.length; // index in seg where the next process starts
      if (out.doneThrough < seg.length - 1) {
        const stop = await this.locateStop(tool, seg, layout, out, r);
        for (const f of out.failures) if (f.index < stop.resumeAt) fail(seg[f.index]!, f.message);
        for (const f of stop.failures) fail(seg[f.index]!, f.message);
        resumeAt = stop.resumeAt;
        if (stop.stoppedAt !== undefined) {
          const it = seg[stop.stoppedAt]!;
          fail(it, stop.message);
          if (ops[it.opIndex]!.op.startsWith("neigh.")) await this.preResolveNeighbours(queue, pos + resumeAt, ops, results);
        }
      } else {
        for (const f of out.failures) fail(seg[f.index]!, f.message);
      }

      if (resumeAt < seg.length) {
        pos += resumeAt;
        continue;
      }
      pos = end + 1;
      const last = seg[seg.length - 1]!;
      if (last.followUps.length && !results[last.opIndex]) {
        // Follow-ups may name a master: they get sentinels.
        queue.splice(pos, 0, ...last.followUps.map((line) => ({ opIndex: last.opIndex, line, followUps: [], risky: true })));
      }
    }
  }

  /**
   * A process stopped before its last sentinel: finds the line that stopped it (`stoppedAt`, with its
   * message) and where the next process starts; `failures` are extra results found by a probe.
   */
  private async locateStop(
    tool: Tool,
    seg: readonly Item[],
    layout: readonly LineRole[],
    out: BatchOutcome,
    r: RunResult,
  ): Promise<{ stoppedAt?: number; resumeAt: number; message: string; failures: Array<{ index: number; message: string }> }> {
    const first = out.doneThrough + 1;
    if (!out.trailing || (first === 0 && out.failures.length === 0 && /Cannot open network namespace|setting the network namespace/i.test(out.trailing))) {
      // Not an op's failure: the process could not run at all (namespace gone, killed, crashed).
      throw new KernelError(
        out.trailing ? classifyKernelMessage(out.trailing) : "KERNEL_FAILED",
        `${tool} -batch stopped after line ${out.doneThrough + 1} of ${seg.length} (exit code ${r.exitCode})${out.trailing ? `: ${out.trailing}` : " without an error message"}`,
      );
    }
    // The stretch up to the next sentinel; lines in it that printed a failure did run.
    const nextSentinel = layout.find((l) => l.sentinel && l.index >= first)!.index;
    const failedInStretch = out.failures.filter((f) => f.index >= first).map((f) => f.index);
    const from = failedInStretch.length ? Math.max(...failedInStretch) + 1 : first;
    if (from === nextSentinel) return { stoppedAt: from, resumeAt: from + 1, message: out.trailing, failures: [] };

    // Several candidates: probe them with a sentinel after each line.
    const cands = seg.slice(from, nextSentinel + 1);
    const probe = batchInput(
      cands.map((c) => c.line),
      () => true,
    );
    const pr = await this.run(tool, probe.input);
    const po = parseBatchStderr(pr.stderr, probe.layout);
    if (po.doneThrough >= cands.length - 1) {
      // The stop did not repeat; the probe ran every candidate, so its results are theirs.
      return { resumeAt: nextSentinel + 1, message: "", failures: po.failures.map((f) => ({ index: from + f.index, message: f.message })) };
    }
    const stoppedAt = from + po.doneThrough + 1;
    return { stoppedAt, resumeAt: stoppedAt + 1, message: out.trailing, failures: [] };
  }

  /**
   * Answers, without sending them, the queued neigh add/del ops from `pos` on that the kernel would refuse,
   * tracking what earlier queued ops do to the table. A best effort that only saves processes: anything it
   * gets wrong is still sent and answered by the kernel.
   */
  private async preResolveNeighbours(queue: Item[], pos: number, ops: readonly KernelOp[], results: Array<OpResult | undefined>): Promise<void> {
    const pending = queue.slice(pos).some((it) => ops[it.opIndex]!.op === "neigh.add" || ops[it.opIndex]!.op === "neigh.del");
    if (!pending) return;
    const keys = await this.readNeighbourKeys();
    const flushDev = (dev: string) => {
      for (const k of keys) if (k.startsWith(`${dev} `)) keys.delete(k);
    };
    for (let i = pos; i < queue.length; ) {
      const op = ops[queue[i]!.opIndex]!;
      let resolved: KernelError | undefined;
      switch (op.op) {
        case "neigh.add": {
          const k = neighKey(op.neigh.dev, op.neigh.ip);
          if (keys.has(k)) resolved = new KernelError("KERNEL_EXISTS", `${describeOp(op)}: File exists (entry already present)`, op);
          else keys.add(k);
          break;
        }
        case "neigh.replace":
          keys.add(neighKey(op.neigh.dev, op.neigh.ip));
          break;
        case "neigh.del": {
          const k = neighKey(op.neigh.dev, op.neigh.ip);
          if (!keys.has(k)) resolved = new KernelError("KERNEL_NOT_FOUND", `${describeOp(op)}: No such file or directory (no such entry)`, op);
          else keys.delete(k);
          break;
        }
        case "link.del":
          flushDev(op.name);
          break;
        case "link.set":
          // The kernel flushes a device's neighbours (permanent ones too) when it goes down or changes MAC.
          if (op.up === false || op.address !== undefined) flushDev(op.name);
          break;
        default:
          break;
      }
      if (resolved && !results[queue[i]!.opIndex]) {
        results[queue[i]!.opIndex] = { ok: false, error: resolved };
        queue.splice(i, 1);
      } else i++;
    }
  }
}
