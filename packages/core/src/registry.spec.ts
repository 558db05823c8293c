import "reflect-metadata";
import { describe, expect, it } from "vitest";
import type { BackendModule } from "./backend.js";
import { WeftError } from "./errors.js";
import { BackendRegistry } from "./registry.js";

const mod = (type: string): BackendModule => ({
  type,
  configSchema: { parse: (x) => x },
  mtuOverhead: () => 0,
  register: () => {},
});

describe("BackendRegistry", () => {
  it("looks types up case-insensitively", () => {
    const r = new BackendRegistry();
    r.add(mod("host-gw"));
    r.add(mod("vxlan"));
    expect(r.get("VXLAN").type).toBe("vxlan");
    expect(r.types()).toEqual(["host-gw", "vxlan"]);
  });
  it("fails an unknown type listing the known ones", () => {
    const r = new BackendRegistry();
    r.add(mod("vxlan"));
    r.add(mod("host-gw"));
    const e = (() => {
      try {
        r.get("udp");
      } catch (err) {
        return err as WeftError;
      }
    })();
    expect(e?.code).toBe("BACKEND_UNKNOWN");
    expect(e?.message).toContain('unknown backend type "udp"');
    expect(e?.message).toContain("known types are host-gw, vxlan");
  });
  it("rejects modules that are not backend modules, and duplicate types", () => {
    const r = new BackendRegistry();
    expect(() => r.add({ type: "x" }, "./my-backend.js")).toThrow(/\.\/my-backend\.js is not a Weft backend module/);
    r.add(mod("vxlan"));
    expect(() => r.add(mod("VxLan"), "evil-pkg")).toThrow(WeftError);
    expect(() => r.add(mod("VxLan"), "evil-pkg")).toThrow(expect.objectContaining({ code: "BACKEND_TYPE_TAKEN" }));
  });
});
