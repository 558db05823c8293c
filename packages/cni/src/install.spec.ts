import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { install, parseInstallArgs, UsageError } from "./install.js";

const root = mkdtempSync(join(tmpdir(), "weft-install-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const self = join(root, "weft-cni.cjs");
writeFileSync(self, "#!/usr/bin/env node\nconsole.log('plugin');\n");

describe("weft-cni install", () => {
  it("parses flags in both forms and requires the two directories", () => {
    expect(parseInstallArgs(["--bin-dir", "/opt/cni/bin", "--conf-dir=/etc/cni/net.d"])).toEqual({ binDir: "/opt/cni/bin", confDir: "/etc/cni/net.d", confName: "10-weft.conflist" });
    expect(() => parseInstallArgs(["--conf-dir", "/x"])).toThrow(UsageError);
    expect(() => parseInstallArgs(["--bin-dir", "/x", "--conf-dir", "/y", "--frob"])).toThrow(/unknown argument "--frob"/);
    expect(() => parseInstallArgs(["--bin-dir", "/x", "--conf-dir", "/y", "--conf-name", "weft.txt"])).toThrow(/must be a file name ending in .conflist/);
  });

  it("copies the plugin as `weft` (0755) and writes Flannel's default network with the weft plugin", async () => {
    const binDir = join(root, "bin");
    const confDir = join(root, "net.d");
    const r = await install({ binDir, confDir, confName: "10-weft.conflist" }, self);
    expect(r.plugin).toBe(join(binDir, "weft"));
    expect(readFileSync(r.plugin, "utf8")).toBe(readFileSync(self, "utf8"));
    expect(statSync(r.plugin).mode & 0o777).toBe(0o755);
    expect(JSON.parse(readFileSync(r.conflist, "utf8"))).toEqual({
      name: "cbr0",
      cniVersion: "1.0.0",
      cniVersions: ["1.0.0", "1.1.0"],
      plugins: [
        { type: "weft", isDefaultGateway: true, hairpinMode: true },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    });
    // Atomic: no temporary files are left behind.
    expect(readdirSync(binDir)).toEqual(["weft"]);
    expect(readdirSync(confDir)).toEqual(["10-weft.conflist"]);
  });

  it("installs a given conflist, rejects a broken one, and can pin the interpreter", async () => {
    const binDir = join(root, "bin2");
    const confDir = join(root, "net2.d");
    const mine = join(root, "mine.conflist");
    writeFileSync(mine, JSON.stringify({ name: "podnet", cniVersion: "1.0.0", plugins: [{ type: "weft", bridge: "weft0" }] }));
    const r = await install({ binDir, confDir, confName: "20-podnet.conflist", conflist: mine, node: "/usr/local/bin/node" }, self);
    expect(JSON.parse(readFileSync(r.conflist, "utf8")).name).toBe("podnet");
    expect(readFileSync(r.plugin, "utf8")).toBe("#!/usr/local/bin/node\nconsole.log('plugin');\n");
    writeFileSync(mine, "{\"name\": \"x\"}");
    await expect(install({ binDir, confDir, confName: "20-podnet.conflist", conflist: mine }, self)).rejects.toThrow(/not a conflist/);
  });
});
