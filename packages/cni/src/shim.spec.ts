/**
 * The real C shim (compiled from shim/weft-cni-shim.c) against weftd's CNI server in this process, and the real
 * Node plugin (src/main.ts, bundled) as a process, given the same hostile CNI_* environment: the runtime must get
 * the same answer (exit code and CNI error code) through either path. Needs no root, no namespace, no podman: the
 * kernel ports refuse any use, and every case here is turned away before anything would reach them.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type KernelPort, type ProcessRunner, SpawnRunner } from "@weft/kernel";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ProcessOutcome, runPluginProcess, runProcess, shimBinary } from "./plugin-process.spec-helper.js";
import { CniServer, decodeCniRequest } from "./server.js";

async function haveCompiler(): Promise<boolean> {
  const r = await new SpawnRunner().run("cc", ["--version"], { reject: false }).catch(() => undefined);
  return r?.exitCode === 0;
}
// A CI machine must have the compiler (npm run build needs it); elsewhere the shim cases are skipped, not faked.
const compiler = (await haveCompiler()) || process.env.CI === "true";

const root = mkdtempSync(join(tmpdir(), "weft-cni-shim-"));
const noKernel = new Proxy({} as KernelPort, {
  get: (_t, p) => () => Promise.reject(new Error(`kernel.${String(p)} called by a case that must be refused first`)),
});
const noRunner = {
  run: () => Promise.reject(new Error("no processes")),
  spawn: () => {
    throw new Error("no processes");
  },
} as unknown as ProcessRunner;
let server: CniServer | undefined;
const socketPath = join(root, "run", "cni.sock");
const subnetFile = join(root, "subnet.env");
const plainFile = join(root, "plain");

beforeAll(async () => {
  if (!compiler) return;
  mkdirSync(join(root, "run"), { mode: 0o755 });
  writeFileSync(subnetFile, "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
  writeFileSync(plainFile, "");
  server = new CniServer({ socketPath, deps: { runner: noRunner, host: noKernel, container: () => noKernel } });
  await server.start();
  await shimBinary();
}, 120_000);
afterAll(async () => {
  await server?.close();
  rmSync(root, { recursive: true, force: true });
});

// "lo" exists and is not a bridge: a request that got past validation would stop there (code 7), never at a kernel.
const conf = () => JSON.stringify({ cniVersion: "1.1.0", name: "shimtest", type: "weft", bridge: "lo", subnetFile, agentSocket: socketPath, ipam: { dataDir: join(root, "ipam") } });

function codeOf(o: ProcessOutcome): number | "ok" {
  if (o.exitCode === 0) return "ok";
  const e = JSON.parse(o.stdout) as { code: number; msg: string };
  expect(e.msg).not.toMatch(/[\u0000-\u001f]/);
  return e.code;
}

describe.skipIf(!compiler)("the shim and the Node plugin answer hostile CNI_* values alike", () => {
  const add = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c1", CNI_NETNS: "/proc/self/ns/net", CNI_IFNAME: "eth0", CNI_PATH: "/nonexistent" };
  const cases: [string, Record<string, string>, number | "ok"][] = [
    ["CNI_IFNAME=-eth0", { ...add, CNI_IFNAME: "-eth0" }, 4],
    ["CNI_IFNAME=$(id)", { ...add, CNI_IFNAME: "$(id)" }, 4],
    ["CNI_IFNAME=éth0", { ...add, CNI_IFNAME: "éth0" }, 4],
    ["CNI_IFNAME empty", { ...add, CNI_IFNAME: "" }, 4],
    ["CNI_IFNAME of 16 bytes", { ...add, CNI_IFNAME: "eth0123456789abc" }, 4],
    ["CNI_NETNS missing", (({ CNI_NETNS: _n, ...rest }) => rest)(add), 4],
    ["CNI_NETNS a plain file", { ...add, CNI_NETNS: plainFile }, 4],
    ["CNI_NETNS relative", { ...add, CNI_NETNS: "netns/x" }, 4],
    ["CNI_NETNS a mount namespace", { ...add, CNI_NETNS: "/proc/self/ns/mnt" }, 4],
    ["CNI_CONTAINERID=$(id)", { ...add, CNI_CONTAINERID: "$(id)" }, 4],
    ["CNI_COMMAND with a newline", { ...add, CNI_COMMAND: "ADD\n" }, 4],
    ["a CNI_ variable with a lower-case name", { CNI_COMMAND: "VERSION", CNI_lower: "1", "CNI_x-y": "2" }, "ok"],
    ["a CNI_* environment over 64 KiB", { CNI_COMMAND: "VERSION", CNI_ARGS: "K=".padEnd(70_000, "v") }, 4],
  ];
  it.each(cases)("%s", async (_label, env, want) => {
    const viaShim = await runProcess(await shimBinary(), [], env, conf(), 20_000);
    const viaPlugin = await runPluginProcess(env, conf());
    expect(viaShim.timedOut || viaPlugin.timedOut).toBe(false);
    expect({ shim: codeOf(viaShim), plugin: codeOf(viaPlugin) }).toEqual({ shim: want, plugin: want });
    expect(viaShim.exitCode).toBe(viaPlugin.exitCode);
  }, 60_000);
});

describe.skipIf(!compiler)("the shim and the Node plugin answer a hostile config alike", () => {
  it.each([
    ["a config over 1 MiB", JSON.stringify({ cniVersion: "1.0.0", agentSocket: socketPath, name: "big", pad: "x".repeat(1024 * 1024) }), 7],
    // Without a readable agentSocket the shim tries the default socket, then runs its fallback (the Node plugin).
    ["a config that is not JSON", "{\u001b[2J", 6],
    ["a config with a newline in the name", JSON.stringify({ cniVersion: "1.0.0", agentSocket: socketPath, name: "a\nb", type: "weft" }), 7],
  ] as const)("%s", async (_label, stdin, want) => {
    const env = { CNI_COMMAND: "DEL", CNI_CONTAINERID: "c1", CNI_IFNAME: "eth0" };
    const viaShim = await runProcess(await shimBinary(), [], env, stdin, 20_000);
    const viaPlugin = await runPluginProcess(env, stdin);
    expect({ shim: codeOf(viaShim), plugin: codeOf(viaPlugin) }).toEqual({ shim: want, plugin: want });
  }, 60_000);
});

describe("the CNI socket's request decoding", () => {
  it("takes the first of duplicate entries, as getenv does for the Node plugin", () => {
    const body = Buffer.from("CNI_COMMAND=ADD\0CNI_IFNAME=eth0\0CNI_IFNAME=-x\0\0{}", "utf8");
    expect(decodeCniRequest(body).env).toEqual({ CNI_COMMAND: "ADD", CNI_IFNAME: "eth0" });
  });
});
