/**
 * weft-cni: the plugin's entry point. Bundled as the payload that the executable (dist/weft-cni.cjs, built from
 * ./loader.ts) runs through a code cache; installed into the CNI bin dir as `weft`.
 *   - with CNI_COMMAND set: one CNI invocation (see plugin.ts);
 *   - `weft-cni install ...`: copy itself and a conflist into place (see install.ts);
 *   - `weft-cni --version`: the supported CNI versions.
 * Kept free of DI containers and cluster clients: this process starts once per pod ADD/DEL, so every module it
 * loads is paid for on every pod.
 */
import { fstatSync, readSync } from "node:fs";
import { LinuxKernel, NetnsPathKernel, SpawnRunner } from "@weft/kernel";
import { describeInstall, install, INSTALL_USAGE, parseInstallArgs, UsageError } from "./install.js";
import { MAX_CNI_STDIN_BYTES, runCni, versionInfo } from "./plugin.js";

/** A terminal (someone ran it by hand) or /dev/null: nothing to read. (fstat, not node:tty: no module to load.) */
function stdinIsCharacterDevice(): boolean {
  try {
    return fstatSync(0).isCharacterDevice();
  } catch {
    return false; // closed: the read below says so
  }
}

/**
 * Reads stdin to its end, or to one byte past the limit (runCni then refuses it with code 7, as the shim does):
 * a runtime gone wrong cannot make the plugin hold gigabytes.
 */
async function readStdin(): Promise<string> {
  if (stdinIsCharacterDevice()) return "";
  let size = 0;
  // Plain reads of fd 0 until end of file: ~3 ms less than creating process.stdin's stream. A runtime that
  // hands over a non-blocking pipe makes a read fail with EAGAIN; then the stream waits for the rest.
  const chunks: Buffer[] = [];
  const buf = Buffer.allocUnsafe(64 * 1024);
  try {
    for (;;) {
      const n = readSync(0, buf, 0, buf.length, null);
      if (n === 0) return Buffer.concat(chunks).toString("utf8");
      chunks.push(Buffer.from(buf.subarray(0, n)));
      size += n;
      if (size > MAX_CNI_STDIN_BYTES) return Buffer.concat(chunks).toString("utf8");
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EBADF") return ""; // no stdin at all
    if (code !== "EAGAIN") throw err;
  }
  for await (const c of process.stdin) {
    chunks.push(c as Buffer);
    size += (c as Buffer).length;
    if (size > MAX_CNI_STDIN_BYTES) break;
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] === "install") {
    try {
      // argv[1]: the executable node was started with (the loader that carries this code), which is what to copy.
      const r = await install(parseInstallArgs(argv.slice(1)), process.argv[1]!);
      process.stderr.write(`weft-cni: ${describeInstall(r)}\n`);
      return 0;
    } catch (err) {
      process.stderr.write(`weft-cni install: ${err instanceof Error ? err.message : String(err)}\n`);
      return err instanceof UsageError ? 2 : 1;
    }
  }
  if (argv[0] === "--version" || argv[0] === "version") {
    process.stdout.write(`weft-cni: CNI plugin "weft", CNI spec versions ${versionInfo().supportedVersions.join(", ")}\n`);
    return 0;
  }
  if (argv.length > 0 || !process.env.CNI_COMMAND) {
    process.stderr.write(
      `weft-cni is a CNI plugin: the container runtime runs it with CNI_COMMAND and a network config on stdin.\n` +
        `To install it: ${INSTALL_USAGE.replace("usage: ", "")}\n`,
    );
    if (argv.length > 0) return 2;
  }
  if (process.env.WEFT_CNI_TRACE) process.stderr.write(`weft-cni: started at ${performance.now().toFixed(1)} ms\n`);
  // Blocking: this process has nothing to do while ip runs, and a synchronous spawn starts ~3 ms sooner.
  const runner = new SpawnRunner({ blocking: true });
  const stdin = await readStdin();
  if (process.env.WEFT_CNI_TRACE) process.stderr.write(`weft-cni: stdin at ${performance.now().toFixed(1)} ms\n`);
  const outcome = await runCni(process.env, stdin, {
    runner,
    host: new LinuxKernel({ runner }),
    container: (path) => new NetnsPathKernel(runner, path),
    ...(process.env.WEFT_CNI_FAULT ? { fault: process.env.WEFT_CNI_FAULT } : {}),
    ...(process.env.WEFT_CNI_TRACE ? { trace: (phase: string) => process.stderr.write(`weft-cni: ${phase} at ${performance.now().toFixed(1)} ms\n`) } : {}),
  });
  process.stdout.write(outcome.stdout);
  return outcome.exitCode;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // runCni never throws; this is a bug or a broken stdout.
    process.stderr.write(`weft-cni: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
