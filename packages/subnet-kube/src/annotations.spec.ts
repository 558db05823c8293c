import { describe, expect, it } from "vitest";
import { kubeAnnotations, normalizeAnnotationPrefix } from "./annotations.js";

describe("annotation prefix normalisation (Flannel's table)", () => {
  it.each([
    ["flannel.alpha.coreos.com", "flannel.alpha.coreos.com/backend-type"],
    ["flannel.alpha.coreos.com/", "flannel.alpha.coreos.com/backend-type"],
    ["flannel.alpha.coreos.com/prefix", "flannel.alpha.coreos.com/prefix-backend-type"],
    ["flannel.alpha.coreos.com/prefix-", "flannel.alpha.coreos.com/prefix-backend-type"],
    ["org.com", "org.com/backend-type"],
    ["org9.com", "org9.com/backend-type"],
    ["org.com/9", "org.com/9-backend-type"],
    ["weft.io", "weft.io/backend-type"],
  ])("%s → %s", (prefix, backendType) => {
    expect(kubeAnnotations(prefix).backendType).toBe(backendType);
  });

  it.each([
    ["org", "not a fqdn"],
    ["org/", "not a fqdn before /"],
    ["org/prefix", "not a fqdn before /"],
    ["org.COM", "uppercase"],
    ["org.com/PREFIX", "uppercase"],
    ["a.com/b/c", "two slashes"],
    // Flannel's unanchored regexp accepts this; the API server would reject the key, so we refuse it up front.
    ["Upper.example.com", "uppercase before a valid suffix"],
    // Found by the fuzz property (issue 15): accepted before, then every patch failed with 422 Invalid.
    ["a.0_0", "underscore in the domain (not a DNS-1123 subdomain)"],
    ["-a.com", "label starting with -"],
    ["example.com/_x", "name starting with _"],
    [`example.com/${"n".repeat(42)}`, "name too long for the key's 63-character name part"],
    [`${"a.".repeat(127)}com`, "domain over 253 characters"],
  ])("%s is rejected (%s)", (prefix) => {
    expect(() => normalizeAnnotationPrefix(prefix)).toThrow(/annotation prefix/);
  });

  it("a rejected prefix is named in one bounded, escaped line", () => {
    const err = (() => {
      try {
        normalizeAnnotationPrefix("\u001b[31m" + "x".repeat(100_000));
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(err?.message.length).toBeLessThan(600);
    expect(err?.message).toContain("\\u001b[31m");
    expect(err?.message).not.toContain("\u001b");
  });

  it("names every annotation from the normalised prefix (default weft.io)", () => {
    expect(kubeAnnotations()).toEqual({
      prefix: "weft.io/",
      subnetKubeManaged: "weft.io/kube-subnet-manager",
      backendType: "weft.io/backend-type",
      backendData: "weft.io/backend-data",
      backendV6Data: "weft.io/backend-v6-data",
      publicIP: "weft.io/public-ip",
      publicIPv6: "weft.io/public-ipv6",
      publicIPOverwrite: "weft.io/public-ip-overwrite",
      publicIPv6Overwrite: "weft.io/public-ipv6-overwrite",
      nodePublicIP: "weft.io/node-public-ip",
      nodePublicIPv6: "weft.io/node-public-ipv6",
    });
  });
});
