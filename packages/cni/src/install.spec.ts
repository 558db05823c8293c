import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FALLBACK_MARKER, FALLBACK_SLOT_SIZE, install, parseInstallArgs, patchShim, readShimFallback, UsageError } from "./install.js";

const root = mkdtempSync(join(tmpdir(), "weft-install-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const self = join(root, "weft-cni.cjs");
writeFileSync(self, "#!/usr/bin/env node\nconsole.log('plugin');\n");
// A stand-in for the built shim: the marker as a constant (not a slot), then the slot (marker + zeros).
const slot = () => Buffer.concat([Buffer.from(FALLBACK_MARKER), Buffer.alloc(FALLBACK_SLOT_SIZE - FALLBACK_MARKER.length)]);
const fakeShim = Buffer.concat([Buffer.from("\x7fELF..."), Buffer.from(`${FALLBACK_MARKER}\0other`), slot(), Buffer.from("tail")]);
writeFileSync(join(root, "weft-cni-shim"), fakeShim);
/** The fallback path written into an installed shim's slot. */
function slotPath(installed: Buffer): string {
  const at = installed.indexOf(Buffer.from(`${FALLBACK_MARKER}/`));
  return installed.subarray(at + FALLBACK_MARKER.length, installed.indexOf(0, at)).toString();
}

describe("weft-cni install", () => {
  it("parses flags in both forms and requires the two directories", () => {
    expect(parseInstallArgs(["--bin-dir", "/opt/cni/bin", "--conf-dir=/etc/cni/net.d"])).toEqual({ binDir: "/opt/cni/bin", confDir: "/etc/cni/net.d", confName: "10-weft.conflist" });
    expect(() => parseInstallArgs(["--conf-dir", "/x"])).toThrow(UsageError);
    expect(() => parseInstallArgs(["--bin-dir", "/x", "--conf-dir", "/y", "--frob"])).toThrow(/unknown argument "--frob"/);
    expect(() => parseInstallArgs(["--bin-dir", "/x", "--conf-dir", "/y", "--conf-name", "weft.txt"])).toThrow(/must be a file name ending in .conflist/);
  });

  it("installs the shim as `weft` (0755) pointing at the Node plugin `weft-cni`, and Flannel's default network with the weft plugin", async () => {
    const binDir = join(root, "bin");
    const confDir = join(root, "net.d");
    const r = await install({ binDir, confDir, confName: "10-weft.conflist" }, self);
    expect(r.plugin).toBe(join(binDir, "weft"));
    expect(r.fallback).toBe(join(binDir, "weft-cni"));
    expect(readFileSync(r.fallback, "utf8")).toBe(readFileSync(self, "utf8"));
    const installed = readFileSync(r.plugin);
    expect(installed.length).toBe(fakeShim.length);
    expect(slotPath(installed)).toBe(join(binDir, "weft-cni"));
    // Only the slot changed: the constant copy of the marker and the rest are as built.
    expect(installed.subarray(0, installed.indexOf(Buffer.from(`${FALLBACK_MARKER}/`)))).toEqual(fakeShim.subarray(0, fakeShim.indexOf(slot())));
    expect(statSync(r.plugin).mode & 0o777).toBe(0o755);
    expect(statSync(r.fallback).mode & 0o777).toBe(0o755);
    expect(JSON.parse(readFileSync(r.conflist, "utf8"))).toEqual({
      name: "cbr0",
      cniVersion: "1.0.0",
      cniVersions: ["1.0.0", "1.1.0"],
      plugins: [
        { type: "weft", isDefaultGateway: true, hairpinMode: true },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    });
    // What weftctl doctor reads back: the fallback in the installed shim; an empty slot in the built one; no slot in
    // the Node plugin.
    expect(readShimFallback(installed)).toEqual({ fallback: join(binDir, "weft-cni") });
    expect(readShimFallback(fakeShim)).toEqual({ fallback: undefined });
    expect(readShimFallback(readFileSync(r.fallback))).toBeUndefined();
    expect(readShimFallback(Buffer.from(`${FALLBACK_MARKER}\0/run/weft/cni.sock\0`))).toBeUndefined();
    // Atomic: no temporary files are left behind.
    expect(readdirSync(binDir).sort()).toEqual(["weft", "weft-cni"]);
    expect(readdirSync(confDir)).toEqual(["10-weft.conflist"]);
  });

  it("installs a given conflist, rejects a broken one, and can pin the interpreter", async () => {
    const binDir = join(root, "bin2");
    const confDir = join(root, "net2.d");
    const mine = join(root, "mine.conflist");
    writeFileSync(mine, JSON.stringify({ name: "podnet", cniVersion: "1.0.0", plugins: [{ type: "weft", bridge: "weft0" }] }));
    const r = await install({ binDir, confDir, confName: "20-podnet.conflist", conflist: mine, node: "/usr/local/bin/node" }, self);
    expect(JSON.parse(readFileSync(r.conflist, "utf8")).name).toBe("podnet");
    expect(readFileSync(r.fallback, "utf8")).toBe("#!/usr/local/bin/node\nconsole.log('plugin');\n");
    writeFileSync(mine, "{\"name\": \"x\"}");
    await expect(install({ binDir, confDir, confName: "20-podnet.conflist", conflist: mine }, self)).rejects.toThrow(/not a conflist/);
  });

  it("refuses a shim without an empty slot, a relative or too long fallback path, and a missing shim", async () => {
    expect(() => patchShim(Buffer.from(`${FALLBACK_MARKER}\0xyz`), "/opt/cni/bin/weft-cni")).toThrow(/no empty fallback slot/);
    expect(() => patchShim(fakeShim, "bin/weft-cni")).toThrow(/must be absolute/);
    expect(() => patchShim(fakeShim, `/${"x".repeat(FALLBACK_SLOT_SIZE)}`)).toThrow(/longer than the shim's slot/);
    await expect(install({ binDir: join(root, "bin3"), confDir: join(root, "net3.d"), confName: "10-weft.conflist" }, self, join(root, "nope"))).rejects.toThrow(
      /shim .*nope cannot be read.*npm run build/,
    );
  });
});
