/**
 * Node annotation names (reference/flannel.md §4.1.3). The prefix is a flag so a cluster can keep Flannel's
 * `flannel.alpha.coreos.com`; it is normalised exactly like Flannel's:
 *
 *   - at most one `/`;
 *   - no `/` at all: one is appended (`weft.io` → `weft.io/`);
 *   - not ending in `/` or `-`: a `-` is appended (`example.com/weft` → `example.com/weft-`);
 *   - the result must read `fqdn/` or `fqdn/name-`: the fqdn a DNS-1123 subdomain (lowercase letters, digits,
 *     `-` inside labels, dots; at most 253 characters), the name lowercase letters, digits, `-` and `_` — so
 *     every key made from it is one the API server accepts.
 *
 * Deliberate differences: Flannel's regular expression is not anchored at the start, so it accepts
 * `Upper.example.com`, and it allows `_` in the domain (`a.b_c`): the API server rejects annotation keys made
 * from either (422 on every patch). Ours refuses them at startup.
 */
import { WeftError } from "@weft/core";
import { showAnnotationValue } from "./show.js";

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

/** A DNS-1123 label: what the API server accepts in an annotation key's prefix (no `_`, no leading or trailing `-`). */
const DNS_LABEL = "[a-z0-9](?:[-a-z0-9]*[a-z0-9])?";
const PREFIX_FORMAT = new RegExp(`^(?:${DNS_LABEL}\\.)+${DNS_LABEL}/(?:[a-z0-9][a-z0-9_-]*-)?$`);
/** The longest annotation name this package appends to a prefix's `name-` part. */
const LONGEST_NAME = "public-ipv6-overwrite";

/** Normalises an annotation prefix; throws WeftError CONFIG_INVALID naming the value (bounded) and the rule. */
export function normalizeAnnotationPrefix(prefix: string): string {
  const shown = showAnnotationValue(prefix);
  const slashes = prefix.split("/").length - 1;
  if (slashes > 1) {
    throw new WeftError("CONFIG_INVALID", `annotation prefix ${shown} contains ${slashes} slashes: at most one is allowed (e.g. "weft.io" or "example.com/weft")`);
  }
  let p = slashes === 0 ? `${prefix}/` : prefix;
  if (!p.endsWith("/") && !p.endsWith("-")) p += "-";
  const [domain = "", name = ""] = p.split("/");
  if (!PREFIX_FORMAT.test(p) || domain.length > 253 || name.length + LONGEST_NAME.length > 63) {
    throw new WeftError(
      "CONFIG_INVALID",
      `annotation prefix ${shown} must be a lowercase DNS domain name with at least one dot (at most 253 characters; letters, digits, "-" and dots), ` +
        `optionally followed by "/name" (at most ${62 - LONGEST_NAME.length} characters) (e.g. "weft.io", "flannel.alpha.coreos.com", "example.com/weft"): ` +
        `the Kubernetes API server refuses annotation keys made from it; normalised it reads ${showAnnotationValue(p)}`,
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
