import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExecaRunner, type KernelPort } from "@weft/kernel";
import { afterAll, describe, expect, it } from "vitest";
import { hostVethName } from "./direct/plan.js";
import { runCni, type PluginDeps } from "./plugin.js";

const root = mkdtempSync(join(tmpdir(), "weft-plugin-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** These tests never reach the kernel; any access is a bug in the code under test. */
const noKernel = new Proxy({} as KernelPort, {
  get: (_t, prop) => () => {
    throw new Error(`unexpected kernel access: ${String(prop)}`);
  },
});
const deps: PluginDeps = { runner: new ExecaRunner(), host: noKernel, container: () => noKernel };

const subnetFile = join(root, "subnet.env");
writeFileSync(subnetFile, "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.6.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
const env = (cmd: string, extra: Record<string, string> = {}) => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: "cid1",
  CNI_NETNS: "/run/netns/none",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/nonexistent",
  ...extra,
});
const conf = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ cniVersion: "1.1.0", name: "plugtest", type: "weft", subnetFile, ipam: { dataDir: join(root, "ipam") }, ...extra });

describe("CNI protocol", () => {
  it("VERSION lists every supported version", async () => {
    const out = await runCni({ CNI_COMMAND: "VERSION" }, '{"cniVersion":"0.4.0"}', deps);
    expect(out.exitCode).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ cniVersion: "1.1.0", supportedVersions: ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] });
  });

  it("errors are {cniVersion, code, msg} on stdout with exit code 1, in the config's version", async () => {
    const out = await runCni(env("ADD"), conf({ cniVersion: "0.4.0", mtu: "big" }), deps);
    expect(out.exitCode).toBe(1);
    expect(JSON.parse(out.stdout)).toEqual({ cniVersion: "0.4.0", code: 7, msg: 'invalid network config: "mtu" must be an integer between 68 and 65535, got "big"' });
  });

  it("an unsupported version is code 1", async () => {
    const out = await runCni(env("ADD"), conf({ cniVersion: "3.0.0" }), deps);
    expect(JSON.parse(out.stdout)).toMatchObject({ cniVersion: "1.1.0", code: 1 });
  });

  it("ADD before the agent wrote the subnet file is code 11 pointing at weftd", async () => {
    const out = await runCni(env("ADD"), conf({ subnetFile: join(root, "missing.env") }), deps);
    const e = JSON.parse(out.stdout);
    expect(e.code).toBe(11);
    expect(e.msg).toContain("the weft agent (weftd) is not up yet on this node");
  });

  it("STATUS: ready with a subnet file, code 50 without; needs cniVersion 1.1.0", async () => {
    expect(await runCni(env("STATUS"), conf(), deps)).toEqual({ stdout: "", exitCode: 0 });
    const down = JSON.parse((await runCni(env("STATUS"), conf({ subnetFile: join(root, "missing.env") }), deps)).stdout);
    expect(down.code).toBe(50);
    expect(down.msg).toContain("weftd");
    expect(JSON.parse((await runCni(env("STATUS"), conf({ cniVersion: "1.0.0" }), deps)).stdout).code).toBe(1);
  });

  it("CHECK needs cniVersion 0.4.0", async () => {
    expect(JSON.parse((await runCni(env("CHECK"), conf({ cniVersion: "0.3.1" }), deps)).stdout).msg).toMatch(/does not allow CHECK/);
  });

  it("DEL of an unknown container, without a namespace, succeeds (idempotent)", async () => {
    expect(await runCni(env("DEL", { CNI_NETNS: "", CNI_CONTAINERID: "never-added" }), conf(), deps)).toEqual({ stdout: "", exitCode: 0 });
    expect(await runCni(env("DEL", { CNI_NETNS: "", CNI_CONTAINERID: "never-added" }), conf(), deps)).toEqual({ stdout: "", exitCode: 0 });
  });

  it("DEL releases the container's reservations", async () => {
    const dir = join(root, "ipam", "plugtest");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "198.19.6.9"), "gone1\r\neth0");
    expect(existsSync(`/sys/class/net/${hostVethName("plugtest", "gone1", "eth0")}`)).toBe(false);
    expect((await runCni(env("DEL", { CNI_CONTAINERID: "gone1" }), conf(), deps)).exitCode).toBe(0);
    expect(existsSync(join(dir, "198.19.6.9"))).toBe(false);
  });

  it("GC releases reservations of attachments not in cni.dev/valid-attachments, and requires the list", async () => {
    const dir = join(root, "ipam", "plugtest");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "198.19.6.20"), "live\r\neth0");
    writeFileSync(join(dir, "198.19.6.21"), "leaked\r\neth0");
    const ok = await runCni({ CNI_COMMAND: "GC", CNI_PATH: "/x" }, conf({ "cni.dev/valid-attachments": [{ containerID: "live", ifname: "eth0" }] }), deps);
    expect(ok).toEqual({ stdout: "", exitCode: 0 });
    expect(existsSync(join(dir, "198.19.6.20"))).toBe(true);
    expect(existsSync(join(dir, "198.19.6.21"))).toBe(false);
    const missing = JSON.parse((await runCni({ CNI_COMMAND: "GC" }, conf(), deps)).stdout);
    expect(missing).toMatchObject({ code: 7 });
    expect(missing.msg).toContain("cni.dev/valid-attachments");
  });
});

describe("delegate mode", () => {
  // A stand-in delegate plugin: records its env and stdin, answers like a plugin.
  const bin = join(root, "bin");
  const rec = join(root, "rec");
  mkdirSync(bin, { recursive: true });
  mkdirSync(rec, { recursive: true });
  writeFileSync(
    join(bin, "fakebr"),
    `#!/bin/sh
cat > "${rec}/$CNI_COMMAND.$CNI_CONTAINERID.json"
echo "$CNI_IFNAME $CNI_NETNS" > "${rec}/$CNI_COMMAND.$CNI_CONTAINERID.env"
if [ "$CNI_CONTAINERID" = "fail" ] && [ "$CNI_COMMAND" = "ADD" ]; then
  echo '{"cniVersion":"1.0.0","code":11,"msg":"bridge is busy"}'; exit 1
fi
if [ "$CNI_COMMAND" = "ADD" ]; then echo '{"cniVersion":"1.0.0","ips":[{"address":"198.19.6.2/24"}]}'; fi
exit 0
`,
  );
  chmodSync(join(bin, "fakebr"), 0o755);
  const dataDir = join(root, "flannel-data");
  const dconf = (extra: Record<string, unknown> = {}) =>
    conf({ cniVersion: "1.0.0", dataDir, delegate: { type: "fakebr", hairpinMode: true, isDefaultGateway: true }, runtimeConfig: { portMappings: [] }, ...extra });
  const denv = (cmd: string, id: string) => env(cmd, { CNI_CONTAINERID: id, CNI_PATH: `/nonexistent:${bin}` });

  it("renders Flannel's delegate config, saves it, runs the delegate and prints its result", async () => {
    const out = await runCni(denv("ADD", "d1"), dconf(), deps);
    expect(out.exitCode).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ cniVersion: "1.0.0", ips: [{ address: "198.19.6.2/24" }] });
    const sent = JSON.parse(readFileSync(join(rec, "ADD.d1.json"), "utf8"));
    expect(sent).toEqual({
      type: "fakebr",
      hairpinMode: true,
      isDefaultGateway: true,
      name: "plugtest",
      cniVersion: "1.0.0",
      ipMasq: false, // the agent masquerades (FLANNEL_IPMASQ=true), so the bridge must not
      mtu: 1450,
      runtimeConfig: { portMappings: [] },
      ipam: { dataDir: join(root, "ipam"), type: "host-local", ranges: [[{ subnet: "198.19.6.0/24" }]], routes: [{ dst: "198.19.0.0/16" }] },
    });
    expect(JSON.parse(readFileSync(join(dataDir, "d1"), "utf8"))).toEqual(sent);
  });

  it("DEL runs the delegate with the SAVED config, then forgets it; a second DEL succeeds without the delegate", async () => {
    await runCni(denv("ADD", "d2"), dconf(), deps);
    const changed = dconf({ subnetFile: join(root, "missing.env"), delegate: { type: "fakebr", mtu: 9000 } });
    expect((await runCni(denv("DEL", "d2"), changed, deps)).exitCode).toBe(0);
    expect(JSON.parse(readFileSync(join(rec, "DEL.d2.json"), "utf8")).mtu).toBe(1450);
    expect(existsSync(join(dataDir, "d2"))).toBe(false);
    rmSync(join(rec, "DEL.d2.json"));
    expect((await runCni(denv("DEL", "d2"), changed, deps)).exitCode).toBe(0);
    expect(existsSync(join(rec, "DEL.d2.json"))).toBe(false);
  });

  it("CHECK runs the delegate's CHECK with the saved config and the runtime's prevResult", async () => {
    await runCni(denv("ADD", "d4"), dconf(), deps);
    const prevResult = { cniVersion: "1.0.0", ips: [{ address: "198.19.6.2/24" }] };
    expect((await runCni(denv("CHECK", "d4"), dconf({ prevResult }), deps)).exitCode).toBe(0);
    const sent = JSON.parse(readFileSync(join(rec, "CHECK.d4.json"), "utf8"));
    expect(sent.prevResult).toEqual(prevResult);
    expect(sent.mtu).toBe(1450);
    const unknown = JSON.parse((await runCni(denv("CHECK", "never"), dconf({ prevResult }), deps)).stdout);
    expect(unknown.msg).toMatch(/no saved delegate config/);
  });

  it("a failed delegate ADD passes its code through and undoes itself (delegate DEL, no saved file)", async () => {
    const out = await runCni(denv("ADD", "fail"), dconf(), deps);
    expect(out.exitCode).toBe(1);
    expect(JSON.parse(out.stdout)).toMatchObject({ code: 11, msg: "delegate plugin fakebr ADD failed: bridge is busy" });
    expect(existsSync(join(rec, "DEL.fail.json"))).toBe(true);
    expect(existsSync(join(dataDir, "fail"))).toBe(false);
  });

  it("a delegate missing from CNI_PATH is named with the path searched", async () => {
    const out = JSON.parse((await runCni(denv("ADD", "d3"), dconf({ delegate: { type: "nosuchplugin" } }), deps)).stdout);
    expect(out.code).toBe(7);
    expect(out.msg).toContain(`no executable "nosuchplugin" is in CNI_PATH (/nonexistent:${bin})`);
  });

  it("GC DELs and forgets saved attachments that are no longer valid", async () => {
    await runCni(denv("ADD", "g-live"), dconf(), deps);
    await runCni(denv("ADD", "g-dead"), dconf(), deps);
    const out = await runCni({ CNI_COMMAND: "GC", CNI_PATH: bin }, dconf({ cniVersion: "1.1.0", "cni.dev/valid-attachments": [{ containerID: "g-live", ifname: "eth0" }] }), deps);
    expect(out.exitCode).toBe(0);
    expect(existsSync(join(dataDir, "g-live"))).toBe(true);
    expect(existsSync(join(dataDir, "g-dead"))).toBe(false);
    expect(readFileSync(join(rec, "DEL.g-dead.env"), "utf8").trim()).toBe("eth0");
  });
});
