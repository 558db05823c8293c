import { IPAddress, IPNet } from "@weft/core";
import { describe, expect, it } from "vitest";
import { kubeAnnotations } from "./annotations.js";
import { type NodeLike, annotationPatch, desiredAnnotations, localSubnets, nodePublicIPs, nodeToLease, parsePodCIDRs } from "./node-lease.js";

const a = kubeAnnotations("weft.io");
const both = { v4: true, v6: true };
const v4only = { v4: true, v6: false };

function peer(annotations: Record<string, string>, spec: NodeLike["spec"] = { podCIDRs: ["198.19.2.0/24", "2001:2:0:2::/64"] }): NodeLike {
  return { metadata: { name: "n2", resourceVersion: "7", annotations }, spec };
}
const good = {
  "weft.io/kube-subnet-manager": "true",
  "weft.io/backend-type": "vxlan",
  "weft.io/backend-data": '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"}',
  "weft.io/backend-v6-data": '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:12"}',
  "weft.io/public-ip": "198.18.0.2",
  "weft.io/public-ipv6": "2001:2::2",
};

describe("parsePodCIDRs", () => {
  it("reads spec.podCIDRs, falling back to spec.podCIDR on servers that only set that", () => {
    const r = parsePodCIDRs({ spec: { podCIDR: "198.19.1.0/24" } });
    expect("problem" in r ? r.problem : r.v4?.toString()).toBe("198.19.1.0/24");
    const d = parsePodCIDRs({ spec: { podCIDR: "198.19.1.0/24", podCIDRs: ["2001:2:0:1::/64", "198.19.1.0/24"] } });
    expect("problem" in d ? d : [d.v4?.toString(), d.v6?.toString()]).toEqual(["198.19.1.0/24", "2001:2:0:1::/64"]);
  });
  it("reports garbage and two CIDRs of one family", () => {
    expect(parsePodCIDRs({ spec: { podCIDRs: ["nope"] } })).toEqual({ problem: 'spec.podCIDRs entry "nope" is not a CIDR' });
    expect(parsePodCIDRs({ spec: { podCIDRs: ["198.19.1.0/24", "198.19.2.0/24"] } })).toHaveProperty("problem");
  });
});

describe("nodeToLease (peers)", () => {
  it("reads a dual-stack vxlan peer", () => {
    const r = nodeToLease(peer(good), a, both);
    expect(r.kind).toBe("lease");
    if (r.kind !== "lease") return;
    expect(r.lease.subnet?.toString()).toBe("198.19.2.0/24");
    expect(r.lease.ipv6Subnet?.toString()).toBe("2001:2:0:2::/64");
    expect(r.lease.attrs.publicIP?.toString()).toBe("198.18.0.2");
    expect(r.lease.attrs.publicIPv6?.toString()).toBe("2001:2::2");
    expect(r.lease.attrs.backendData).toEqual({ VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:02" });
    expect(r.lease.nodeName).toBe("n2");
    expect(r.lease.revision).toBe("7");
  });

  it("a node without kube-subnet-manager=true is not a lease", () => {
    const { ["weft.io/kube-subnet-manager"]: _, ...rest } = good;
    expect(nodeToLease(peer(rest), a, both)).toEqual({ kind: "not-a-lease" });
    expect(nodeToLease(peer({ ...good, "weft.io/kube-subnet-manager": "false" }), a, both)).toEqual({ kind: "not-a-lease" });
  });

  it.each([
    ["bad JSON", { "weft.io/backend-data": "{VNI" }, /backend-data is not valid JSON/],
    ["bad IP", { "weft.io/public-ip": "198.18.0.300" }, /public-ip "198.18.0.300" is not an IPv4 address/],
    ["wrong family", { "weft.io/public-ip": "2001:2::2" }, /is not an IPv4 address/],
    ["missing public IP", { "weft.io/public-ip": "" }, /public-ip is missing/],
    ["missing backend type", { "weft.io/backend-type": "" }, /backend-type is missing/],
  ])("%s is malformed with a reason", (_, patch, reason) => {
    const r = nodeToLease(peer({ ...good, ...patch }), a, both);
    expect(r.kind).toBe("malformed");
    expect(r.kind === "malformed" && r.problem).toMatch(reason);
  });

  it("a missing podCIDR of an enabled family is malformed; of a disabled family it does not matter", () => {
    const v4node = peer(good, { podCIDRs: ["198.19.2.0/24"] });
    expect(nodeToLease(v4node, a, both)).toMatchObject({ kind: "malformed", problem: expect.stringMatching(/no IPv6 podCIDR/) });
    const r = nodeToLease(v4node, a, v4only);
    expect(r.kind).toBe("lease");
    expect(r.kind === "lease" && r.lease.ipv6Subnet).toBeUndefined();
  });

  it("the signature ignores fields the datapath does not use and changes with those it does", () => {
    const sig = (n: NodeLike) => {
      const r = nodeToLease(n, a, v4only);
      return r.kind === "lease" ? r.signature : r.kind;
    };
    const base = sig(peer(good));
    expect(sig({ ...peer({ ...good, "other.io/x": "y", "weft.io/public-ipv6": "2001:2::9" }), metadata: { name: "n2", resourceVersion: "8", annotations: { ...good, "other.io/x": "y", "weft.io/public-ipv6": "2001:2::9" } } })).toBe(base);
    expect(sig(peer({ ...good, "weft.io/backend-data": '{"VNI":2}' }))).not.toBe(base);
    expect(sig(peer({ ...good, "weft.io/public-ip": "198.18.0.9" }))).not.toBe(base);
    expect(sig(peer({ ...good, "weft.io/backend-type": "host-gw" }))).not.toBe(base);
  });
});

describe("localSubnets (this node)", () => {
  const nets = { v4: IPNet.parse("198.19.0.0/16"), v6: IPNet.parse("2001:2::/48") };
  it("names the fix when the node has no podCIDR", () => {
    expect(() => localSubnets({ metadata: { name: "n1" }, spec: {} }, v4only, nets, "/etc/weft/net-conf.json")).toThrow(
      'node "n1" has no spec.podCIDR: start kube-controller-manager with --allocate-node-cidrs and --cluster-cidr, or set it by hand',
    );
  });
  it("names both the podCIDR and the Network when one is outside the other", () => {
    expect(() => localSubnets({ metadata: { name: "n1" }, spec: { podCIDR: "10.244.1.0/24" } }, v4only, nets, "net-conf.json")).toThrow(
      /podCIDR 10\.244\.1\.0\/24 is outside Network 198\.19\.0\.0\/16 of net-conf\.json/,
    );
  });
  it("ignores a podCIDR of a disabled family", () => {
    const r = localSubnets({ metadata: { name: "n1" }, spec: { podCIDRs: ["198.19.1.0/24", "fd00::/64"] } }, v4only, nets, "x");
    expect([r.subnet?.toString(), r.ipv6Subnet]).toEqual(["198.19.1.0/24", undefined]);
  });
});

describe("desiredAnnotations and annotationPatch", () => {
  const attrs = { backendType: "vxlan", publicIP: IPAddress.parse("198.18.0.1"), backendData: { VNI: 1 } };
  it("writes Flannel's keys; the patch is empty when the node is already in sync", () => {
    const { annotations: want } = desiredAnnotations({}, a, attrs, v4only, "n1");
    expect(want).toEqual({
      "weft.io/kube-subnet-manager": "true",
      "weft.io/backend-type": "vxlan",
      "weft.io/backend-data": '{"VNI":1}',
      "weft.io/public-ip": "198.18.0.1",
      "weft.io/backend-v6-data": null,
      "weft.io/public-ipv6": null,
    });
    const current: Record<string, string> = { ...(want as Record<string, string>), "other.io/keep": "x" };
    delete current["weft.io/backend-v6-data"];
    delete current["weft.io/public-ipv6"];
    expect(annotationPatch(current, want)).toEqual({});
    expect(annotationPatch({ ...current, "weft.io/public-ipv6": "2001:2::1" }, want)).toEqual({ "weft.io/public-ipv6": null });
  });
  it("at lease acquisition (no backend data yet) keeps the data a previous agent of the same type published", () => {
    const bare = { backendType: "vxlan", publicIP: IPAddress.parse("198.18.0.1") };
    const published = { "weft.io/backend-type": "vxlan", "weft.io/backend-data": '{"VNI":1,"VtepMAC":"0e:57:00:00:00:01"}' };
    const kept = desiredAnnotations(published, a, bare, v4only, "n1", { keepUnknownData: true }).annotations;
    expect(annotationPatch(published, kept)).not.toHaveProperty("weft.io/backend-data");
    // A first start (nothing published), another backend type, or a later update: "null", as Flannel writes.
    expect(desiredAnnotations({}, a, bare, v4only, "n1", { keepUnknownData: true }).annotations["weft.io/backend-data"]).toBe("null");
    const other = { ...published, "weft.io/backend-type": "host-gw" };
    expect(desiredAnnotations(other, a, bare, v4only, "n1", { keepUnknownData: true }).annotations["weft.io/backend-data"]).toBe("null");
    expect(desiredAnnotations(published, a, bare, v4only, "n1").annotations["weft.io/backend-data"]).toBe("null");
  });

  it("advertises the public-ip-overwrite annotation instead of our public IP", () => {
    const r = desiredAnnotations({ "weft.io/public-ip-overwrite": "203.0.113.7" }, a, attrs, v4only, "n1");
    expect(r.annotations["weft.io/public-ip"]).toBe("203.0.113.7");
    expect(r.advertised.publicIP?.toString()).toBe("203.0.113.7");
    expect(() => desiredAnnotations({ "weft.io/public-ip-overwrite": "2001:2::7" }, a, attrs, v4only, "n1")).toThrow(
      /public-ip-overwrite "2001:2::7" is not an IPv4 address/,
    );
  });
  it("reads node-public-ip(v6) and rejects garbage", () => {
    const n = { metadata: { name: "n1", annotations: { "weft.io/node-public-ip": "198.18.0.5", "weft.io/node-public-ipv6": "2001:2::5" } } };
    const r = nodePublicIPs(n, a);
    expect([r.v4?.toString(), r.v6?.toString()]).toEqual(["198.18.0.5", "2001:2::5"]);
    expect(() => nodePublicIPs({ metadata: { name: "n1", annotations: { "weft.io/node-public-ip": "x" } } }, a)).toThrow(/node-public-ip "x"/);
  });
});

describe("nodeToLease: hostile annotations (issue 15)", () => {
  const malformed = (extra: Record<string, string>, families = both) => {
    const t0 = performance.now();
    const r = nodeToLease(peer({ ...good, ...extra }), a, families);
    const ms = performance.now() - t0;
    return { r, ms, problem: r.kind === "malformed" ? r.problem : `(${r.kind})` };
  };

  it("a 1 MB backend-data is refused by its size before it is parsed, without echoing it", () => {
    const pad = "x".repeat(1024 * 1024);
    const { r, problem } = malformed({ "weft.io/backend-data": JSON.stringify({ VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:02", pad }) });
    expect(r.kind).toBe("malformed");
    expect(problem).toMatch(/weft\.io\/backend-data is 1048\d{3} characters long, over the 16384/);
    expect(problem.length).toBeLessThan(300);
  });

  it("backend data nested deeper than 32 levels is refused before parsing (any depth, never a stack overflow)", () => {
    // 8,000 levels fit in the 16 KiB size bound, so the depth rule is what refuses them.
    for (const depth of [33, 5_000, 8_000]) {
      const { problem } = malformed({ "weft.io/backend-v6-data": "[".repeat(depth) + "]".repeat(depth) });
      expect(problem).toMatch(/weft\.io\/backend-v6-data nests deeper than 32 levels/);
      expect(problem.length).toBeLessThan(300);
    }
    // Brackets inside strings do not count; 32 levels are fine.
    const ok = nodeToLease(peer({ ...good, "weft.io/backend-data": JSON.stringify({ s: "[[[[{{{{".repeat(100), d: JSON.parse("[".repeat(31) + "]".repeat(31)) }) }), a, both);
    expect(ok.kind).toBe("lease");
  });

  it("an oversized or control-character public IP or backend type is named, cut to 80 characters and escaped", () => {
    const huge = "\u001b[31m" + "9".repeat(300_000);
    for (const key of ["weft.io/public-ip", "weft.io/public-ipv6", "weft.io/backend-type"]) {
      const { r, problem } = malformed({ [key]: huge });
      expect(r.kind, key).toBe("malformed");
      expect(problem).toContain(key);
      expect(problem).not.toContain("\u001b");
      expect(problem).toContain("\\u001b[31m");
      expect(problem.length, key).toBeLessThan(300);
    }
  });
});
