/**
 * weftctl's command dispatch: parses the command line, runs one command, writes to the given streams and returns
 * the exit code (0 fine, 1 a failure or a FAIL, 2 a usage error). Kept apart from main.ts so tests run it in
 * process with a FakeKernel.
 */
import { errorMessage } from "@weft/core";
import type { KernelPort } from "@weft/kernel";
import { optionsHelp, parseOptions, UsageError, type OptionDefs } from "./args.js";
import { doctorFailed, renderDoctor, runDoctor } from "./doctor.js";
import { fetchDrift, inSync, renderDrift } from "./drift.js";
import { escapeOutput, safeJson } from "./escape.js";
import { DEFAULT_ENDPOINT, EndpointError, parseEndpoint } from "./http-client.js";
import { renderPeers, sortPeers } from "./peers.js";
import { fetchStatus, renderStatus } from "./status.js";

export interface CliIO {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The node's kernel (LinuxKernel over ExecaRunner in main.ts); made only when a command needs it. */
  readonly kernel: () => KernelPort;
  readonly version?: string;
}

const endpointOpt = (env: CliIO["env"]) => ({
  kind: "string",
  placeholder: "url",
  help: "weftd's health server, http://<healthz-ip>:<healthz-port> (env WEFTCTL_ENDPOINT)",
  default: env.WEFTCTL_ENDPOINT || DEFAULT_ENDPOINT,
}) as const;
const jsonOpt = { kind: "bool", help: "print JSON for machines instead of text" } as const;
const helpOpt = { kind: "bool", help: "print this help" } as const;

interface Command {
  readonly summary: string;
  readonly usage: string;
  readonly options: (env: CliIO["env"]) => OptionDefs;
  readonly run: (values: Readonly<Record<string, string | boolean | undefined>>, given: ReadonlySet<string>, io: CliIO) => Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  status: {
    summary: "weftd's phase, readiness, subnet(s), public IP(s), backend, MTU and peer counts",
    usage: "weftctl status [--endpoint URL] [--json]",
    options: (env) => ({ endpoint: endpointOpt(env), json: jsonOpt, help: helpOpt }),
    run: async (v, _given, io) => {
      const endpoint = String(v.endpoint);
      parseEndpoint(endpoint);
      const r = await fetchStatus(endpoint);
      io.stdout(v.json ? safeJson(r) + "\n" : renderStatus(r));
      return r.readyz.ready ? 0 : 1;
    },
  },
  peers: {
    summary: "the peers weftd knows: subnet key, public IP, state and reason",
    usage: "weftctl peers [--endpoint URL] [--json]",
    options: (env) => ({ endpoint: endpointOpt(env), json: jsonOpt, help: helpOpt }),
    run: async (v, _given, io) => {
      const endpoint = String(v.endpoint);
      parseEndpoint(endpoint);
      const r = await fetchStatus(endpoint);
      io.stdout(v.json ? safeJson(sortPeers(r.status.peers)) + "\n" : renderPeers(r.status.peers));
      return 0;
    },
  },
  drift: {
    summary: "what weftd's next full reconcile would change (missing, differing, stale kernel objects); changes nothing",
    usage: "weftctl drift [--endpoint URL] [--json]",
    options: (env) => ({ endpoint: endpointOpt(env), json: jsonOpt, help: helpOpt }),
    run: async (v, _given, io) => {
      const endpoint = String(v.endpoint);
      parseEndpoint(endpoint);
      const kinds = await fetchDrift(endpoint);
      io.stdout(v.json ? safeJson(kinds) + "\n" : renderDrift(kinds));
      return inSync(kinds) ? 0 : 1;
    },
  },
  doctor: {
    summary: "local checks (subnet.env, forwarding, br_netfilter, CNI plugin, config and socket, weftd, devices, routes, MTU), each with its fix",
    usage: "weftctl doctor [--subnet-file FILE] [--cni-bin-dir DIR] [--cni-conf-dir DIR] [--cni-socket PATH] [--endpoint URL] [--json]",
    options: (env) => ({
      "subnet-file": { kind: "string", placeholder: "file", help: "the subnet.env weftd writes (its --subnet-file)", default: "/run/weft/subnet.env" },
      "cni-bin-dir": { kind: "string", placeholder: "dir", help: "where the container runtime looks for CNI plugins", default: "/opt/cni/bin" },
      "cni-conf-dir": { kind: "string", placeholder: "dir", help: "where the container runtime looks for CNI configs", default: "/etc/cni/net.d" },
      "cni-socket": { kind: "string", placeholder: "path", help: "weftd's CNI socket (its --cni-socket); default: the weft plugin's agentSocket in the CNI config, else /run/weft/cni.sock" },
      endpoint: endpointOpt(env),
      json: jsonOpt,
      help: helpOpt,
    }),
    run: async (v, given, io) => {
      const endpoint = String(v.endpoint);
      parseEndpoint(endpoint);
      const checks = await runDoctor({
        kernel: io.kernel(),
        subnetFile: String(v["subnet-file"]),
        cniBinDir: String(v["cni-bin-dir"]),
        cniConfDir: String(v["cni-conf-dir"]),
        ...(v["cni-socket"] !== undefined ? { cniSocket: String(v["cni-socket"]) } : {}),
        endpoint,
        endpointGiven: given.has("endpoint") || !!io.env.WEFTCTL_ENDPOINT,
      });
      const failed = doctorFailed(checks);
      io.stdout(v.json ? safeJson({ ok: !failed, checks }) + "\n" : renderDoctor(checks));
      return failed ? 1 : 0;
    },
  },
};

export function mainHelp(): string {
  return [
    "Usage: weftctl <command> [flags]",
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)}${c.summary}`),
    "",
    "Run weftctl <command> --help for its flags. Exit codes: 0 fine, 1 a failure (weftd unreachable or not ready, a doctor FAIL), 2 a usage error.",
  ].join("\n") + "\n";
}

function commandHelp(name: string, c: Command, env: CliIO["env"]): string {
  return `Usage: ${c.usage}\n\n${c.summary}\n\nFlags:\n${optionsHelp(c.options(env))}\n`;
}

/**
 * Runs one weftctl command. Everything written to `io.stdout` / `io.stderr` passes through escapeOutput: whatever a
 * renderer missed, no control character but newline reaches the terminal (fields from weftd are escaped where they
 * are rendered, newlines included; --json escapes DEL, C1 and bidi controls as \\u escapes).
 */
export async function runCli(argv: readonly string[], rawIo: CliIO): Promise<number> {
  const io: CliIO = { ...rawIo, stdout: (t) => rawIo.stdout(escapeOutput(t)), stderr: (t) => rawIo.stderr(escapeOutput(t)) };
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    const topic = name === "help" && rest[0] ? COMMANDS[rest[0]] : undefined;
    io.stdout(topic ? commandHelp(rest[0]!, topic, io.env) : mainHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "version") {
    io.stdout(`weftctl ${io.version ?? "unknown"}\n`);
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    io.stderr(`weftctl: unknown command ${JSON.stringify(name)}: use one of ${Object.keys(COMMANDS).join(", ")} (weftctl --help)\n`);
    return 2;
  }
  try {
    const { values, given } = parseOptions(name, cmd.options(io.env), rest);
    if (values.help) {
      io.stdout(commandHelp(name, cmd, io.env));
      return 0;
    }
    return await cmd.run(values, given, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`${err.message}\n`);
      return 2;
    }
    if (err instanceof EndpointError) {
      io.stderr(`weftctl ${name}: ${err.message}\n`);
      return 1;
    }
    const line = errorMessage(err).split("\n")[0] ?? "";
    io.stderr(`weftctl ${name}: ${line.length > 300 ? `${line.slice(0, 300)}...` : line}\n`);
    return 1;
  }
}
