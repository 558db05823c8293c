/**
 * Soak (issue 15): a 3-node vxlan lab on a real etcd under churn for N minutes. Fake peer leases are added and
 * removed at 10/s each (after a ramp to a steady pool), one agent is restarted every 5 minutes (SIGTERM and a
 * new start, by PID, round robin), and every pod pings the next node's pod at 20 pps throughout. Every 10 s it
 * samples each agent's RSS, open fds and CPU (from /proc, through @weft/kernel's readProcessStats), V8 heap and
 * programmed peers (from its /metrics), and the packets lost so far. Verdict: RSS and fds end flat, within 10 %
 * of their value at the 5-minute mark (the first restart): the median of each node's samples in the last minute
 * against the median of those in the minute up to the mark.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { sleep } from "@weft/core";
import { type ChildHandle, readProcessStats } from "@weft/kernel";
import { machineLine, table, writeSection } from "./report.js";
import { type FakePeer, WeftCluster, type WeftNode, deleteFakePeer, etcdPut, fakePeer, fakePeerValue, labRunner } from "@weft/netns-lab";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "packages", "daemon", "dist", "main.js");

export interface SoakOptions {
  readonly minutes: number;
  /** Seconds between agent restarts (default 300); also the reference mark of the verdict. */
  readonly restartEverySeconds?: number;
  readonly sampleSeconds?: number;
  /** Peer leases added per second, and (once the pool is full) removed per second. Default 10. */
  readonly churnPerSecond?: number;
  /** Fake peers alive at once in steady state (default 300: a 30 s ramp at 10/s). */
  readonly pool?: number;
  readonly pingPps?: number;
  /** Progress lines (default console.log). */
  readonly log?: (line: string) => void;
}

export interface SoakSample {
  /** Seconds since the churn started. */
  readonly t: number;
  readonly node: number;
  readonly pid?: number;
  readonly rssMiB?: number;
  readonly heapMiB?: number;
  readonly fds?: number;
  /** CPU use since the previous sample of the same process, in % of one core. */
  readonly cpuPercent?: number;
  readonly programmedPeers?: number;
  /** Pings this node's pod sent and lost so far (to the next node's pod). */
  readonly pingsSent: number;
  readonly pingsLost: number;
}

export interface SoakRestart {
  readonly t: number;
  readonly node: number;
  readonly oldPid?: number;
  readonly newPid: number;
  /** Start of the new process → /readyz 200. */
  readonly readyMs: number;
}

export interface SoakNodeVerdict {
  readonly node: number;
  readonly rssAtMarkMiB: number;
  readonly rssAtEndMiB: number;
  readonly fdsAtMark: number;
  readonly fdsAtEnd: number;
  readonly rssFlat: boolean;
  readonly fdsFlat: boolean;
}

export interface SoakResult {
  readonly startedAt: string;
  readonly minutes: number;
  readonly restartEverySeconds: number;
  readonly churnPerSecond: number;
  readonly pool: number;
  readonly pingPps: number;
  readonly peersAdded: number;
  readonly peersRemoved: number;
  /** Seconds since start of the reference mark (the first restart; the whole run when there is none). */
  readonly markSeconds: number;
  readonly samples: SoakSample[];
  readonly restarts: SoakRestart[];
  readonly ping: { from: number; to: number; sent: number; received: number; lost: number }[];
  readonly verdict: { readonly flat: boolean; readonly nodes: SoakNodeVerdict[] };
}

/** Pings sent and received so far, from a running `ping -O` (no -q) whose output goes to `file`. */
function pingProgress(file: string): { sent: number; received: number } {
  if (!existsSync(file)) return { sent: 0, received: 0 };
  const text = readFileSync(file, "utf8");
  const summary = /(\d+) packets transmitted, (\d+) received/.exec(text);
  if (summary) return { sent: Number(summary[1]), received: Number(summary[2]) };
  let sent = 0;
  let received = 0;
  for (const m of text.matchAll(/icmp_seq=(\d+)/g)) sent = Math.max(sent, Number(m[1]));
  for (const _ of text.matchAll(/bytes from/g)) received++;
  return { sent, received: Math.min(received, sent) };
}

const metricValue = (text: string, name: string): number | undefined => {
  const m = new RegExp(`^${name.replace(/[{}"=]/g, (c) => `\\${c}`)} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
};

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const log = o.log ?? ((l: string) => console.log(l));
  const restartEvery = o.restartEverySeconds ?? 300;
  const sampleEvery = o.sampleSeconds ?? 10;
  const churn = o.churnPerSecond ?? 10;
  const poolSize = o.pool ?? 300;
  const pps = o.pingPps ?? 20;
  const durationMs = o.minutes * 60_000;
  const startedAt = new Date().toISOString();
  // /26 subnets: room for 1,023 of them in 198.19.0.0/16 and for a pod at .10 of each node's.
  const c = await WeftCluster.start({ nodes: 3, weftd, backend: { Type: "vxlan" }, subnetLen: 26, resyncInterval: 10, name: "wsk" });
  const pings: { from: WeftNode; to: WeftNode; file: string; proc: ChildHandle }[] = [];
  const samples: SoakSample[] = [];
  const restarts: SoakRestart[] = [];
  let added = 0;
  let removed = 0;
  const stop = new AbortController();
  try {
    const own = new Set(c.nodes.map((n) => c.subnetEnv(n).subnet!.network.toString()));
    const candidates: FakePeer[] = [];
    for (let i = 0; candidates.length < Math.max(poolSize * 3, 600) && i < 1_000; i++) {
      const p = fakePeer(i, 26);
      if (!own.has(p.subnet)) candidates.push(p);
    }
    if (candidates.length <= poolSize) throw new Error(`soak: --pool ${poolSize} leaves no room to churn among ${candidates.length} subnets`);
    const t0 = Date.now();
    const since = () => (Date.now() - t0) / 1000;
    // Pings: pod i → pod i+1, for the whole run (+5 s so the last sample still sees it running).
    const seconds = Math.ceil(durationMs / 1000) + 5;
    for (let i = 0; i < c.nodes.length; i++) {
      const from = c.nodes[i]!;
      const to = c.nodes[(i + 1) % c.nodes.length]!;
      const file = join(c.dir, `ping-${i + 1}.log`);
      const proc = labRunner.spawn("ip", ["netns", "exec", from.pod!.netns.name, "ping", "-n", "-O", "-i", String(1 / pps), "-W", "1", "-w", String(seconds), to.pod!.ip], { stdoutFile: file, stderrFile: file });
      pings.push({ from, to, file, proc });
    }

    // Churn: one add (and, once the pool is full, one removal of the oldest) every 1/churn s, on schedule.
    const churnLoop = async () => {
      const live: FakePeer[] = [];
      let next = 0;
      let tick = 0;
      while (!stop.signal.aborted) {
        const p = candidates[next++ % candidates.length]!;
        await etcdPut(c.etcd.endpoint, `${c.prefix}/subnets/${p.key}`, fakePeerValue(p));
        live.push(p);
        added++;
        if (live.length > poolSize) {
          await deleteFakePeer(c.etcd.endpoint, c.prefix, live.shift()!);
          removed++;
        }
        tick++;
        const due = t0 + (tick * 1000) / churn;
        if (due > Date.now()) await sleep(due - Date.now());
      }
    };

    let lastCpu = new Map<number, { pid: number; cpu: number; at: number }>();
    const sampleOnce = async () => {
      const t = since();
      const nextCpu = new Map<number, { pid: number; cpu: number; at: number }>();
      for (const [i, n] of c.nodes.entries()) {
        const pid = n.proc?.pid;
        const stats = pid ? readProcessStats(pid) : undefined;
        let heapMiB: number | undefined;
        let programmed: number | undefined;
        const m = n.proc ? await c.health(n, "/metrics").catch(() => undefined) : undefined;
        if (m?.ok) {
          const heap = metricValue(m.body, "weft_heap_used_bytes");
          heapMiB = heap === undefined ? undefined : heap / 2 ** 20;
          programmed = metricValue(m.body, 'weft_peers{state="programmed"}');
        }
        let cpuPercent: number | undefined;
        if (stats) {
          const prev = lastCpu.get(i);
          const now = Date.now();
          if (prev && prev.pid === stats.pid) cpuPercent = ((stats.cpuSeconds - prev.cpu) / ((now - prev.at) / 1000)) * 100;
          nextCpu.set(i, { pid: stats.pid, cpu: stats.cpuSeconds, at: now });
        }
        const ping = pingProgress(pings[i]!.file);
        samples.push({
          t: Math.round(t),
          node: i + 1,
          ...(stats ? { pid: stats.pid, rssMiB: stats.rssBytes / 2 ** 20, fds: stats.openFds } : {}),
          ...(heapMiB !== undefined ? { heapMiB } : {}),
          ...(cpuPercent !== undefined ? { cpuPercent } : {}),
          ...(programmed !== undefined ? { programmedPeers: programmed } : {}),
          pingsSent: ping.sent,
          pingsLost: ping.sent - ping.received,
        });
      }
      lastCpu = nextCpu;
      const row = samples.slice(-c.nodes.length);
      log(
        `soak ${Math.round(t)} s: ` +
          row.map((s) => `n${s.node} rss ${s.rssMiB?.toFixed(0) ?? "-"} MiB heap ${s.heapMiB?.toFixed(0) ?? "-"} MiB fds ${s.fds ?? "-"} cpu ${s.cpuPercent?.toFixed(0) ?? "-"} % peers ${s.programmedPeers ?? "-"} lost ${s.pingsLost}`).join(" | ") +
          ` (leases +${added} -${removed})`,
      );
    };
    const sampleLoop = async () => {
      for (let k = 0; !stop.signal.aborted; k++) {
        await sampleOnce();
        const due = t0 + (k + 1) * sampleEvery * 1000;
        if (due > t0 + durationMs) break;
        await sleep(Math.max(0, due - Date.now()), stop.signal).catch(() => undefined);
      }
    };
    const restartLoop = async () => {
      for (let k = 1; ; k++) {
        const due = t0 + k * restartEvery * 1000;
        if (due >= t0 + durationMs) return;
        await sleep(Math.max(0, due - Date.now()), stop.signal);
        const idx = (k - 1) % c.nodes.length;
        const n = c.nodes[idx]!;
        const oldPid = n.proc?.pid;
        const t = since();
        const r = await c.stopAgent(n, "SIGTERM");
        if (r.code !== 0) log(`soak: n${idx + 1}'s weftd (pid ${oldPid}) exited with ${JSON.stringify(r)} on SIGTERM`);
        const started = Date.now();
        const p = await c.startAgent(n);
        await c.waitReady(n, 60_000);
        const readyMs = Date.now() - started;
        restarts.push({ t: Math.round(t), node: idx + 1, ...(oldPid !== undefined ? { oldPid } : {}), newPid: p.pid, readyMs });
        log(`soak ${Math.round(t)} s: restarted n${idx + 1} (pid ${oldPid} → ${p.pid}), ready in ${readyMs} ms`);
      }
    };
    const churning = churnLoop();
    const restarting = restartLoop().catch((e: unknown) => {
      if (!stop.signal.aborted) throw e;
    });
    await sampleLoop();
    stop.abort();
    await Promise.all([churning, restarting]);
    // The pings end on their own deadline (a few s after the run); wait for their summaries.
    const ping = [];
    for (const [i, p] of pings.entries()) {
      await p.proc.exited;
      const r = pingProgress(p.file);
      ping.push({ from: i + 1, to: ((i + 1) % c.nodes.length) + 1, sent: r.sent, received: r.received, lost: r.sent - r.received });
    }
    // Verdict, per node: the median of its samples in the last minute against the median of those in the minute up
    // to the reference mark (medians: one sample can catch a scrape's socket or a GC in progress).
    const markSeconds = Math.min(restartEvery, o.minutes * 60);
    const endSeconds = Math.max(...samples.map((s) => s.t));
    const median = (xs: number[]) => {
      const v = [...xs].sort((a, b) => a - b);
      return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
    };
    const nodes: SoakNodeVerdict[] = c.nodes.map((_, i) => {
      const mine = samples.filter((s) => s.node === i + 1 && s.rssMiB !== undefined && s.fds !== undefined);
      const atMark = mine.filter((s) => s.t <= markSeconds && s.t > markSeconds - 60);
      const atEnd = mine.filter((s) => s.t > endSeconds - 60);
      const m = atMark.length ? atMark : mine.slice(0, 1);
      const e = atEnd.length ? atEnd : mine.slice(-1);
      const rssAtMarkMiB = median(m.map((s) => s.rssMiB!));
      const rssAtEndMiB = median(e.map((s) => s.rssMiB!));
      const fdsAtMark = median(m.map((s) => s.fds!));
      const fdsAtEnd = median(e.map((s) => s.fds!));
      return { node: i + 1, rssAtMarkMiB, rssAtEndMiB, fdsAtMark, fdsAtEnd, rssFlat: rssAtEndMiB <= rssAtMarkMiB * 1.1, fdsFlat: fdsAtEnd <= fdsAtMark * 1.1 };
    });
    const actualMark = markSeconds;
    return {
      startedAt,
      minutes: o.minutes,
      restartEverySeconds: restartEvery,
      churnPerSecond: churn,
      pool: poolSize,
      pingPps: pps,
      peersAdded: added,
      peersRemoved: removed,
      markSeconds: actualMark,
      samples,
      restarts,
      ping,
      verdict: { flat: nodes.every((n) => n.rssFlat && n.fdsFlat), nodes },
    };
  } finally {
    stop.abort();
    for (const p of pings) {
      p.proc.kill("SIGTERM");
      await p.proc.exited.catch(() => undefined);
    }
    await c.destroy();
  }
}

/** Writes `result` as JSON to `file` (directories created). */
export function writeSoakJson(file: string, result: SoakResult): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(result, null, 1)}\n`);
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/** "Nice" upper bound and step for an axis from 0 to `max`. */
function axis(max: number): { top: number; step: number } {
  const raw = max > 0 ? max / 4 : 1;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  return { top: Math.max(step, Math.ceil(max / step) * step), step };
}

/**
 * The soak chart: one panel per measure (RSS, V8 heap, open fds) over time, one line per node, restarts as
 * dashed vertical lines, the reference mark as a dotted one. Plain SVG, no dependency.
 */
export function soakSvg(r: SoakResult): string {
  const panels: { title: string; unit: string; get: (s: SoakSample) => number | undefined }[] = [
    { title: "RSS", unit: "MiB", get: (s) => s.rssMiB },
    { title: "V8 heap in use", unit: "MiB", get: (s) => s.heapMiB },
    { title: "open file descriptors", unit: "", get: (s) => s.fds },
  ];
  const W = 760;
  const PH = 170;
  const L = 60;
  const R = 20;
  const T = 40;
  const GAP = 40;
  const H = T + panels.length * (PH + GAP) + 20;
  const tMax = Math.max(r.minutes * 60, ...r.samples.map((s) => s.t), 1);
  const x = (t: number) => L + ((W - L - R) * t) / tMax;
  const nodes = [...new Set(r.samples.map((s) => s.node))].sort();
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(
    `<text x="${L}" y="18" font-size="13" font-weight="bold">${esc(`weftd soak: ${r.minutes} min, 3 nodes (vxlan), leases ±${r.churnPerSecond}/s, a restart every ${r.restartEverySeconds / 60} min`)}</text>`,
  );
  out.push(`<text x="${L}" y="32" fill="#555">${esc(`${r.startedAt.slice(0, 16).replace("T", " ")} UTC; dashed: agent restarts; dotted: reference mark (${r.markSeconds} s)`)}</text>`);
  panels.forEach((p, pi) => {
    const top = T + pi * (PH + GAP) + 16;
    const values = r.samples.map(p.get).filter((v): v is number => v !== undefined);
    const { top: yTop, step } = axis(Math.max(...values, 1));
    const y = (v: number) => top + PH - (PH * v) / yTop;
    out.push(`<text x="${L}" y="${top - 6}" font-weight="bold">${esc(p.title)}${p.unit ? ` (${p.unit})` : ""}</text>`);
    for (let v = 0; v <= yTop + 1e-9; v += step) {
      out.push(`<line x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#eee"/>`);
      out.push(`<text x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" fill="#555">${Number(v.toFixed(2))}</text>`);
    }
    const tStep = axis(tMax / 60).step * 60;
    for (let t = 0; t <= tMax + 1e-9; t += tStep) {
      out.push(`<text x="${x(t).toFixed(1)}" y="${top + PH + 14}" text-anchor="middle" fill="#555">${Number((t / 60).toFixed(2))} min</text>`);
    }
    for (const rs of r.restarts) out.push(`<line x1="${x(rs.t).toFixed(1)}" x2="${x(rs.t).toFixed(1)}" y1="${top}" y2="${top + PH}" stroke="${COLORS[(rs.node - 1) % COLORS.length]}" stroke-dasharray="4 3" opacity="0.6"/>`);
    out.push(`<line x1="${x(r.markSeconds).toFixed(1)}" x2="${x(r.markSeconds).toFixed(1)}" y1="${top}" y2="${top + PH}" stroke="#333" stroke-dasharray="1 3"/>`);
    out.push(`<rect x="${L}" y="${top}" width="${W - L - R}" height="${PH}" fill="none" stroke="#999"/>`);
    for (const n of nodes) {
      // A break in the line where the agent was down (no sample value).
      const segs: string[][] = [[]];
      for (const s of r.samples.filter((s) => s.node === n)) {
        const v = p.get(s);
        if (v === undefined) segs.push([]);
        else segs[segs.length - 1]!.push(`${x(s.t).toFixed(1)},${y(v).toFixed(1)}`);
      }
      for (const seg of segs.filter((sg) => sg.length > 0)) out.push(`<polyline fill="none" stroke="${COLORS[(n - 1) % COLORS.length]}" stroke-width="1.5" points="${seg.join(" ")}"/>`);
    }
    nodes.forEach((n, k) => {
      out.push(`<text x="${W - R - 60 * (nodes.length - k)}" y="${top - 6}" fill="${COLORS[(n - 1) % COLORS.length]}" font-weight="bold">node ${n}</text>`);
    });
  });
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}

/**
 * `npm run bench -- soak [--minutes N] [--restart-every S]` (default 30 min, a restart every 300 s): runs the soak,
 * writes docs/img/soak.json and docs/img/soak.svg, prints and records the "soak" section of `out`.
 */
export async function soakCommand(opts: ReadonlyMap<string, string>, out: string): Promise<void> {
  const minutes = Number(opts.get("minutes") ?? 30);
  const restartEverySeconds = Number(opts.get("restart-every") ?? 300);
  if (!(minutes > 0)) throw new Error(`--minutes ${JSON.stringify(opts.get("minutes"))} is not a positive number; e.g. --minutes 30`);
  if (!(restartEverySeconds >= 30)) throw new Error(`--restart-every ${JSON.stringify(opts.get("restart-every"))} must be at least 30 (seconds); e.g. 300`);
  const r = await runSoak({ minutes, restartEverySeconds });
  const img = join(dirname(out), "img");
  writeSoakJson(join(img, "soak.json"), r);
  writeFileSync(join(img, "soak.svg"), soakSvg(r));
  const f1 = (v: number | undefined) => (v === undefined ? "-" : v.toFixed(1));
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined);
  const at = (node: number, t: number) => [...r.samples].reverse().find((s) => s.node === node && s.t <= t && s.rssMiB !== undefined);
  const last = (node: number) => [...r.samples].reverse().find((s) => s.node === node && s.rssMiB !== undefined);
  const rows = r.verdict.nodes.map((v) => {
    const mine = r.samples.filter((s) => s.node === v.node);
    const rs = r.restarts.filter((x) => x.node === v.node);
    const p = r.ping.find((x) => x.from === v.node)!;
    return [
      `n${v.node}`,
      `${f1(v.rssAtMarkMiB)} → ${f1(v.rssAtEndMiB)} (${((v.rssAtEndMiB / v.rssAtMarkMiB - 1) * 100).toFixed(1)} %)`,
      `${f1(at(v.node, r.markSeconds)?.heapMiB)} → ${f1(last(v.node)?.heapMiB)}`,
      `${v.fdsAtMark} → ${v.fdsAtEnd}`,
      f1(mean(mine.map((s) => s.cpuPercent).filter((x): x is number => x !== undefined))),
      rs.length ? `${rs.length} (ready in ${rs.map((x) => x.readyMs).join(", ")} ms)` : "0",
      `${p.lost} of ${p.sent} (n${p.from} → n${p.to})`,
      v.rssFlat && v.fdsFlat ? "flat" : `NOT flat (${[!v.rssFlat && "RSS", !v.fdsFlat && "fds"].filter(Boolean).join(", ")})`,
    ];
  });
  const body = [
    `## Soak: ${r.minutes} minutes of churn on a 3-node lab`,
    "",
    `Machine: ${machineLine()}. \`npm run bench -- soak --minutes ${r.minutes}\`: 3 nodes (vxlan, real etcd, one pod each), fake peer leases added and removed at ${r.churnPerSecond}/s each ` +
      `(a steady pool of ${r.pool}; ${r.peersAdded} added, ${r.peersRemoved} removed), one agent restarted (SIGTERM, start, by PID) every ${r.restartEverySeconds / 60} min round robin, ` +
      `every pod pinging the next node's pod at ${r.pingPps} pps throughout. Sampled every 10 s: RSS, open fds and CPU from /proc, V8 heap from weftd's \`weft_heap_used_bytes\`. ` +
      `"mark" is the median of a node's samples in the minute up to the first restart (${r.markSeconds} s), "end" the median of its samples in the last minute (RSS and heap of a process restarted since are those of the new one). Verdict: RSS and fds at the end within 10 % of the mark. ` +
      "Chart: [img/soak.svg](img/soak.svg); every sample: [img/soak.json](img/soak.json).",
    "",
    table(["node", "RSS mark → end (MiB)", "heap mark → end (MiB)", "fds mark → end", "CPU mean (% of a core)", "restarts", "pings lost", "verdict"], rows),
    "",
    `Verdict: ${r.verdict.flat ? "RSS and fds flat on every node" : "NOT flat (see the rows above)"}.`,
    "",
    "![soak chart](img/soak.svg)",
  ].join("\n");
  writeSection(out, "soak", body);
  console.log(body);
  if (!r.verdict.flat) process.exitCode = 1;
}
