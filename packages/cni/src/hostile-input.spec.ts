/**
 * Hostile CNI input found by the adversarial probe of issue 15 (#13, and #2 for weft-cni): each case must get the
 * CNI spec's error code with one clear line, and change nothing. The kernel ports refuse any use: every one of
 * these requests must be turned away before anything is reserved, created or configured.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KernelPort, ProcessRunner } from "@weft/kernel";
import { afterAll, describe, expect, it } from "vitest";
import { decodeConfig, parseEnv, parseNetConf } from "./config.js";
import { CniError } from "./errors.js";
import { netnsProblem } from "@weft/kernel";
import { type PluginDeps, runCni } from "./plugin.js";
import { runPluginProcess } from "./plugin-process.spec-helper.js";
import { CniServer } from "./server.js";

const root = mkdtempSync(join(tmpdir(), "weft-cni-hostile-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const noKernel = new Proxy({} as KernelPort, {
  get: (_t, prop) => () => {
    throw new Error(`unexpected kernel access: ${String(prop)}`);
  },
});
const noRunner: ProcessRunner = {
  run: () => Promise.reject(new Error("unexpected process")),
  spawn: () => {
    throw new Error("unexpected process");
  },
} as unknown as ProcessRunner;
const deps: PluginDeps = { runner: noRunner, host: noKernel, container: () => noKernel };

const subnetFile = join(root, "subnet.env");
writeFileSync(subnetFile, "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.6.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
const ipamDir = join(root, "ipam");
// The bridge is "lo": a device that exists and is not a bridge, so a request that gets past validation stops at
// the first node check (code 7) instead of reaching the node's kernel.
const conf = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ cniVersion: "1.1.0", name: "hostile", type: "weft", bridge: "lo", subnetFile, ipam: { dataDir: ipamDir }, ...extra });
const env = (cmd: string, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: "c1",
  CNI_NETNS: "/proc/self/ns/net",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/nonexistent",
  ...extra,
});

interface ErrorAnswer {
  cniVersion: string;
  code: number;
  msg: string;
}

async function answer(e: Record<string, string | undefined>, stdin: string): Promise<ErrorAnswer> {
  const out = await runCni(e, stdin, deps);
  expect(out.exitCode).toBe(1);
  return JSON.parse(out.stdout) as ErrorAnswer;
}

/** One short line: no control characters, no megabytes. */
function expectOneLine(msg: string): void {
  expect(msg).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
  expect(msg.length).toBeLessThan(600);
}

function reservations(): string[] {
  return existsSync(join(ipamDir, "hostile")) ? readdirSync(join(ipamDir, "hostile")).filter((f) => /^\d/.test(f)) : [];
}

describe("CNI_IFNAME: anything Linux or ip would refuse or misread is code 4 (invalid environment), through every command", () => {
  const bad = ["-eth0", "$(id)", "éth0", "", "eth0123456789abc", "a/b", "a b", "eth0\n", "eth0\t", ".", "..", "eth%d", "eth0:1", "\u001b[31mx", "eth0@if2", "a".repeat(60_000)];
  it.each(bad.map((v) => [JSON.stringify(v).slice(0, 40), v]))("CNI_IFNAME=%s", async (_label, ifname) => {
    for (const cmd of ["ADD", "DEL", "CHECK"]) {
      const e = await answer(env(cmd, { CNI_IFNAME: ifname }), conf({ prevResult: { cniVersion: "1.1.0" } }));
      expect(e.code, `${cmd}: ${e.msg}`).toBe(4);
      expect(e.msg).toMatch(/^CNI_IFNAME /);
      expectOneLine(e.msg);
    }
    expect(reservations()).toEqual([]);
  });

  it("usual names are accepted", () => {
    for (const ifname of ["eth0", "net1", "eth0.100", "e_1-x", "A1", "_x", "123456789012345"]) {
      expect(parseEnv({ CNI_COMMAND: "ADD", CNI_CONTAINERID: "c", CNI_NETNS: "/run/netns/x", CNI_IFNAME: ifname }).ifname).toBe(ifname);
    }
  });
});

describe("CNI_NETNS: ADD and CHECK need a network namespace (code 4), DEL tolerates a gone one", () => {
  const plainFile = join(root, "not-a-netns");
  writeFileSync(plainFile, "");
  it.each([
    ["unset", undefined, /CNI_NETNS is required/],
    ["relative", "run/netns/x", /CNI_NETNS .* must be an absolute path/],
    ["missing", join(root, "no-such-netns"), /CNI_NETNS .* does not exist/],
    ["a plain file", plainFile, /CNI_NETNS .* is not a network namespace/],
    ["a directory", root, /CNI_NETNS .* is not a network namespace/],
    ["another kind of namespace", "/proc/self/ns/mnt", /CNI_NETNS .* is a mnt namespace, not a network namespace/],
    ["with control characters", "/run/netns/\u001b[2J\n", /CNI_NETNS .*\\u001b\[2J\\n/],
  ])("%s", async (_label, netns, re) => {
    for (const cmd of ["ADD", "CHECK"]) {
      const e = await answer(env(cmd, { CNI_NETNS: netns }), conf({ prevResult: { cniVersion: "1.1.0", interfaces: [{ name: "eth0", sandbox: "/x" }] } }));
      expect(e.code, `${cmd}: ${e.msg}`).toBe(4);
      expect(e.msg).toMatch(re);
      expectOneLine(e.msg);
    }
    expect(reservations()).toEqual([]);
  });

  it("a network namespace passes the check, a gone one is fine for DEL", async () => {
    expect(netnsProblem("/proc/self/ns/net")).toBeUndefined();
    expect(await runCni(env("DEL", { CNI_NETNS: join(root, "gone-netns") }), conf(), deps)).toEqual({ stdout: "", exitCode: 0 });
    expect(await runCni(env("DEL", { CNI_NETNS: plainFile }), conf(), deps)).toEqual({ stdout: "", exitCode: 0 });
  });
});

describe("network name: the CNI spec's rule (^[a-zA-Z0-9][a-zA-Z0-9_.-]*$), code 7", () => {
  it.each(["cbr0\n", "cbr0\nx", "-cbr0", ".hidden", "cb r0", "é", "a:b", "\u001b[31mred", "x".repeat(300)])("%j", async (name) => {
    let err: unknown;
    try {
      parseNetConf({ cniVersion: "1.0.0", name, type: "weft" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).code).toBe(7);
    expect((err as CniError).message).toMatch(/^invalid network config: "name" /);
    expectOneLine((err as CniError).message);
    // And through the plugin: nothing named after it appears in the IPAM directory.
    const e = await answer(env("DEL"), conf({ name }));
    expect(e.code).toBe(7);
    expect(existsSync(ipamDir) ? readdirSync(ipamDir).filter((d) => d !== "hostile") : []).toEqual([]);
  });

  it("usual names are accepted", () => {
    for (const name of ["cbr0", "my-net_1.x", "0", "k8s-pod-network"]) expect(parseNetConf({ cniVersion: "1.0.0", name }).name).toBe(name);
  });
});

describe("data directories: a file or a pseudo filesystem is one line naming the field, code 7, nothing changed", () => {
  it("ipam.dataDir that is a file (DEL and ADD)", async () => {
    const file = join(root, "ipam-file");
    writeFileSync(file, "keep");
    for (const cmd of ["DEL", "ADD"]) {
      const e = await answer(env(cmd), conf({ bridge: "cni0", ipam: { dataDir: file } }));
      expect(e.code, `${cmd}: ${e.msg}`).toBe(7);
      expect(e.msg).toMatch(/"?ipam\.dataDir"?/);
      expect(e.msg).toContain(file);
      expect(e.msg).not.toMatch(/ENOTDIR/);
      expectOneLine(e.msg);
    }
    expect(readFileSync(file, "utf8")).toBe("keep");
  });

  it("delegate dataDir that is a file", async () => {
    const file = join(root, "delegate-file");
    writeFileSync(file, "keep");
    const e = await answer(env("ADD"), conf({ dataDir: file, delegate: { type: "bridge" } }));
    expect(e.code).toBe(7);
    expect(e.msg).toMatch(/"?dataDir"?/);
    expect(e.msg).toContain(file);
    expectOneLine(e.msg);
    expect(readFileSync(file, "utf8")).toBe("keep");
  });

  // Node 20's recursive mkdir loops forever under /proc: run the real plugin as a process, killed if it hangs.
  it("ipam.dataDir under /proc (directly or through a symlink) answers code 7 at once instead of spinning", async () => {
    const link = join(root, "to-proc");
    symlinkSync("/proc", link);
    mkdirSync(join(root, "state"), { recursive: true });
    for (const dataDir of ["/proc/weft-hostile/x", join(link, "weft-hostile")]) {
      const out = await runPluginProcess(
        { CNI_COMMAND: "DEL", CNI_CONTAINERID: "c1", CNI_IFNAME: "eth0", CNI_NETNS: "", CNI_PATH: "/nonexistent" },
        conf({ ipam: { dataDir } }),
        20_000,
      );
      expect(out.timedOut, `the plugin spun on ipam.dataDir=${dataDir}`).toBe(false);
      expect(out.exitCode).toBe(1);
      const e = JSON.parse(out.stdout) as ErrorAnswer;
      expect(e.code).toBe(7);
      expect(e.msg).toContain("ipam.dataDir");
      expect(e.msg).toMatch(/\/proc/);
      expectOneLine(e.msg);
    }
  }, 60_000);
});

describe("weftd --cni-socket in a place no directory can be made (issue 15 #2)", () => {
  // Node 20's recursive mkdir under /proc never returns (checked on a child: `mkdirSync("/proc/x/y", {recursive})`
  // is still spinning after 5 s); the socket directory is now made a component at a time after a check.
  it.each([
    ["under /proc", "/proc/weft-hostile/cni.sock", /--cni-socket: "\/proc\/weft-hostile" is on \/proc/],
    ["under a file", join(root, "socket-file", "cni.sock"), /--cni-socket: ".*socket-file" exists and is not a directory/],
  ])("%s: start() refuses with one line naming the flag", async (_label, socketPath, re) => {
    writeFileSync(join(root, "socket-file"), "");
    const server = new CniServer({ socketPath, deps });
    const err = await server.start().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(re);
    expectOneLine(err!.message);
    await server.close();
  });
});

describe("config keys as Flannel's plugin (Go encoding/json) reads them: case-insensitive, the last in the text wins", () => {
  const read = (text: string) => parseNetConf(decodeConfig(text));
  it("matches keys case-insensitively, at the top level and in ipam", () => {
    const c = read(`{"CNIVersion":"1.0.0","Name":"cbr0","SubnetFile":"/run/x.env","IPAM":{"DataDir":"/var/lib/x","Routes":[{"DST":"198.18.0.0/15"}]}}`);
    expect(c).toMatchObject({ cniVersion: "1.0.0", name: "cbr0", subnetFile: "/run/x.env", ipam: { dataDir: "/var/lib/x", routes: [{ dst: "198.18.0.0/15" }] } });
  });
  it("of keys that differ only in case, the last in the text wins (also when an exact repeat comes between)", () => {
    expect(read(`{"cniVersion":"1.0.0","name":"a","NAME":"b"}`).name).toBe("b");
    expect(read(`{"cniVersion":"1.0.0","name":"a","NAME":"b","name":"c"}`).name).toBe("c");
    expect(read(`{"cniVersion":"1.0.0","name":"a","mtu":1400,"MTU":1300}`).mtu).toBe(1300);
  });
  it("1e400 is refused as out of range (JSON.parse would make it Infinity), code 7 naming the field", () => {
    let err: unknown;
    try {
      read(`{"cniVersion":"1.0.0","name":"a","mtu":1e400}`);
    } catch (e) {
      err = e;
    }
    expect((err as CniError).code).toBe(7);
    expect((err as CniError).message).toMatch(/mtu/);
  });
});
