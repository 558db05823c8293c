/**
 * Pure conversions between a Kubernetes Node and a Weft lease (reference/flannel.md §4.1.3–4.1.5):
 *
 * - the node's subnets come from `spec.podCIDRs` (at most one per family) or, on old servers, `spec.podCIDR`;
 * - the lease attributes are the node's annotations: backend type, backend data per family (JSON), public IP
 *   per family;
 * - `desiredAnnotations` is what this node should carry for given attributes, honouring the user-set
 *   `public-ip-overwrite` / `public-ipv6-overwrite`; `annotationPatch` is the minimal difference.
 *
 * No I/O here, so every rule is unit-testable without a server.
 */
import { type Family, IPAddress, IPNet, type JsonValue, type Lease, type LeaseAttrs, WeftError } from "@weft/core";
import type { KubeAnnotations } from "./annotations.js";
import { showAnnotationValue } from "./show.js";

/** The parts of a v1 Node we read (V1Node from @kubernetes/client-node fits). */
export interface NodeLike {
  metadata?: { name?: string; resourceVersion?: string; annotations?: { [k: string]: string } };
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  /**
   * Set by slimNode: the length of each annotation it dropped for being longer than Weft reads. nodeToLease
   * reports such an annotation as too long, exactly as if the value were still there.
   */
  oversized?: { readonly [k: string]: number };
}

/**
 * The longest backend-data annotation read (per family): 16 KiB, hundreds of times what any backend publishes.
 * A longer value is refused by its length before it is parsed, so hostile nodes cannot make every agent parse
 * and hold megabytes (the API server allows 256 KiB of annotations per node).
 */
export const MAX_BACKEND_DATA_CHARS = 16 * 1024;
/** The deepest backend data accepted, counted on the text before parsing (core's lease rule is the same 32). */
export const MAX_BACKEND_DATA_DEPTH = 32;
/** The longest backend-type annotation read (core refuses longer BackendTypes too). */
export const MAX_BACKEND_TYPE_CHARS = 256;
/** The longest public-ip annotation worth parsing: an IPv6 address with a zone is well under this. */
const MAX_IP_CHARS = 64;

/** A list (podCIDRs) as JSON in a log line, cut to 80 characters: the API server bounds it, a stand-in may not. */
function showList(list: readonly unknown[]): string {
  const text = JSON.stringify(list).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

/**
 * How deep the JSON text nests (arrays and objects), stopping as soon as it passes `limit`: counted on the
 * text, outside strings, so nothing recursive ever sees a deep value. Linear in the text, never throws.
 */
export function jsonTextDepth(text: string, limit: number): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** The longest value of a lease annotation other than backend data that slimNode keeps (type, IPs, the flag). */
const MAX_OTHER_ANNOTATION_CHARS = 1024;

/**
 * Only what the peer watch reads from a Node: its name, resourceVersion, podCIDR(s) and the six lease
 * annotations (kube-subnet-manager, backend-type, backend-data, backend-v6-data, public-ip, public-ipv6), each
 * kept only up to what nodeToLease accepts (a longer value is replaced by its length in `oversized`). The watch
 * holds these instead of whole Node objects (status, images, labels, other annotations, a megabyte of
 * garbage), so its memory is bounded per node whatever is stored on the Nodes.
 */
export function slimNode<N extends NodeLike>(node: N, a: KubeAnnotations): N {
  const m = node.metadata;
  const from = m?.annotations ?? {};
  const annotations: Record<string, string> = {};
  const oversized: Record<string, number> = {};
  for (const k of [a.subnetKubeManaged, a.backendType, a.backendData, a.backendV6Data, a.publicIP, a.publicIPv6]) {
    if (!Object.hasOwn(from, k)) continue;
    const v = from[k];
    const max = k === a.backendData || k === a.backendV6Data ? MAX_BACKEND_DATA_CHARS : MAX_OTHER_ANNOTATION_CHARS;
    if (typeof v === "string" && v.length > max) oversized[k] = v.length;
    else if (v !== undefined) annotations[k] = v;
  }
  const spec = node.spec;
  const podCIDRs = Array.isArray(spec?.podCIDRs) ? spec.podCIDRs.slice(0, 3).map((c) => (typeof c === "string" ? c.slice(0, 256) : c)) : undefined;
  return {
    metadata: { ...(m?.name !== undefined ? { name: m.name } : {}), ...(m?.resourceVersion !== undefined ? { resourceVersion: m.resourceVersion } : {}), annotations },
    spec: { ...(typeof spec?.podCIDR === "string" ? { podCIDR: spec.podCIDR.slice(0, 256) } : {}), ...(podCIDRs ? { podCIDRs } : {}) },
    ...(Object.keys(oversized).length > 0 ? { oversized } : {}),
  } as N;
}

/** The problem of an annotation slimNode dropped for its length, if it did. */
function oversizedProblem(node: NodeLike, key: string, max: number): string | undefined {
  const len = node.oversized?.[key];
  return len === undefined ? undefined : `annotation ${key} is ${len} characters long, over the ${max} Weft reads`;
}

/** Which address families this agent runs. */
export interface Families {
  readonly v4: boolean;
  readonly v6: boolean;
}

export function nodeName(node: NodeLike): string {
  return node.metadata?.name ?? "(unnamed)";
}

/** All podCIDR strings of the node: spec.podCIDRs, else spec.podCIDR. */
export function podCIDRStrings(node: NodeLike): string[] {
  const list = node.spec?.podCIDRs ?? [];
  if (list.length > 0) return list;
  return node.spec?.podCIDR ? [node.spec.podCIDR] : [];
}

export interface NodeSubnets {
  readonly v4?: IPNet;
  readonly v6?: IPNet;
}

/**
 * Parses the node's podCIDRs into one subnet per family. Returns a problem string (not an exception) for a
 * malformed value so callers decide whether it is fatal (our node) or a skipped peer.
 */
export function parsePodCIDRs(node: NodeLike): NodeSubnets | { problem: string } {
  const raw = podCIDRStrings(node);
  if (raw.length > 2) return { problem: `spec.podCIDRs ${showList(raw)} has more than two entries: expected one IPv4 and/or one IPv6 CIDR` };
  const out: { v4?: IPNet; v6?: IPNet } = {};
  for (const c of raw) {
    const net = typeof c === "string" && c.length <= 2 * MAX_IP_CHARS ? IPNet.tryParse(c)?.net : undefined;
    if (!net) return { problem: `spec.podCIDRs entry ${showAnnotationValue(String(c))} is not a CIDR` };
    if (out[net.family]) return { problem: `spec.podCIDRs ${showList(raw)} has two ${net.family === "v4" ? "IPv4" : "IPv6"} CIDRs` };
    out[net.family] = net;
  }
  return out;
}

const famName = (f: Family) => (f === "v4" ? "IPv4" : "IPv6");

/**
 * Parses a JSON annotation value; `undefined` when absent. Bounded before parsing: at most
 * MAX_BACKEND_DATA_CHARS characters and MAX_BACKEND_DATA_DEPTH levels.
 */
function jsonAnnotation(ann: Record<string, string>, key: string): { value?: JsonValue; problem?: string } {
  const raw = ann[key];
  if (raw === undefined) return {};
  if (typeof raw !== "string") return { problem: `annotation ${key} is not a string` };
  if (raw.length > MAX_BACKEND_DATA_CHARS) {
    return { problem: `annotation ${key} is ${raw.length} characters long, over the ${MAX_BACKEND_DATA_CHARS} Weft reads: ${showAnnotationValue(raw, 40)}` };
  }
  if (jsonTextDepth(raw, MAX_BACKEND_DATA_DEPTH) > MAX_BACKEND_DATA_DEPTH) {
    return { problem: `annotation ${key} nests deeper than ${MAX_BACKEND_DATA_DEPTH} levels: ${showAnnotationValue(raw, 40)}` };
  }
  try {
    return { value: JSON.parse(raw) as JsonValue };
  } catch (e) {
    return { problem: `annotation ${key} is not valid JSON (${showAnnotationValue((e as Error).message).slice(1, -1)}): ${showAnnotationValue(raw)}` };
  }
}

function ipAnnotation(ann: Record<string, string>, key: string, family: Family): { value?: IPAddress; problem?: string } {
  const raw = ann[key];
  if (raw === undefined || raw === "") return { problem: `annotation ${key} is missing` };
  const ip = typeof raw === "string" && raw.length <= MAX_IP_CHARS ? IPAddress.tryParse(raw) : undefined;
  if (!ip || ip.family !== family) return { problem: `annotation ${key} ${showAnnotationValue(String(raw))} is not an ${famName(family)} address` };
  return { value: ip };
}

export type PeerParse =
  /** The node does not carry `kube-subnet-manager: "true"`: not a lease at all. */
  | { readonly kind: "not-a-lease" }
  | { readonly kind: "malformed"; readonly problem: string }
  | { readonly kind: "lease"; readonly lease: Lease; readonly signature: string };

/**
 * Reads a peer node as a lease for the families this agent runs. `signature` covers exactly the fields that
 * matter to the datapath (subnets, backend type, backend data and public IP of the enabled families), so an
 * update that changes only other fields (status heartbeats, labels, unrelated annotations) is recognisable.
 */
export function nodeToLease(node: NodeLike, a: KubeAnnotations, families: Families): PeerParse {
  const ann = node.metadata?.annotations ?? {};
  if (ann[a.subnetKubeManaged] !== "true") return { kind: "not-a-lease" };
  const subnets = parsePodCIDRs(node);
  if ("problem" in subnets) return { kind: "malformed", problem: subnets.problem };
  const typeTooLong = oversizedProblem(node, a.backendType, MAX_BACKEND_TYPE_CHARS);
  if (typeTooLong) return { kind: "malformed", problem: typeTooLong };
  const backendType = ann[a.backendType];
  if (!backendType) return { kind: "malformed", problem: `annotation ${a.backendType} is missing` };
  if (typeof backendType !== "string" || backendType.length > MAX_BACKEND_TYPE_CHARS || /[\u0000-\u001f\u007f-\u009f]/.test(backendType)) {
    return { kind: "malformed", problem: `annotation ${a.backendType} ${showAnnotationValue(String(backendType))} is not a backend type name (at most ${MAX_BACKEND_TYPE_CHARS} printable characters)` };
  }

  const attrs: { -readonly [K in keyof LeaseAttrs]: LeaseAttrs[K] } = { backendType };
  const lease: { -readonly [K in keyof Lease]: Lease[K] } = { attrs, nodeName: nodeName(node) };
  const sig: unknown[] = [backendType];
  for (const family of ["v4", "v6"] as const) {
    if (!families[family]) continue;
    const subnet = subnets[family];
    if (!subnet) {
      return { kind: "malformed", problem: `no ${famName(family)} podCIDR (spec.podCIDRs ${showList(podCIDRStrings(node))})` };
    }
    const ipKey = family === "v4" ? a.publicIP : a.publicIPv6;
    const dataKey = family === "v4" ? a.backendData : a.backendV6Data;
    const tooLong = oversizedProblem(node, ipKey, MAX_IP_CHARS) ?? oversizedProblem(node, dataKey, MAX_BACKEND_DATA_CHARS);
    if (tooLong) return { kind: "malformed", problem: tooLong };
    const ip = ipAnnotation(ann, ipKey, family);
    if (ip.problem) return { kind: "malformed", problem: ip.problem };
    const data = jsonAnnotation(ann, dataKey);
    if (data.problem) return { kind: "malformed", problem: data.problem };
    if (family === "v4") {
      lease.subnet = subnet;
      attrs.publicIP = ip.value;
      if (data.value !== undefined) attrs.backendData = data.value;
    } else {
      lease.ipv6Subnet = subnet;
      attrs.publicIPv6 = ip.value;
      if (data.value !== undefined) attrs.backendV6Data = data.value;
    }
    sig.push(family, subnet.toString(), ann[ipKey], ann[dataKey] ?? null);
  }
  if (!lease.subnet && !lease.ipv6Subnet) return { kind: "malformed", problem: "no address family enabled" };
  if (node.metadata?.resourceVersion) lease.revision = node.metadata.resourceVersion;
  return { kind: "lease", lease, signature: JSON.stringify(sig) };
}

/**
 * The subnets of this agent's own node, checked against the configured networks. Errors are WeftError
 * CONFIG_INVALID with the exact fix, because a missing or foreign podCIDR is the most common setup mistake.
 */
export function localSubnets(
  node: NodeLike,
  families: Families,
  networks: { v4?: IPNet; v6?: IPNet },
  netConfSource: string,
): { subnet?: IPNet; ipv6Subnet?: IPNet } {
  const name = nodeName(node);
  const raw = podCIDRStrings(node);
  if (raw.length === 0) {
    throw new WeftError(
      "CONFIG_INVALID",
      `node "${name}" has no spec.podCIDR: start kube-controller-manager with --allocate-node-cidrs and --cluster-cidr, or set it by hand`,
    );
  }
  const parsed = parsePodCIDRs(node);
  if ("problem" in parsed) throw new WeftError("CONFIG_INVALID", `node "${name}": ${parsed.problem}`);
  const out: { subnet?: IPNet; ipv6Subnet?: IPNet } = {};
  for (const family of ["v4", "v6"] as const) {
    if (!families[family]) continue;
    const subnet = parsed[family];
    const key = family === "v4" ? "Network" : "IPv6Network";
    if (!subnet) {
      throw new WeftError(
        "CONFIG_INVALID",
        `node "${name}" has no ${famName(family)} podCIDR (spec.podCIDRs ${showList(raw)}) but ${netConfSource} enables ${famName(family)}: ` +
          `give the node an ${famName(family)} podCIDR (kube-controller-manager --cluster-cidr) or set Enable${family === "v4" ? "IPv4" : "IPv6"} to false`,
      );
    }
    const network = networks[family];
    if (network && !network.contains(subnet)) {
      throw new WeftError(
        "CONFIG_INVALID",
        `node "${name}" podCIDR ${subnet} is outside ${key} ${network} of ${netConfSource}: ` +
          `make ${key} contain the cluster CIDR (kube-controller-manager --cluster-cidr) or fix the node's podCIDR`,
      );
    }
    if (family === "v4") out.subnet = subnet;
    else out.ipv6Subnet = subnet;
  }
  return out;
}

/** An annotation value, or null meaning "remove this annotation". */
export type AnnotationValue = string | null;

/**
 * The annotations this node should carry to advertise `attrs` for `families`, and the attributes peers will
 * actually see (the public IP replaced by a user-set overwrite annotation, when present).
 * Annotations of a disabled family are removed so peers never read stale data.
 *
 * `keepUnknownData` (the lease acquisition, before the backend has registered and knows its data): an enabled
 * family's backend data that `attrs` does not carry yet is left as the node has it, when the node already
 * advertises the same backend type. A restarting agent must not publish "null" over its VTEP MAC or public key
 * for the moment until it re-publishes them: peers would tear its datapath down in between.
 */
export function desiredAnnotations(
  current: Record<string, string>,
  a: KubeAnnotations,
  attrs: LeaseAttrs,
  families: Families,
  name: string,
  options: { readonly keepUnknownData?: boolean } = {},
): { annotations: Record<string, AnnotationValue>; advertised: LeaseAttrs } {
  const want: Record<string, AnnotationValue> = {
    [a.subnetKubeManaged]: "true",
    [a.backendType]: attrs.backendType,
  };
  const advertised: { -readonly [K in keyof LeaseAttrs]: LeaseAttrs[K] } = { ...attrs };
  for (const family of ["v4", "v6"] as const) {
    const dataKey = family === "v4" ? a.backendData : a.backendV6Data;
    const ipKey = family === "v4" ? a.publicIP : a.publicIPv6;
    const overwriteKey = family === "v4" ? a.publicIPOverwrite : a.publicIPv6Overwrite;
    if (!families[family]) {
      want[dataKey] = null;
      want[ipKey] = null;
      if (family === "v4") {
        delete advertised.publicIP;
        delete advertised.backendData;
      } else {
        delete advertised.publicIPv6;
        delete advertised.backendV6Data;
      }
      continue;
    }
    const data = family === "v4" ? attrs.backendData : attrs.backendV6Data;
    const keep = options.keepUnknownData && data === undefined && current[dataKey] !== undefined && current[a.backendType] === attrs.backendType;
    // Flannel writes the JSON of absent data as "null"; peers (Weft or Flannel) read that as "no data".
    if (!keep) want[dataKey] = JSON.stringify(data ?? null);
    let ip = family === "v4" ? attrs.publicIP : attrs.publicIPv6;
    const overwrite = current[overwriteKey];
    if (overwrite !== undefined && overwrite !== "") {
      const o = overwrite.length <= MAX_IP_CHARS ? IPAddress.tryParse(overwrite) : undefined;
      if (!o || o.family !== family) {
        throw new WeftError(
          "CONFIG_INVALID",
          `node "${name}" annotation ${overwriteKey} ${showAnnotationValue(overwrite)} is not an ${famName(family)} address: fix it or remove it (kubectl annotate node ${name} ${overwriteKey}-)`,
        );
      }
      ip = o;
    }
    if (ip) {
      want[ipKey] = ip.toString();
      if (family === "v4") advertised.publicIP = ip;
      else advertised.publicIPv6 = ip;
    }
  }
  return { annotations: want, advertised };
}

/** The annotations of `want` that differ from `current` (null: present and must go); empty when in sync. */
export function annotationPatch(current: Record<string, string>, want: Record<string, AnnotationValue>): Record<string, AnnotationValue> {
  const out: Record<string, AnnotationValue> = {};
  for (const [k, v] of Object.entries(want)) {
    if (v === null) {
      if (k in current) out[k] = null;
    } else if (current[k] !== v) out[k] = v;
  }
  return out;
}

/** The user-set `node-public-ip(-v6)` annotations; a malformed value is a configuration error. */
export function nodePublicIPs(node: NodeLike, a: KubeAnnotations): { v4?: IPAddress; v6?: IPAddress } {
  const ann = node.metadata?.annotations ?? {};
  const out: { v4?: IPAddress; v6?: IPAddress } = {};
  for (const [family, key] of [
    ["v4", a.nodePublicIP],
    ["v6", a.nodePublicIPv6],
  ] as const) {
    const raw = ann[key];
    if (raw === undefined || raw === "") continue;
    const ip = raw.length <= MAX_IP_CHARS ? IPAddress.tryParse(raw) : undefined;
    if (!ip || ip.family !== family) {
      throw new WeftError(
        "CONFIG_INVALID",
        `node "${nodeName(node)}" annotation ${key} ${showAnnotationValue(raw)} is not an ${famName(family)} address: fix it or remove it`,
      );
    }
    out[family] = ip;
  }
  return out;
}
