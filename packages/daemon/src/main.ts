#!/usr/bin/env node
/**
 * weftd: the composition root. Parses flags, builds the ports (kernel, process runner, store, traffic rules),
 * loads backend modules, runs the Agent until SIGTERM/SIGINT, and exits with one clear line on bad input.
 */
import "reflect-metadata";
import { readFileSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { errorMessage, isWeftError, type Logger } from "@weft/core";
import { ExecaRunner, IpCoprocessRunner, LinuxKernel, linkKindsOf, linuxNetfilter, NetnsPathKernel, SpawnRunner } from "@weft/kernel";
import { Agent } from "./agent.js";
import { cniSocketPath, startCniServer } from "./cni-server.js";
import { loadBackendModules } from "./backend-modules.js";
import { BUILTIN_BACKENDS } from "./builtins.js";
import { checkFlagPaths, helpText, parseFlagsWithNotes, redactedFlags, type Flags } from "./flags.js";
import { startHealthServer } from "./http.js";
import { chooseExternalInterface } from "./iface/index.js";
import { createLogger } from "./log.js";
import { AgentMetrics } from "./metrics.js";
import { createSubnetManager } from "./stores.js";
import { teardown } from "./teardown.js";
import { cleanupOtherMode, createTrafficRules, trafficNetfilterOptions } from "./traffic/index.js";

export function version(): string {
  const pj = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  return pj.version;
}

export async function main(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  let flags: Flags;
  let notes: string[];
  try {
    ({ flags, notes } = parseFlagsWithNotes(argv, env));
    // Paths first, before the store, the CNI socket or the kernel is touched (issue 15 #2: /proc hung weftd).
    if (!flags.help && !flags.version && !flags.teardown) checkFlagPaths(flags);
  } catch (err) {
    process.stderr.write(`weftd: ${errorMessage(err)}\n`);
    return 2;
  }
  if (flags.help) {
    process.stdout.write(helpText() + "\n");
    return 0;
  }
  if (flags.version) {
    process.stdout.write(`weftd ${version()}\n`);
    return 0;
  }
  const logger = createLogger(flags["log-level"]);
  const runner = new ExecaRunner();
  const kernel = new LinuxKernel({ runner });

  if (flags.teardown) {
    try {
      await teardown({ flags, logger, kernel, runner });
      return 0;
    } catch (err) {
      logger.error(`teardown failed: ${errorMessage(err)}`);
      return 1;
    }
  }

  // Signals first: a SIGTERM at any point of startup stops the agent (every phase checks the abort).
  const controller = new AbortController();
  const disposeSignals = installStopSignals(process, logger, controller, (code) => process.exit(code));
  logger.info("starting", { version: version(), flags: redactedFlags(flags) });
  for (const n of notes) (n.includes("is ignored") ? logger.warn(n) : logger.info(n));
  const stopped = () => {
    logger.info("stopped");
    return 0;
  };

  const metrics = new AgentMetrics();
  let server: Awaited<ReturnType<typeof startHealthServer>> | undefined;
  let cni: Awaited<ReturnType<typeof startCniServer>> | undefined;
  /** The store until the agent owns it (the agent closes it when it stops). */
  let unownedStore: { close?(): Promise<void> } | undefined;
  try {
    // The weft CNI shim's server (docs/cni.md): node side through one warm `ip -batch` coprocess, pod side one
    // `ip` process per pod; SpawnRunner, not execa, for those per-pod processes (docs/adr/0006-cni-latency.md).
    const cniRunner = new SpawnRunner();
    cni = await startCniServer({
      socketPath: cniSocketPath(flags),
      metrics,
      logger,
      signal: controller.signal,
      deps: { runner: cniRunner, host: new LinuxKernel({ runner: new IpCoprocessRunner(cniRunner) }), container: (p) => new NetnsPathKernel(cniRunner, p) },
    });
    if (controller.signal.aborted) return stopped();
    const registry = await loadBackendModules({ builtins: BUILTIN_BACKENDS, thirdParty: flags["backend-module"], cwd: process.cwd() });
    if (controller.signal.aborted) return stopped();
    const store = await createSubnetManager(flags, logger);
    unownedStore = store.manager;
    if (controller.signal.aborted) return stopped();
    const agent = new Agent({
      flags,
      logger,
      // The agent's kernel knows the link kinds the loaded backend modules contribute (BackendModule.linkKinds).
      kernel: new LinuxKernel({ runner, linkKinds: linkKindsOf(registry.types().map((t) => registry.get(t))) }),
      runner,
      registry,
      metrics,
      subnetManager: store.manager,
      chooseInterface: chooseExternalInterface,
      trafficRules: (mode) => ({
        rules: createTrafficRules(linuxNetfilter(mode, runner, trafficNetfilterOptions({ logger })), { logger }),
        cleanupOther: () => cleanupOtherMode(mode, (other) => linuxNetfilter(other, runner, trafficNetfilterOptions()), { logger }),
      }),
      ...(store.storedPublicIPs ? { storedPublicIPs: store.storedPublicIPs } : {}),
    });
    if (flags["healthz-port"] > 0) server = await startHealthServer(flags["healthz-ip"], flags["healthz-port"], agent, metrics);
    if (controller.signal.aborted) return stopped();
    unownedStore = undefined;
    await agent.run(controller.signal);
    return stopped();
  } catch (err) {
    if (controller.signal.aborted && !isWeftError(err)) return stopped();
    if (isWeftError(err, "LEASE_LOST")) {
      logger.warn(errorMessage(err));
      return 0;
    }
    // One line naming the problem and the fix; nothing on the node was changed for configuration errors.
    logger.error(errorMessage(err), isWeftError(err) ? { code: err.code } : {});
    return 1;
  } finally {
    await unownedStore?.close?.().catch((err) => logger.warn(`store close: ${errorMessage(err)}`));
    server?.close();
    // The CNI socket stopped accepting at the signal (new shims run the fallback); ADDs and DELs in flight finish
    // (bounded: CNI_DRAIN_TIMEOUT_MS) before weftd exits, then the socket is removed.
    await cni?.close();
    disposeSignals();
  }
}

/** What installStopSignals needs of `process` (an EventEmitter in tests). */
export interface SignalSource {
  on(event: "SIGTERM" | "SIGINT", listener: () => void): unknown;
  off(event: "SIGTERM" | "SIGINT", listener: () => void): unknown;
}

/**
 * SIGTERM/SIGINT handling, installed before anything else starts: the first signal aborts `controller` (the
 * agent stops wherever it is, startup included, and leaves the datapath for the next agent); a second one while
 * stopping exits at once through `exit`, with 128 + the signal's number (143 for SIGTERM, 130 for SIGINT),
 * saying so. Returns a function that removes the handlers.
 */
export function installStopSignals(source: SignalSource, logger: Pick<Logger, "info" | "error">, controller: AbortController, exit: (code: number) => void): () => void {
  const handlers = (["SIGTERM", "SIGINT"] as const).map((sig) => {
    const handler = () => {
      if (controller.signal.aborted) {
        logger.error(`received ${sig} again while stopping: exiting now, without waiting for the stop to finish`);
        exit(128 + osConstants.signals[sig]);
        return;
      }
      logger.info(`received ${sig}: stopping; the datapath stays up for the next agent`);
      controller.abort();
    };
    source.on(sig, handler);
    return [sig, handler] as const;
  });
  return () => {
    for (const [sig, handler] of handlers) source.off(sig, handler);
  };
}

const invokedDirectly = process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (invokedDirectly || process.argv[1]?.endsWith("/weftd")) {
  main(process.argv.slice(2), process.env).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`weftd: ${errorMessage(err)}\n`);
      process.exit(1);
    },
  );
}
