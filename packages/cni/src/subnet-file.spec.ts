import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CniError } from "./errors.js";
import { parseSubnetFile, readSubnetFile } from "./subnet-file.js";

const dir = mkdtempSync(join(tmpdir(), "weft-subnet-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("subnet file", () => {
  it("reads flanneld's dual-stack file (first host/len, networks, MTU, IPMASQ)", () => {
    const f = parseSubnetFile(
      [
        "FLANNEL_NETWORK=198.19.0.0/16",
        "FLANNEL_SUBNET=198.19.1.1/24",
        "FLANNEL_IPV6_NETWORK=2001:2::/48",
        "FLANNEL_IPV6_SUBNET=2001:2:0:1::1/64",
        "FLANNEL_MTU=1450",
        "FLANNEL_IPMASQ=true",
      ].join("\n"),
      "/run/flannel/subnet.env",
    );
    expect(f.ipv4?.network.toString()).toBe("198.19.0.0/16");
    expect(f.ipv4?.subnet.toString()).toBe("198.19.1.0/24");
    expect(f.ipv4?.gateway.toString()).toBe("198.19.1.1");
    expect(f.ipv6?.subnet.toString()).toBe("2001:2:0:1::/64");
    expect(f.ipv6?.gateway.toString()).toBe("2001:2:0:1::1");
    expect(f.mtu).toBe(1450);
    expect(f.ipMasq).toBe(true);
  });

  it("reads a weftd file with extra keys, comments, quotes, export and comma lists", () => {
    const f = parseSubnetFile(
      '# written by weftd\nexport FLANNEL_NETWORK="198.19.0.0/16"\nFLANNEL_SUBNET=198.19.9.1/24,198.19.10.1/24\nFLANNEL_MTU=1420\nFLANNEL_IPMASQ=false\nWEFT_BACKEND=wireguard\n',
      "/run/weft/subnet.env",
    );
    expect(f.ipv4?.subnet.toString()).toBe("198.19.9.0/24");
    expect(f.ipv6).toBeUndefined();
    expect(f.mtu).toBe(1420);
    expect(f.ipMasq).toBe(false);
  });

  it("reads an IPv6-only file", () => {
    const f = parseSubnetFile("FLANNEL_IPV6_NETWORK=2001:2::/48\nFLANNEL_IPV6_SUBNET=2001:2:0:5::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n", "x");
    expect(f.ipv4).toBeUndefined();
    expect(f.ipv6?.gateway.toString()).toBe("2001:2:0:5::1");
  });

  it("uses network + 1 as the gateway when the file names the network address", () => {
    const f = parseSubnetFile("FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.3.0/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n", "x");
    expect(f.ipv4?.gateway.toString()).toBe("198.19.3.1");
  });

  it("lists the missing keys, with code 11 and a pointer to weftd", () => {
    let err: unknown;
    try {
      parseSubnetFile("FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.3.1/24\n", "/run/weft/subnet.env");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).code).toBe(11);
    expect((err as CniError).message).toContain("missing FLANNEL_MTU, FLANNEL_IPMASQ");
    expect((err as CniError).message).toContain("weftd");
  });

  it("rejects a subnet outside the network and a bad MTU, naming key and value", () => {
    expect(() => parseSubnetFile("FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.18.3.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n", "f")).toThrow(
      /FLANNEL_SUBNET=198.18.3.1\/24 is not inside FLANNEL_NETWORK=198.19.0.0\/16/,
    );
    expect(() => parseSubnetFile("FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.3.1/24\nFLANNEL_MTU=abc\nFLANNEL_IPMASQ=true\n", "f")).toThrow(/FLANNEL_MTU=abc/);
    expect(() => parseSubnetFile("FLANNEL_NETWORK=2001:2::/48\nFLANNEL_SUBNET=198.19.3.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n", "f")).toThrow(/FLANNEL_NETWORK=2001:2::\/48 is not an IPv4 CIDR/);
  });

  it("a missing file is code 11 'try again later': the agent is not up yet, check the weftd pod", async () => {
    const err = (await readSubnetFile(join(dir, "nope.env")).catch((e: unknown) => e)) as CniError;
    expect(err.code).toBe(11);
    expect(err.message).toMatch(/does not exist: the weft agent \(weftd\) is not up yet on this node/);
    expect(err.message).toContain("try again later");
    expect(err.message).toContain("kubectl -n kube-weft get pods -o wide --field-selector spec.nodeName=");
    expect(err.message).toContain("kubectl -n kube-weft logs <that pod> -c weftd");
  });

  it("reads a file from disk", async () => {
    const p = join(dir, "ok.env");
    writeFileSync(p, "FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.4.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
    expect((await readSubnetFile(p)).ipv4?.subnet.toString()).toBe("198.19.4.0/24");
  });
});
