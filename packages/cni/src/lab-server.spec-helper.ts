/**
 * For the netns tier: weftd's CNI server (serve.spec-helper.ts, bundled once with esbuild) started inside a
 * test's "node" namespace on a socket of the test's own, stopped by PID.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { labRunner } from "@weft/netns-lab";
import { afterAll } from "vitest";

const SERVE_SRC = fileURLToPath(new URL("./serve.spec-helper.ts", import.meta.url));
let script: Promise<string> | undefined;

let scriptDir: string | undefined;

// Removed after the importing test file: a vitest worker may end without emitting process "exit".
afterAll(() => {
  if (scriptDir) rmSync(scriptDir, { recursive: true, force: true });
  scriptDir = undefined;
  script = undefined;
});

/** The server fixture as one CommonJS file (removed after the test file that imports this helper). */
function serverScript(): Promise<string> {
  script ??= (async () => {
    const dir = (scriptDir = mkdtempSync(join(tmpdir(), "weft-cni-serve-")));
    const out = join(dir, "serve.cjs");
    await build({ entryPoints: [SERVE_SRC], bundle: true, platform: "node", target: "node20", format: "cjs", conditions: ["@weft/source"], outfile: out, logLevel: "warning" });
    return out;
  })();
  return script;
}

export interface LabCniServer {
  readonly socket: string;
  readonly child: ReturnType<typeof labRunner.spawn>;
}

/** Starts the CNI server in namespace `nsName` on `socket`; resolves once the socket exists. */
export async function startLabCniServer(nsName: string, socket: string): Promise<LabCniServer> {
  const child = labRunner.spawn("ip", ["netns", "exec", nsName, process.execPath, await serverScript(), socket]);
  const deadline = Date.now() + 15_000;
  while (!existsSync(socket)) {
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`the CNI server did not create ${socket} within 15 s`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { socket, child };
}

/** Stops it by PID (SIGTERM: it removes its socket; SIGKILL: it leaves it, as a crashed weftd does). */
export async function stopLabCniServer(s: LabCniServer, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  s.child.kill(signal);
  await s.child.exited;
}
