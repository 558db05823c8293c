import { describe, expect, it } from "vitest";
import { decodeConfig, parseEnv, parseNetConf } from "./config.js";
import { CniError } from "./errors.js";

function err(f: () => unknown): CniError {
  try {
    f();
  } catch (e) {
    if (e instanceof CniError) return e;
    throw e;
  }
  throw new Error("expected a CniError");
}
const base = { cniVersion: "1.0.0", name: "cbr0", type: "weft" };

describe("network config", () => {
  it("applies the defaults", () => {
    const c = parseNetConf({ ...base });
    expect(c).toMatchObject({
      subnetFile: "/run/weft/subnet.env",
      dataDir: "/var/lib/cni/weft",
      bridge: "cni0",
      isDefaultGateway: false,
      hairpinMode: false,
      ipam: { dataDir: "/var/lib/cni/networks", routes: [] },
    });
    expect(c.delegate).toBeUndefined();
  });

  it.each([
    [{ name: undefined }, 7, /"name" is required/],
    [{ bridge: "a-very-long-bridge-name" }, 7, /"bridge" "a-very-long-bridge-name" is longer than 15 bytes/],
    [{ mtu: 20 }, 7, /"mtu" must be an integer between 68 and 65535, got 20/],
    [{ isDefaultGateway: "yes" }, 7, /"isDefaultGateway" must be true or false/],
    [{ ipam: { type: "dhcp" } }, 7, /"ipam.type" is "dhcp": without "delegate"/],
    [{ ipam: { routes: [{ dst: "nope" }] } }, 7, /"ipam.routes\[0\].dst" must be a CIDR/],
    [{ ipam: { ranges: [[{ rangeStart: "198.19.1.5" }]] } }, 7, /"ipam.ranges\[0\]\[0\].subnet" is required/],
    [{ ipam: { dataDir: "relative" } }, 7, /"ipam.dataDir" must be an absolute path/],
    [{ delegate: { name: "x" } }, 7, /"delegate.name" must not be set/],
    [{ delegate: { ipam: {} } }, 7, /"delegate.ipam" must not be set/],
    [{ delegate: "bridge" }, 7, /"delegate" must be an object/],
    [{ ipMasq: true }, 7, /"ipMasq" is true, but weft-cni does not masquerade in direct mode/],
    [{ cniVersion: "0.9.9" }, 1, /cniVersion "0.9.9"/],
  ])("rejects %j with code %i naming the field", (patch, code, re) => {
    const e = err(() => parseNetConf({ ...base, ...patch } as Record<string, unknown>));
    expect(e.code).toBe(code);
    expect(e.message).toMatch(re);
  });

  it("passes a delegate's own IPAM type through", () => {
    expect(parseNetConf({ ...base, delegate: {}, ipam: { type: "dhcp" } }).ipam.type).toBe("dhcp");
  });

  it("reads GC's valid attachments under either key", () => {
    const a = [{ containerID: "c1", ifname: "eth0" }];
    expect(parseNetConf({ ...base, "cni.dev/valid-attachments": a }).validAttachments).toEqual(a);
    expect(parseNetConf({ ...base, "cni.dev/attachments": a }).validAttachments).toEqual(a);
    expect(err(() => parseNetConf({ ...base, "cni.dev/valid-attachments": [{ containerID: 1 }] })).message).toMatch(/valid-attachments\[0\]/);
  });

  it("undecodable stdin is code 6", () => {
    expect(err(() => decodeConfig("{not json")).code).toBe(6);
    expect(err(() => decodeConfig("[]")).code).toBe(6);
  });
});

describe("CNI environment", () => {
  const env = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "abc", CNI_NETNS: "/run/netns/x", CNI_IFNAME: "eth0", CNI_PATH: "/opt/cni/bin::/usr/lib/cni" };
  it("parses CNI_*", () => {
    expect(parseEnv(env)).toEqual({ command: "ADD", containerID: "abc", netns: "/run/netns/x", ifname: "eth0", args: "", path: ["/opt/cni/bin", "/usr/lib/cni"] });
  });
  it.each([
    [{ CNI_COMMAND: "FROB" }, /CNI_COMMAND=FROB is not a CNI command/],
    [{ CNI_COMMAND: undefined }, /CNI_COMMAND is not set/],
    [{ CNI_CONTAINERID: "" }, /CNI_CONTAINERID is required for ADD/],
    [{ CNI_CONTAINERID: "-bad/id" }, /CNI_CONTAINERID=-bad\/id has invalid characters/],
    [{ CNI_IFNAME: "eth0:1" }, /CNI_IFNAME "eth0:1" contains/],
    [{ CNI_NETNS: "" }, /CNI_NETNS is required for ADD/],
  ])("rejects %j with code 4", (patch, re) => {
    const e = err(() => parseEnv({ ...env, ...patch }));
    expect(e.code).toBe(4);
    expect(e.message).toMatch(re);
  });
  it("allows DEL without a namespace", () => {
    expect(parseEnv({ ...env, CNI_COMMAND: "DEL", CNI_NETNS: "" }).netns).toBe("");
  });
});
