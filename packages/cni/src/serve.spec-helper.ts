/**
 * Test fixture: weftd's CNI server on its own, for the netns tier (cni.netns.spec.ts bundles this file with
 * esbuild and runs it under `ip netns exec <node>`, so the node side happens in the test's node namespace). It
 * builds the ports the way weftd's composition root does (SpawnRunner, LinuxKernel over a warm `ip -batch` coprocess for the node side,
 * NetnsPathKernel per pod) and turns on fault injection through CNI_ARGS.
 *
 *   node serve.cjs <socket path>     prints "ready" once serving; SIGTERM closes the socket and exits.
 */
import { IpCoprocessRunner, LinuxKernel, NetnsPathKernel, SpawnRunner } from "@weft/kernel";
import { CniServer } from "./server.js";

async function serve(socketPath: string): Promise<void> {
  const runner = new SpawnRunner();
  const server = new CniServer({
    socketPath,
    deps: { runner, host: new LinuxKernel({ runner: new IpCoprocessRunner(runner) }), container: (p) => new NetnsPathKernel(runner, p) },
    faultInjection: true,
  });
  await server.start();
  process.stdout.write("ready\n");
  process.once("SIGTERM", () => {
    void server.close().then(() => process.exit(0));
  });
}

serve(process.argv[2] ?? "").catch((err: unknown) => {
  process.stderr.write(`serve: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
