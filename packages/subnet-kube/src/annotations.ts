/**
 * Node annotation names (reference/flannel.md §4.1.3). The prefix is a flag so a cluster can keep Flannel's
 * `flannel.alpha.coreos.com`; it is normalised exactly like Flannel's:
 *
 *   - at most one `/`;
 *   - no `/` at all: one is appended (`weft.io` → `weft.io/`);
 *   - not ending in `/` or `-`: a `-` is appended (`example.com/weft` → `example.com/weft-`);
 *   - the result must read `fqdn/` or `fqdn/name-` (lowercase letters, digits, `-`, `_`, dots in the fqdn).
 *
 * One deliberate difference: Flannel's regular expression is not anchored at the start, so it accepts
 * `Upper.example.com`, which the API server then rejects as an annotation key. Ours is anchored.
 */
import { WeftError } from "@weft/core";

export const DEFAULT_ANNOTATION_PREFIX = "weft.io";

export interface KubeAnnotations {
  /** The normalised prefix, ending in `/` or `-`. */
  readonly prefix: string;
  /** `"true"` on every node whose lease this agent (or Flannel) published. */
  readonly subnetKubeManaged: string;
  readonly backendType: string;
  readonly backendData: string;
  readonly backendV6Data: string;
  readonly publicIP: string;
  readonly publicIPv6: string;
  /** User-set: advertised instead of the agent's own public IP (a NAT address, for instance). */
  readonly publicIPOverwrite: string;
  readonly publicIPv6Overwrite: string;
  /** User-set: acts like `--public-ip(v6)`, read once at startup. */
  readonly nodePublicIP: string;
  readonly nodePublicIPv6: string;
}

const PREFIX_FORMAT = /^(?:[a-z0-9_-]+\.)+[a-z0-9_-]+\/(?:[a-z0-9_-]+-)?$/;

/** Normalises an annotation prefix; throws WeftError CONFIG_INVALID naming the value and the rule. */
export function normalizeAnnotationPrefix(prefix: string): string {
  const slashes = prefix.split("/").length - 1;
  if (slashes > 1) {
    throw new WeftError("CONFIG_INVALID", `annotation prefix "${prefix}" contains ${slashes} slashes: at most one is allowed (e.g. "weft.io" or "example.com/weft")`);
  }
  let p = slashes === 0 ? `${prefix}/` : prefix;
  if (!p.endsWith("/") && !p.endsWith("-")) p += "-";
  if (!PREFIX_FORMAT.test(p)) {
    throw new WeftError(
      "CONFIG_INVALID",
      `annotation prefix "${prefix}" must be a lowercase domain name with at least one dot, optionally followed by "/name" ` +
        `(e.g. "weft.io", "flannel.alpha.coreos.com", "example.com/weft"); normalised it reads "${p}"`,
    );
  }
  return p;
}

export function kubeAnnotations(prefix: string = DEFAULT_ANNOTATION_PREFIX): KubeAnnotations {
  const p = normalizeAnnotationPrefix(prefix);
  return Object.freeze({
    prefix: p,
    subnetKubeManaged: `${p}kube-subnet-manager`,
    backendType: `${p}backend-type`,
    backendData: `${p}backend-data`,
    backendV6Data: `${p}backend-v6-data`,
    publicIP: `${p}public-ip`,
    publicIPv6: `${p}public-ipv6`,
    publicIPOverwrite: `${p}public-ip-overwrite`,
    publicIPv6Overwrite: `${p}public-ipv6-overwrite`,
    nodePublicIP: `${p}node-public-ip`,
    nodePublicIPv6: `${p}node-public-ipv6`,
  });
}
