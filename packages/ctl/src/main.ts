#!/usr/bin/env node
/**
 * weftctl: the operator CLI (status, peers, doctor). The thin I/O shell around cli.ts: the real kernel
 * (LinuxKernel over ExecaRunner, the only way Weft reads the kernel or starts processes) and the real streams.
 */
import { readFileSync } from "node:fs";
import { ExecaRunner, LinuxKernel } from "@weft/kernel";
import { runCli } from "./cli.js";

function version(): string {
  return (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;
}

const code = await runCli(process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
  kernel: () => new LinuxKernel({ runner: new ExecaRunner() }),
  version: version(),
});
process.exitCode = code;
