import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FileSysctlRecords, SYSCTL_RECORDS_FILE, canonicalSysctlKey } from "./owned.js";

describe("FileSysctlRecords", () => {
  it("keeps the originals in <stateDir>/sysctls.json, mode 0600, and reads them back", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-sysctl-"));
    try {
      const r = new FileSysctlRecords(join(dir, "state"));
      expect(await r.load()).toEqual({});
      await r.save({ "net.ipv4.conf.eth0.rp_filter": "1" });
      const file = join(dir, "state", SYSCTL_RECORDS_FILE);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({ originals: { "net.ipv4.conf.eth0.rp_filter": "1" } });
      expect(await new FileSysctlRecords(join(dir, "state")).load()).toEqual({ "net.ipv4.conf.eth0.rp_filter": "1" });
      writeFileSync(file, "[1]");
      await expect(r.load()).rejects.toThrow(/sysctls\.json: not a sysctl record file .*restore the keys it named by hand and delete it/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("canonical keys: dotted, or slash form when a segment holds a dot", () => {
    expect(canonicalSysctlKey("net/ipv4/conf/eth0/rp_filter")).toBe("net.ipv4.conf.eth0.rp_filter");
    expect(canonicalSysctlKey("net/ipv4/conf/weft.1/rp_filter")).toBe("net/ipv4/conf/weft.1/rp_filter");
    expect(() => canonicalSysctlKey("net.ipv4.conf.a b")).toThrow(/sysctl key/);
  });
});
