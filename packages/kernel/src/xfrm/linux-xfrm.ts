/**
 * XfrmPort through `ip xfrm` (argv only, never a shell). `ip -json xfrm` prints plain text on iproute2 6.1, so
 * the text is parsed: a record starts with an unindented `src ... dst ...` line, its fields follow indented.
 *
 *   ip xfrm state list nokeys     src S dst D / proto esp spi 0x... reqid N mode tunnel / [mark 0x5/0xff] /
 *                                 [if_id 0x..] (nokeys: no key ever reaches this process)
 *   ip -s xfrm policy list        src S dst D [proto ..] uid 0 / dir out action allow index N priority P ptype main /
 *                                 [mark ..] / tmpl src .. dst .. / proto esp spi 0x..(0) reqid N(0x..) ... / [if_id ..]
 *                                 (`-s` is what prints the index a delete needs)
 *   ip xfrm state delete src S dst D proto P spi X [mark M mask K]
 *   ip xfrm policy delete dir D index N [ptype P] [mark M mask K] [if_id I]
 * Deleting what is gone prints "No such process" (state) or "No such file or directory" (policy): NOT_FOUND.
 */
import type { ProcessRunner } from "../process.js";
import { toolError } from "../tool-errors.js";
import type { XfrmMark, XfrmPolicy, XfrmPolicyId, XfrmPort, XfrmState, XfrmStateId } from "./port.js";

/** Splits `ip xfrm` output into records: each starts with an unindented line. */
function records(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    if (!/^\s/.test(line) || out.length === 0) out.push(line);
    else out[out.length - 1] += `\n${line}`;
  }
  return out;
}

const num = (s: string | undefined): number | undefined => (s === undefined ? undefined : Number(s));

function markOf(rec: string): XfrmMark | undefined {
  const m = /(?:^|\s)mark (0x[0-9a-f]+|\d+)\/(0x[0-9a-f]+|\d+)/im.exec(rec);
  return m ? { value: Number(m[1]), mask: Number(m[2]) } : undefined;
}

function ifIdOf(rec: string): number | undefined {
  return num(/(?:^|\s)if_id (0x[0-9a-f]+|\d+)/im.exec(rec)?.[1]);
}

/** Parses `ip xfrm state list [nokeys]`. Records without an SPI line are skipped. */
export function parseXfrmStates(text: string): XfrmState[] {
  const out: XfrmState[] = [];
  for (const rec of records(text)) {
    const head = /^src (\S+) dst (\S+)/.exec(rec);
    const id = /^\s+proto (\S+) spi (0x[0-9a-f]+)(?:\(\d+\))? reqid (\d+)(?:\(0x[0-9a-f]+\))? mode (\S+)/im.exec(rec);
    if (!head || !id) continue;
    const mark = markOf(rec);
    const ifId = ifIdOf(rec);
    out.push({
      src: head[1]!,
      dst: head[2]!,
      proto: id[1]!,
      spi: Number(id[2]),
      reqid: Number(id[3]),
      mode: id[4]!,
      ...(mark ? { mark } : {}),
      ...(ifId !== undefined ? { ifId } : {}),
    });
  }
  return out;
}

/** Parses `ip -s xfrm policy list`. Records without `dir ... index` are skipped. */
export function parseXfrmPolicies(text: string): XfrmPolicy[] {
  const out: XfrmPolicy[] = [];
  for (const rec of records(text)) {
    const head = /^src (\S+) dst (\S+)/.exec(rec);
    const dir = /^\s+dir (\S+)\b.*?\bindex (\d+)/im.exec(rec);
    if (!head || !dir) continue;
    const ptype = /\bptype (\S+)/.exec(rec)?.[1];
    const reqids = [...rec.matchAll(/^\s+proto \S+ (?:spi \S+ )?reqid (\d+)/gim)].map((m) => Number(m[1]));
    const mark = markOf(rec);
    const ifId = ifIdOf(rec);
    out.push({
      src: head[1]!,
      dst: head[2]!,
      dir: dir[1]!,
      index: Number(dir[2]),
      ...(ptype ? { ptype } : {}),
      reqids,
      ...(mark ? { mark } : {}),
      ...(ifId !== undefined ? { ifId } : {}),
    });
  }
  return out;
}

const hex = (n: number) => `0x${n.toString(16)}`;
const markArgs = (m: XfrmMark | undefined) => (m ? ["mark", hex(m.value), "mask", hex(m.mask)] : []);

/** XfrmPort over the ProcessRunner (`ip`, through PATH). */
export class LinuxXfrm implements XfrmPort {
  constructor(private readonly runner: ProcessRunner) {}

  async listStates(): Promise<XfrmState[]> {
    // stdout is dropped from any error: even with nokeys, a state list is not something to put in a log line.
    return parseXfrmStates(await this.ip(["xfrm", "state", "list", "nokeys"], false));
  }

  async listPolicies(): Promise<XfrmPolicy[]> {
    return parseXfrmPolicies(await this.ip(["-s", "xfrm", "policy", "list"]));
  }

  async deleteState(id: XfrmStateId): Promise<void> {
    await this.ip(["xfrm", "state", "delete", "src", id.src, "dst", id.dst, "proto", id.proto, "spi", `0x${id.spi.toString(16).padStart(8, "0")}`, ...markArgs(id.mark)]);
  }

  async deletePolicy(id: XfrmPolicyId): Promise<void> {
    await this.ip([
      "xfrm",
      "policy",
      "delete",
      "dir",
      id.dir,
      "index",
      String(id.index),
      ...(id.ptype && id.ptype !== "main" ? ["ptype", id.ptype] : []),
      ...markArgs(id.mark),
      ...(id.ifId !== undefined ? ["if_id", hex(id.ifId)] : []),
    ]);
  }

  private async ip(args: string[], stdoutInErrors = true): Promise<string> {
    const r = await this.runner.run("ip", args, { reject: false });
    if (r.exitCode !== 0) throw toolError("ip", args, stdoutInErrors ? r : { ...r, stdout: "" });
    return r.stdout;
  }
}
