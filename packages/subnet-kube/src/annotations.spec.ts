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
  ])("%s is rejected (%s)", (prefix) => {
    expect(() => normalizeAnnotationPrefix(prefix)).toThrow(/annotation prefix/);
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
