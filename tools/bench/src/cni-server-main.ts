#!/usr/bin/env node
/**
 * The CNI benchmark's server: weftd's CNI server (@weft/cni CniServer) on its own, with the ports weftd's
 * composition root gives it (SpawnRunner; LinuxKernel over a warm `ip -batch` coprocess for the node side; NetnsPathKernel per pod). The benchmark
 * starts it under `ip netns exec <node>` so the node side happens in the benchmark's node namespace.
 *
 *   node cni-server-main.js <socket path>     SIGTERM closes the socket and exits.
 */
import { CniServer } from "@weft/cni";
import { IpCoprocessRunner, LinuxKernel, NetnsPathKernel, SpawnRunner } from "@weft/kernel";

async function serve(socketPath: string): Promise<void> {
  const runner = new SpawnRunner();
  const server = new CniServer({ socketPath, deps: { runner, host: new LinuxKernel({ runner: new IpCoprocessRunner(runner) }), container: (p) => new NetnsPathKernel(runner, p) } });
  await server.start();
  process.once("SIGTERM", () => {
    void server.close().then(() => process.exit(0));
  });
}

serve(process.argv[2] ?? "").catch((err: unknown) => {
  process.stderr.write(`cni-server: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
