/** Writes one section of docs/benchmarks.md, between `<!-- bench:NAME -->` markers, leaving the rest alone. */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";

export function machineLine(): string {
  return `${cpus().length} cores (${cpus()[0]?.model ?? "unknown CPU"}), Node ${process.version}, ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

export function writeSection(file: string, name: string, body: string): void {
  const begin = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  const block = `${begin}\n${body.trim()}\n${end}`;
  let text = existsSync(file) ? readFileSync(file, "utf8") : "# Benchmarks\n\nProduced by `npm run bench` (tools/bench). Numbers are from one run on the machine named in each section; the machines are noisy (±30 %).\n";
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a >= 0 && b > a) text = text.slice(0, a) + block + text.slice(b + end.length);
  else text = text.trimEnd() + "\n\n" + block + "\n";
  writeFileSync(file, text);
}

export function table(head: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const line = (cells: readonly (string | number)[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n");
}
