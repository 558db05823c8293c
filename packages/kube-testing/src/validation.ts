/**
 * Value validation the real API server applies to Nodes (pkg/apis/core/validation), reduced to what a network
 * agent can trip over: object names, annotation and label keys, annotation size, podCIDR(s) shape and their
 * immutability. Each finding is one `field: Invalid value: "x": reason` line, like the server's causes.
 */
import { isIP } from "node:net";
import { isObject } from "./patch.js";
import type { Json, JsonObject } from "./schema.js";

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
/** apimachinery TotalAnnotationSizeLimitB */
const ANNOTATIONS_MAX_BYTES = 256 * 1024;

export function validDnsSubdomain(s: string): boolean {
  return s.length > 0 && s.length <= 253 && DNS1123_SUBDOMAIN.test(s);
}

/** Kubernetes "qualified name": `[prefix/]name`, prefix a DNS subdomain, name at most 63 characters. */
export function qualifiedNameProblem(key: string): string | undefined {
  const parts = key.split("/");
  if (parts.length > 2) return "a qualified name must consist of alphanumeric characters, '-', '_' or '.', with an optional DNS subdomain prefix and '/'";
  const name = parts[parts.length - 1]!;
  if (parts.length === 2) {
    const prefix = parts[0]!;
    if (!validDnsSubdomain(prefix)) return `prefix part must be a lowercase RFC 1123 subdomain (got "${prefix}")`;
  }
  if (name.length === 0) return "name part must be non-empty";
  if (name.length > 63) return "name part must be no more than 63 characters";
  if (!QUALIFIED_NAME.test(name)) return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
  return undefined;
}

function parseCidr(s: string): { family: 4 | 6 } | undefined {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const fam = isIP(m[1]!);
  if (fam === 0) return undefined;
  const len = Number(m[2]);
  if (len > (fam === 4 ? 32 : 128)) return undefined;
  return { family: fam as 4 | 6 };
}

function metaProblems(meta: JsonObject | undefined, out: string[]): void {
  if (!meta) return;
  const ann = meta.annotations;
  if (isObject(ann)) {
    let size = 0;
    for (const [k, v] of Object.entries(ann)) {
      const p = qualifiedNameProblem(k);
      if (p) out.push(`metadata.annotations: Invalid value: ${JSON.stringify(k)}: ${p}`);
      size += k.length + (typeof v === "string" ? Buffer.byteLength(v) : 0);
    }
    if (size > ANNOTATIONS_MAX_BYTES) out.push(`metadata.annotations: Too long: must have at most ${ANNOTATIONS_MAX_BYTES} bytes`);
  }
  const labels = meta.labels;
  if (isObject(labels)) {
    for (const [k, v] of Object.entries(labels)) {
      const p = qualifiedNameProblem(k);
      if (p) out.push(`metadata.labels: Invalid value: ${JSON.stringify(k)}: ${p}`);
      if (typeof v === "string" && (v.length > 63 || !LABEL_VALUE.test(v))) out.push(`metadata.labels: Invalid value: ${JSON.stringify(v)}: a valid label value must be 63 characters or less and consist of alphanumerics, '-', '_' or '.'`);
    }
  }
}

/** Problems with a Node about to be stored; `old` is the stored version for an update, undefined on create. */
export function nodeProblems(node: JsonObject, old: JsonObject | undefined): string[] {
  const out: string[] = [];
  const meta = isObject(node.metadata) ? node.metadata : undefined;
  const name = meta?.name;
  if (typeof name !== "string" || name === "") out.push("metadata.name: Required value: name or generateName is required");
  else if (!validDnsSubdomain(name)) out.push(`metadata.name: Invalid value: ${JSON.stringify(name)}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`);
  metaProblems(meta, out);

  const spec = isObject(node.spec) ? node.spec : {};
  const cidrs = Array.isArray(spec.podCIDRs) ? (spec.podCIDRs as Json[]) : [];
  const families: number[] = [];
  cidrs.forEach((c, i) => {
    const p = typeof c === "string" ? parseCidr(c) : undefined;
    if (!p) out.push(`spec.podCIDRs[${i}]: Invalid value: ${JSON.stringify(c)}: must be a valid CIDR`);
    else families.push(p.family);
  });
  if (cidrs.length > 2) out.push(`spec.podCIDRs: Too many: ${cidrs.length}: must have at most 2 items`);
  if (cidrs.length === 2 && families.length === 2 && families[0] === families[1]) {
    out.push(`spec.podCIDRs: Invalid value: ${JSON.stringify(cidrs)}: may specify no more than one CIDR for each IP family`);
  }
  if (old) {
    // ValidateNodeUpdate: podCIDRs may go from empty to set, never change afterwards.
    const oldSpec = isObject(old.spec) ? old.spec : {};
    const oldCidrs = Array.isArray(oldSpec.podCIDRs) ? oldSpec.podCIDRs : [];
    if (oldCidrs.length > 0 && JSON.stringify(oldCidrs) !== JSON.stringify(cidrs)) {
      out.push(`spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid`);
    }
    if (meta && isObject(old.metadata) && meta.uid !== old.metadata.uid) out.push(`metadata.uid: Invalid value: ${JSON.stringify(meta.uid)}: field is immutable`);
  }
  return out;
}

/**
 * The server keeps `spec.podCIDR` and `spec.podCIDRs` in step (v1 conversion): podCIDRs = [podCIDR] when
 * only podCIDR is given, podCIDR = podCIDRs[0] otherwise. Clients always see both.
 */
export function syncPodCIDRs(node: JsonObject): void {
  if (!isObject(node.spec)) return;
  const spec = node.spec;
  const list = Array.isArray(spec.podCIDRs) ? spec.podCIDRs : [];
  if (list.length > 0) spec.podCIDR = list[0]!;
  else if (typeof spec.podCIDR === "string" && spec.podCIDR !== "") spec.podCIDRs = [spec.podCIDR];
  else {
    delete spec.podCIDR;
    delete spec.podCIDRs;
  }
}

export function podProblems(pod: JsonObject): string[] {
  const out: string[] = [];
  const meta = isObject(pod.metadata) ? pod.metadata : undefined;
  if (typeof meta?.name !== "string" || !validDnsSubdomain(meta.name)) out.push(`metadata.name: Invalid value: ${JSON.stringify(meta?.name)}: must be a lowercase RFC 1123 subdomain`);
  metaProblems(meta, out);
  return out;
}
