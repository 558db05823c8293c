/**
 * The slice of the Kubernetes v1 Node (and Pod) schema the fake API server knows: field types for validation
 * and the strategic-merge metadata (`patchStrategy` / `patchMergeKey` from k8s.io/api/core/v1/types.go) for
 * the lists where it matters.
 *
 * Fields we do not model in detail are typed `any` (accepted as they are, never validated), so a test can
 * store a realistic Node without the fake rejecting it. A field that is not in the schema at all is "unknown"
 * and is handled like the real server's `fieldValidation` (Strict: 400, Warn: dropped with a Warning header,
 * Ignore: dropped silently).
 */

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

export type Schema =
  | { readonly t: "string" }
  | { readonly t: "bool" }
  | { readonly t: "int" }
  /** resource.Quantity: a string ("4", "16Gi") or a number; both are accepted by the real decoder. */
  | { readonly t: "quantity" }
  /** Anything; not validated, merged as a map if both sides are objects. */
  | { readonly t: "any" }
  | { readonly t: "map"; readonly values: Schema }
  | { readonly t: "object"; readonly fields: Readonly<Record<string, Schema>> }
  | {
      readonly t: "list";
      readonly items: Schema;
      /** Strategic merge: `merge` with a `mergeKey` for lists of objects, `merge` alone for primitive sets. */
      readonly strategy?: "merge";
      readonly mergeKey?: string;
    };

const str: Schema = { t: "string" };
const bool: Schema = { t: "bool" };
const int: Schema = { t: "int" };
const any: Schema = { t: "any" };
const quantity: Schema = { t: "quantity" };
const obj = (fields: Record<string, Schema>): Schema => ({ t: "object", fields });
const map = (values: Schema): Schema => ({ t: "map", values });
const list = (items: Schema, extra: { strategy?: "merge"; mergeKey?: string } = {}): Schema => ({ t: "list", items, ...extra });

const time = str; // metav1.Time is an RFC 3339 string on the wire

export const objectMetaSchema: Schema = obj({
  name: str,
  generateName: str,
  namespace: str,
  selfLink: str,
  uid: str,
  resourceVersion: str,
  generation: int,
  creationTimestamp: time,
  deletionTimestamp: time,
  deletionGracePeriodSeconds: int,
  labels: map(str),
  annotations: map(str),
  ownerReferences: list(any, { strategy: "merge", mergeKey: "uid" }),
  finalizers: list(str, { strategy: "merge" }),
  managedFields: list(any),
});

const nodeCondition = obj({
  type: str,
  status: str,
  lastHeartbeatTime: time,
  lastTransitionTime: time,
  reason: str,
  message: str,
});

const taint = obj({ key: str, value: str, effect: str, timeAdded: time });

export const nodeSchema: Schema = obj({
  kind: str,
  apiVersion: str,
  metadata: objectMetaSchema,
  spec: obj({
    podCIDR: str,
    // types.go: `PodCIDRs []string ... patchStrategy:"merge"` (a set of primitives)
    podCIDRs: list(str, { strategy: "merge" }),
    providerID: str,
    unschedulable: bool,
    taints: list(taint),
    configSource: any,
    externalID: str,
  }),
  status: obj({
    capacity: map(quantity),
    allocatable: map(quantity),
    phase: str,
    // types.go: `Conditions []NodeCondition ... patchStrategy:"merge" patchMergeKey:"type"`
    conditions: list(nodeCondition, { strategy: "merge", mergeKey: "type" }),
    // types.go: `Addresses []NodeAddress ... patchStrategy:"merge" patchMergeKey:"type"`
    addresses: list(obj({ type: str, address: str }), { strategy: "merge", mergeKey: "type" }),
    daemonEndpoints: any,
    nodeInfo: map(str),
    images: list(any),
    volumesInUse: list(str),
    volumesAttached: list(any),
    config: any,
    runtimeHandlers: list(any),
    features: any,
  }),
});

export const podSchema: Schema = obj({
  kind: str,
  apiVersion: str,
  metadata: objectMetaSchema,
  spec: any,
  status: any,
});

/** The schema of a child field, or undefined when the field is unknown to the parent. */
export function childSchema(parent: Schema | undefined, key: string): Schema | undefined {
  if (!parent) return undefined;
  switch (parent.t) {
    case "object":
      return Object.prototype.hasOwnProperty.call(parent.fields, key) ? parent.fields[key] : undefined;
    case "map":
      return parent.values;
    case "any":
      return any;
    default:
      return undefined;
  }
}

export interface ValidationResult {
  /** Wrong JSON types: always a 400 from the real server ("cannot unmarshal ... into Go struct field"). */
  readonly typeErrors: string[];
  /** Fields the schema does not have, as `.spec.foo` paths (the real server's strict-decoding wording). */
  readonly unknownFields: string[];
}

function typeName(v: Json): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

/** Checks `value` against `schema`; with `prune`, unknown fields are removed from `value` in place. */
export function validate(value: Json, schema: Schema, prune: boolean, path = ""): ValidationResult {
  const out: ValidationResult = { typeErrors: [], unknownFields: [] };
  walk(value, schema, path, out, prune);
  return out;
}

function walk(v: Json, s: Schema, path: string, out: ValidationResult, prune: boolean): void {
  if (v === null) return; // null decodes as the zero value everywhere
  const bad = (want: string): void => void out.typeErrors.push(`${path || "."}: expected ${want}, got ${typeName(v)} ${JSON.stringify(v)}`);
  switch (s.t) {
    case "any":
      return;
    case "string":
      if (typeof v !== "string") bad("string");
      return;
    case "bool":
      if (typeof v !== "boolean") bad("boolean");
      return;
    case "int":
      if (typeof v !== "number" || !Number.isInteger(v)) bad("integer");
      return;
    case "quantity":
      if (typeof v !== "string" && typeof v !== "number") bad("quantity (string or number)");
      return;
    case "map":
      if (typeof v !== "object" || Array.isArray(v)) return bad("object");
      for (const [k, child] of Object.entries(v)) walk(child, s.values, `${path}.${k}`, out, prune);
      return;
    case "list":
      if (!Array.isArray(v)) return bad("array");
      v.forEach((child, i) => walk(child, s.items, `${path}[${i}]`, out, prune));
      return;
    case "object":
      if (typeof v !== "object" || Array.isArray(v)) return bad("object");
      for (const [k, child] of Object.entries(v)) {
        const cs = s.fields[k];
        if (!Object.prototype.hasOwnProperty.call(s.fields, k) || !cs) {
          out.unknownFields.push(`${path}.${k}`);
          if (prune) delete (v as JsonObject)[k];
          continue;
        }
        walk(child, cs, `${path}.${k}`, out, prune);
      }
      return;
  }
}
