/**
 * Property-based tests (issue 15) of what subnet-kube reads from the cluster: the annotation prefix flag, the
 * lease annotations of peer Nodes (backend type, backend data JSON, public IPs, podCIDRs) and the user-set
 * public-ip annotations. Properties: nothing but WeftError is ever thrown, no case hangs (the kit's 2 s bound),
 * problems are one bounded, escaped line, and what is accepted round-trips through the formatter that writes
 * the annotations (desiredAnnotations). Kubernetes annotation keys are case-sensitive and Flannel reads them by
 * exact name, so there is no case-folding to compare here (backend data keys are the backend schema's concern).
 */
import { IPAddress, IPNet, type JsonValue, type LeaseAttrs, WeftError } from "@weft/core";
import { fc, fuzz, hostileJsonText, hostileString } from "@weft/fuzz";
import { qualifiedNameProblem } from "@weft/kube-testing";
import { describe, it } from "vitest";
import { kubeAnnotations, normalizeAnnotationPrefix } from "./annotations.js";
import { type NodeLike, desiredAnnotations, nodePublicIPs, nodeToLease, slimNode } from "./node-lease.js";

/** A failed property (plain checks: vitest's expect costs more per case than the code under test). */
function check(cond: boolean, what: () => string): void {
  if (!cond) throw new Error(what());
}
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const PROPERTY_TIMEOUT_MS = 30_000; // a property's run is ~2-5 s on an idle machine; the bound is for a loaded one

const onlyWeftErrors = (f: () => void) => {
  try {
    f();
  } catch (e) {
    if (!(e instanceof WeftError)) throw e;
  }
};

/** A prefix as an operator might write one: a domain, optionally with a path segment, sometimes already normalised. */
const label = (inner: string) =>
  fc.tuple(fc.constantFrom(..."abwxz019"), fc.string({ unit: fc.constantFrom(...inner), maxLength: 6 }), fc.constantFrom(..."aez09")).map(([first, mid, last]) => first + mid + last);
const validPrefix = fc
  .tuple(fc.array(label("aez09-"), { minLength: 2, maxLength: 4 }), fc.option(label("aez09-_"), { nil: undefined }), fc.constantFrom("", "/", "-"))
  .map(([parts, name, tail]) => parts.join(".") + (name !== undefined ? `/${name}${tail === "/" ? "" : tail}` : tail === "/" ? "/" : ""));
const anyPrefix = fc.oneof({ weight: 3, arbitrary: validPrefix }, { weight: 2, arbitrary: hostileString(80) }, { weight: 1, arbitrary: fc.constantFrom("flannel.alpha.coreos.com", "weft.io", "Weft.io", "a/b/c", "/", "-", ".", "x.y/") });

/** Backend data as backends publish it: small JSON objects (what survives JSON text, so -0 is 0). */
const backendData: fc.Arbitrary<JsonValue> = fc
  .oneof(
    fc.record({ VNI: fc.integer({ min: 1, max: 16777215 }), VtepMAC: fc.constantFrom("aa:bb:cc:dd:ee:01", "0e:57:00:00:00:02") }),
    fc.record({ PublicKey: fc.base64String({ minLength: 44, maxLength: 44 }) }),
    fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(fc.integer(), fc.string({ maxLength: 8 }), fc.boolean(), fc.array(fc.integer(), { maxLength: 3 })), { maxKeys: 4 }),
  )
  .map((v) => JSON.parse(JSON.stringify(v)) as JsonValue);

const ipv4 = fc.ipV4().map((s) => IPAddress.parse(s));
const ipv6 = fc.ipV6().map((s) => IPAddress.tryParse(s)).filter((ip): ip is IPAddress => ip !== undefined && ip.family === "v6");

describe("annotation prefix (the flag)", () => {
  it("never throws anything but WeftError; an accepted prefix is idempotent and makes only keys the API server accepts", () => {
    fuzz("subnet-kube prefix", anyPrefix, (raw) => {
      let p: string;
      try {
        p = normalizeAnnotationPrefix(raw);
      } catch (e) {
        if (!(e instanceof WeftError)) throw e;
        check(e.code === "CONFIG_INVALID", () => e.code);
        check(e.message.length < 600 && !CONTROL.test(e.message), () => `error line ${JSON.stringify(e.message.slice(0, 300))}`);
        return;
      }
      check(normalizeAnnotationPrefix(p) === p, () => `normalising ${JSON.stringify(p)} again changed it`);
      const a = kubeAnnotations(raw);
      for (const [field, key] of Object.entries(a)) {
        if (field === "prefix") continue;
        const problem = qualifiedNameProblem(key);
        check(problem === undefined, () => `prefix ${JSON.stringify(raw)} makes ${field} key ${JSON.stringify(key)}, which the API server refuses: ${problem}`);
      }
    });
  }, PROPERTY_TIMEOUT_MS);
});

/** Node annotations as found in a cluster: valid-looking, hostile strings, hostile JSON text, huge values. */
function annotationValue(kind: "data" | "ip" | "type" | "flag"): fc.Arbitrary<string | undefined> {
  const valid =
    kind === "data"
      ? backendData.map((v) => JSON.stringify(v))
      : kind === "ip"
        ? fc.oneof(fc.ipV4(), fc.ipV6())
        : kind === "type"
          ? fc.constantFrom("vxlan", "host-gw", "wireguard", "ipsec", "extension")
          : fc.constant("true");
  return fc.oneof(
    { weight: 4, arbitrary: valid },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 2, arbitrary: hostileString(kind === "data" ? 200 : 60) },
    { weight: kind === "data" ? 2 : 0, arbitrary: hostileJsonText(["VNI", "VtepMAC", "PublicKey"]) },
  );
}

const podCIDRs: fc.Arbitrary<string[]> = fc.oneof(
  { weight: 4, arbitrary: fc.constant(["198.19.2.0/24", "2001:2:0:2::/64"]).map((l) => [...l]) },
  { weight: 1, arbitrary: fc.constant(["198.19.2.0/24"]).map((l) => [...l]) },
  { weight: 1, arbitrary: fc.array(fc.oneof(hostileString(40), fc.constantFrom("198.19.3.0/24", "2001:2:0:3::/64", "::/0", "1.2.3.4/33")), { maxLength: 4 }) },
);

const hostileNode: fc.Arbitrary<{ node: NodeLike; families: { v4: boolean; v6: boolean } }> = fc
  .record({
    flag: annotationValue("flag"),
    type: annotationValue("type"),
    data: annotationValue("data"),
    data6: annotationValue("data"),
    ip: annotationValue("ip"),
    ip6: annotationValue("ip"),
    cidrs: podCIDRs,
    families: fc.constantFrom({ v4: true, v6: true }, { v4: true, v6: false }, { v4: false, v6: true }),
  })
  .map(({ flag, type, data, data6, ip, ip6, cidrs, families }) => {
    const ann: Record<string, string> = { "other.io/noise": "x" };
    const set = (k: string, v: string | undefined) => {
      if (v !== undefined) ann[`weft.io/${k}`] = v;
    };
    set("kube-subnet-manager", flag);
    set("backend-type", type);
    set("backend-data", data);
    set("backend-v6-data", data6);
    set("public-ip", ip);
    set("public-ipv6", ip6);
    return { node: { metadata: { name: "peer", resourceVersion: "9", annotations: ann }, spec: { podCIDRs: cidrs } }, families };
  });

describe("peer node annotations (nodeToLease)", () => {
  const a = kubeAnnotations("weft.io");
  const v4Subnet = IPNet.parse("198.19.2.0/24");

  it("never throws, never hangs; a problem is one bounded, escaped line; the watch's slim copy reads the same", () => {
    fuzz("subnet-kube nodeToLease", hostileNode, ({ node, families }) => {
      const r = nodeToLease(node, a, families);
      if (r.kind === "malformed") {
        check(r.problem.length < 400, () => `problem of ${r.problem.length} characters: ${r.problem.slice(0, 200)}`);
        check(!CONTROL.test(r.problem), () => `problem with a control character: ${JSON.stringify(r.problem)}`);
      }
      const slim = nodeToLease(slimNode(node, a), a, families);
      check(slim.kind === r.kind, () => `slim copy reads ${slim.kind}, the node ${r.kind}`);
      if (r.kind === "lease" && slim.kind === "lease") check(slim.signature === r.signature, () => "slim copy's signature differs");
    });
  }, PROPERTY_TIMEOUT_MS);

  it("accepted leases round-trip through desiredAnnotations (the formatter), with any valid prefix", () => {
    const arb = fc.record({
      prefix: validPrefix,
      type: fc.constantFrom("vxlan", "host-gw", "wireguard", "my-backend"),
      ip: ipv4,
      ip6: ipv6,
      data: backendData,
      data6: backendData,
      families: fc.constantFrom({ v4: true, v6: true }, { v4: true, v6: false }, { v4: false, v6: true }),
    });
    fuzz("subnet-kube annotations round-trip", arb, ({ prefix, type, ip, ip6, data, data6, families }) => {
      const ka = kubeAnnotations(prefix);
      const attrs: LeaseAttrs = { backendType: type, publicIP: ip, publicIPv6: ip6, backendData: data, backendV6Data: data6 };
      const { annotations, advertised } = desiredAnnotations({}, ka, attrs, families, "peer");
      const written = Object.fromEntries(Object.entries(annotations).filter((e): e is [string, string] => e[1] !== null));
      const node: NodeLike = { metadata: { name: "peer", annotations: written }, spec: { podCIDRs: ["198.19.2.0/24", "2001:2:0:2::/64"] } };
      const r = nodeToLease(node, ka, families);
      if (r.kind !== "lease") throw new Error(`written annotations read back as ${r.kind === "malformed" ? r.problem : r.kind}`);
      const got = r.lease.attrs;
      check(got.backendType === type, () => `backend type ${got.backendType}`);
      const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);
      if (families.v4) {
        check(got.publicIP?.equals(advertised.publicIP) === true, () => `public IP ${got.publicIP} for ${advertised.publicIP}`);
        check(same(got.backendData, data), () => `backend data ${JSON.stringify(got.backendData)} for ${JSON.stringify(data)}`);
        check(r.lease.subnet?.equals(v4Subnet) === true, () => `subnet ${r.lease.subnet}`);
      } else check(got.publicIP === undefined && got.backendData === undefined, () => "IPv4 attributes of a disabled family");
      if (families.v6) {
        check(got.publicIPv6?.equals(advertised.publicIPv6) === true, () => `public IPv6 ${got.publicIPv6} for ${advertised.publicIPv6}`);
        check(same(got.backendV6Data, data6), () => `backend v6 data ${JSON.stringify(got.backendV6Data)} for ${JSON.stringify(data6)}`);
      } else check(got.publicIPv6 === undefined && got.backendV6Data === undefined, () => "IPv6 attributes of a disabled family");
    });
  }, PROPERTY_TIMEOUT_MS);
});

describe("user-set public-ip annotations", () => {
  const a = kubeAnnotations("weft.io");
  const value = fc.oneof({ weight: 3, arbitrary: fc.oneof(fc.ipV4(), fc.ipV6()) }, { weight: 2, arbitrary: hostileString(80) });

  it("node-public-ip(v6): only WeftError, one bounded line; an accepted address round-trips through its text", () => {
    fuzz("subnet-kube node-public-ip", fc.tuple(value, value), ([v4, v6]) => {
      const node: NodeLike = { metadata: { name: "n1", annotations: { [a.nodePublicIP]: v4, [a.nodePublicIPv6]: v6 } } };
      let got: { v4?: IPAddress; v6?: IPAddress } | undefined;
      try {
        got = nodePublicIPs(node, a);
      } catch (e) {
        if (!(e instanceof WeftError)) throw e;
        check(e.message.length < 400 && !CONTROL.test(e.message), () => `error line ${JSON.stringify(e.message.slice(0, 300))}`);
        return;
      }
      for (const ip of [got.v4, got.v6]) if (ip) check(IPAddress.parse(ip.toString()).equals(ip), () => `${ip} does not read back`);
    });
  }, PROPERTY_TIMEOUT_MS);

  it("public-ip-overwrite: only WeftError; an accepted overwrite is what is advertised and written", () => {
    fuzz("subnet-kube public-ip-overwrite", value, (v) => {
      onlyWeftErrors(() => {
        const { annotations, advertised } = desiredAnnotations({ [a.publicIPOverwrite]: v }, a, { backendType: "vxlan", publicIP: IPAddress.parse("198.18.0.1") }, { v4: true, v6: false }, "n1");
        check(annotations[a.publicIP] === advertised.publicIP?.toString(), () => "written and advertised public IP differ");
        if (v !== "") check(IPAddress.parse(v).equals(advertised.publicIP), () => `overwrite ${v} advertised as ${advertised.publicIP}`);
      });
    });
  }, PROPERTY_TIMEOUT_MS);
});
