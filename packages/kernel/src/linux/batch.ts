/**
 * Running ops through `ip -force -batch -` / `bridge -force -batch -`, one process per run of consecutive ops
 * of one tool, and mapping every outcome back to its op.
 *
 * How iproute2 6.1 reports, as verified on this machine:
 * - A failed line prints its error text, then `Command failed -:<line>` (1-based, counting every line
 *   read), all on stderr. With -force the next line runs. A line that succeeds prints nothing.
 * - BUT some failures end the process instead, with no `Command failed` line: every kernel error of
 *   `ip neigh add|replace|del` (ipneigh.c calls exit(2)), argument errors (`link set X master <missing>`,
 *   `link add ... type vxlan dev <missing>`, `peer ... netns <missing>`, any "garbage" token). Lines after
 *   it never run, and the successes before it left no trace.
 * So after every op line we send a sentinel line, `weft-sentinel`, an unknown object that costs only a
 * parse and prints `Object "weft-sentinel" is unknown ...` + `Command failed -:<n>`. The last sentinel seen
 * tells exactly how far the process got; if it stopped early, the line after that sentinel is the one that
 * ended it (its message is the text after the last marker), and a new process continues with the next line.
 * On 5,000 routes the sentinels add ~10 ms to ~70 ms.
 *
 * After a neighbour op ends a process, the neighbour table is read once and the remaining neigh add/del ops
 * that would obviously fail (add of an existing entry, del of a missing one) are answered without being
 * sent, so a batch with many such ops does not cost one process each.
 */
import { IPAddress } from "@weft/core";
import { describeOp, KernelError, type KernelOp, type OpResult } from "../port.js";
import type { RunResult } from "../process.js";
import { classifyKernelMessage } from "./classify.js";
import { type CompiledOp, type Tool, compileOp, validateKernelOp } from "./commands.js";

export const SENTINEL = "weft-sentinel";

/** The stdin of one batch process: each line followed by a sentinel. */
export function batchInput(lines: readonly string[]): string {
  let s = "";
  for (const l of lines) s += `${l}\n${SENTINEL}\n`;
  return s;
}

export interface BatchOutcome {
  /** Lines (0-based, sentinels not counted) that failed, with their error text. */
  readonly failures: ReadonlyArray<{ readonly index: number; readonly message: string }>;
  /** The line that ended the process early, when it did. `message` is empty when nothing was printed. */
  readonly abort?: { readonly index: number; readonly message: string };
}

const COMMAND_FAILED = /^Command failed .*:(\d+)\s*$/;

/** Reads the stderr of a batch built by batchInput with `count` op lines. */
export function parseBatchStderr(stderr: string, count: number): BatchOutcome {
  const failures: Array<{ index: number; message: string }> = [];
  let text: string[] = [];
  let lastDone = -1;
  for (const raw of stderr.split("\n")) {
    const m = COMMAND_FAILED.exec(raw);
    if (!m) {
      const t = raw.trim();
      if (t) text.push(t);
      continue;
    }
    const n = Number(m[1]);
    const index = Math.floor((n - 1) / 2);
    if (n % 2 === 0) {
      // A sentinel: line `index` is done. Text since the last marker is the sentinel's own complaint,
      // preceded by any warnings of a line that succeeded.
      lastDone = index;
    } else {
      failures.push({ index, message: text.join("; ") || "failed without a message" });
    }
    text = [];
  }
  if (lastDone >= count - 1) return { failures };
  return { failures, abort: { index: lastDone + 1, message: text.join("; ") } };
}

export type BatchRunner = (tool: Tool, input: string) => Promise<RunResult>;

interface Item {
  readonly opIndex: number;
  readonly line: string;
  readonly followUps: readonly string[];
}

const neighKey = (dev: string, ip: string) => `${dev} ${IPAddress.tryParse(ip)?.toString() ?? ip}`;

export class BatchExecutor {
  constructor(
    private readonly run: BatchRunner,
    /** Keys "dev ip" of every neighbour entry (any state); used only after a neighbour op ended a process. */
    private readonly readNeighbourKeys: () => Promise<Set<string>>,
  ) {}

  async apply(ops: readonly KernelOp[]): Promise<OpResult[]> {
    const results: Array<OpResult | undefined> = new Array(ops.length);
    const compiled: Array<CompiledOp | undefined> = ops.map((op, i) => {
      const invalid = validateKernelOp(op);
      if (invalid) {
        results[i] = { ok: false, error: invalid };
        return undefined;
      }
      return compileOp(op);
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
      c.lines.forEach((line, k) => group.push({ opIndex: i, line, followUps: k === c.lines.length - 1 ? c.followUps : [] }));
    }
    if (groupTool !== undefined && group.length) await this.runGroup(groupTool, group, ops, results);
    return results.map((r) => r ?? { ok: true });
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
      const r = await this.run(tool, batchInput(seg.map((s) => s.line)));
      const out = parseBatchStderr(r.stderr, seg.length);
      for (const f of out.failures) fail(seg[f.index]!, f.message);

      if (out.abort) {
        const { index, message } = out.abort;
        if (!message || (index === 0 && /Cannot open network namespace|setting the network namespace/i.test(message))) {
          // Not an op's failure: the process could not run at all (namespace gone, killed, crashed).
          throw new KernelError(
            message ? classifyKernelMessage(message) : "KERNEL_FAILED",
            `${tool} -batch stopped after ${pos + index} of ${queue.length} lines (exit code ${r.exitCode})${message ? `: ${message}` : " without an error message"}`,
          );
        }
        const it = seg[index]!;
        fail(it, message);
        pos += index + 1;
        if (ops[it.opIndex]!.op.startsWith("neigh.")) await this.preResolveNeighbours(queue, pos, ops, results);
        continue;
      }

      pos = end + 1;
      const last = seg[seg.length - 1]!;
      if (last.followUps.length && !results[last.opIndex]) {
        queue.splice(pos, 0, ...last.followUps.map((line) => ({ opIndex: last.opIndex, line, followUps: [] })));
      }
    }
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
