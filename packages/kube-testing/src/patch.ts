/**
 * The three patch formats the Kubernetes API accepts on a built-in type, implemented from their specs:
 *
 * - JSON merge patch (RFC 7386, `application/merge-patch+json`): objects merge recursively, `null` deletes a
 *   key, anything else (lists included) replaces.
 * - Strategic merge patch (`application/strategic-merge-patch+json`): like merge patch, except where the Go
 *   type declares a strategy. Lists with `patchMergeKey` (Node `status.conditions` by `type`) merge element by
 *   element; primitive lists with `patchStrategy:"merge"` (`spec.podCIDRs`) are unions. Directives:
 *   `$patch: replace|delete|merge` (in maps and in merge-key list elements), `$deleteFromPrimitiveList/<f>`,
 *   `$retainKeys`, and `$setElementOrder/<f>` (accepted; ordering is not applied — see the ADR).
 * - JSON patch (RFC 6902, `application/json-patch+json`): add, remove, replace, move, copy, test.
 *
 * Every function returns a new value and leaves its inputs untouched. Malformed patches throw PatchError,
 * which the server turns into 400 BadRequest (or 422 for a failed JSON-patch `test`, as the real server does).
 */
import { type Json, type JsonObject, type Schema, childSchema } from "./schema.js";

export class PatchError extends Error {
  override readonly name = "PatchError";
  constructor(
    message: string,
    readonly httpCode: 400 | 422 = 400,
  ) {
    super(message);
  }
}

export function isObject(v: Json | undefined): v is JsonObject {
  return v !== null && v !== undefined && typeof v === "object" && !Array.isArray(v);
}

export function clone<T extends Json>(v: T): T {
  return structuredClone(v);
}

export function deepEqual(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (a === null || b === null || a === undefined || b === undefined) return false;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isObject(a)) {
    if (!isObject(b)) return false;
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && deepEqual(a[k], b[k]));
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------
// RFC 7386 JSON merge patch

export function jsonMergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = jsonMergePatch(out[k], v);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Strategic merge patch

const PATCH = "$patch";
const RETAIN_KEYS = "$retainKeys";
const DELETE_PRIMITIVE = "$deleteFromPrimitiveList/";
const SET_ORDER = "$setElementOrder/";

export function strategicMergePatch(original: Json | undefined, patch: Json, schema: Schema | undefined): Json {
  if (!isObject(patch)) return clone(patch);
  return mergeMap(isObject(original) ? original : undefined, patch, schema);
}

function mergeMap(original: JsonObject | undefined, patch: JsonObject, schema: Schema | undefined): JsonObject {
  const directive = patch[PATCH];
  if (directive !== undefined) {
    if (directive === "replace") {
      const rest = clone(patch);
      delete rest[PATCH];
      return stripDirectives(rest);
    }
    if (directive === "delete") return {};
    if (directive !== "merge") throw new PatchError(`unknown patch type: ${JSON.stringify(directive)} in map`);
  }
  const out: JsonObject = original ? clone(original) : {};
  const deletions: Record<string, Json[]> = {};
  let retain: string[] | undefined;
  for (const [k, v] of Object.entries(patch)) {
    if (k === PATCH) continue;
    if (k === RETAIN_KEYS) {
      if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) throw new PatchError(`${RETAIN_KEYS} must be a list of strings`);
      retain = v as string[];
      continue;
    }
    if (k.startsWith(SET_ORDER)) continue; // ordering only; see the ADR
    if (k.startsWith(DELETE_PRIMITIVE)) {
      if (!Array.isArray(v)) throw new PatchError(`${k} must be a list`);
      deletions[k.slice(DELETE_PRIMITIVE.length)] = v;
      continue;
    }
    if (v === null) {
      delete out[k];
      continue;
    }
    const cs = childSchema(schema, k);
    out[k] = mergeValue(out[k], v, cs, k);
  }
  for (const [field, values] of Object.entries(deletions)) {
    const cur = out[field];
    if (Array.isArray(cur)) out[field] = cur.filter((x) => !values.some((d) => deepEqual(d, x)));
  }
  if (retain) {
    for (const k of Object.keys(out)) if (!retain.includes(k)) delete out[k];
  }
  return out;
}

function mergeValue(original: Json | undefined, patch: Json, schema: Schema | undefined, field: string): Json {
  if (isObject(patch)) {
    // A map patch against a non-map (or absent) value starts from empty, as the real implementation does.
    return mergeMap(isObject(original) ? original : undefined, patch, schema);
  }
  if (Array.isArray(patch)) {
    if (schema?.t === "list" && schema.strategy === "merge") {
      const cur = Array.isArray(original) ? original : [];
      return schema.mergeKey ? mergeKeyedList(cur, patch, schema, field) : mergePrimitiveList(cur, patch, field);
    }
    return stripDirectives(clone(patch));
  }
  return patch;
}

function mergePrimitiveList(original: Json[], patch: Json[], field: string): Json[] {
  const out = clone(original);
  for (const v of patch) {
    if (isObject(v) || Array.isArray(v)) throw new PatchError(`${field}: expected a list of primitives in a merging primitive list, got ${JSON.stringify(v)}`);
    if (!out.some((x) => deepEqual(x, v))) out.push(v);
  }
  return out;
}

function mergeKeyedList(original: Json[], patch: Json[], schema: Extract<Schema, { t: "list" }>, field: string): Json[] {
  const key = schema.mergeKey!;
  // `[{"$patch": "replace"}, ...rest]` replaces the whole list with rest.
  if (patch.some((e) => isObject(e) && e[PATCH] === "replace" && Object.keys(e).length === 1)) {
    return patch.filter((e) => !(isObject(e) && e[PATCH] === "replace")).map((e) => stripDirectives(clone(e)));
  }
  const out = clone(original);
  for (const elem of patch) {
    if (!isObject(elem)) throw new PatchError(`${field}: elements of a list merged by "${key}" must be objects, got ${JSON.stringify(elem)}`);
    if (!Object.prototype.hasOwnProperty.call(elem, key)) {
      throw new PatchError(`map: ${JSON.stringify(elem)} does not contain declared merge key: ${key}`);
    }
    const idx = out.findIndex((x) => isObject(x) && deepEqual(x[key], elem[key]));
    if (elem[PATCH] === "delete") {
      if (idx >= 0) out.splice(idx, 1);
      continue;
    }
    if (elem[PATCH] === "replace") {
      const rest = clone(elem);
      delete rest[PATCH];
      if (idx >= 0) out[idx] = stripDirectives(rest);
      else out.push(stripDirectives(rest));
      continue;
    }
    if (idx >= 0) out[idx] = mergeMap(out[idx] as JsonObject, elem, schema.items);
    else out.push(mergeMap(undefined, elem, schema.items));
  }
  return out;
}

function stripDirectives<T extends Json>(v: T): T {
  if (Array.isArray(v)) return v.map((x) => stripDirectives(x)) as T;
  if (isObject(v)) {
    const o: JsonObject = {};
    for (const [k, x] of Object.entries(v)) {
      if (k === PATCH || k === RETAIN_KEYS || k.startsWith(SET_ORDER) || k.startsWith(DELETE_PRIMITIVE)) continue;
      o[k] = stripDirectives(x);
    }
    return o as T;
  }
  return v;
}

// ---------------------------------------------------------------------------------------------------------
// RFC 6902 JSON patch

function parsePointer(ptr: string): string[] {
  if (ptr === "") return [];
  if (!ptr.startsWith("/")) throw new PatchError(`JSON pointer ${JSON.stringify(ptr)} must start with "/"`);
  return ptr
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function resolveParent(doc: Json, tokens: string[], ptr: string): { parent: JsonObject | Json[]; last: string } {
  if (tokens.length === 0) throw new PatchError(`JSON patch on the whole document (${JSON.stringify(ptr)}) is not supported`);
  let cur: Json = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(t)] as Json;
    else if (isObject(cur)) cur = cur[t] as Json;
    else cur = undefined as unknown as Json;
    if (cur === undefined || cur === null || typeof cur !== "object") throw new PatchError(`doc is missing path: ${ptr}`);
  }
  return { parent: cur as JsonObject | Json[], last: tokens[tokens.length - 1]! };
}

function getAt(doc: Json, ptr: string): Json {
  let cur: Json | undefined = doc;
  for (const t of parsePointer(ptr)) {
    if (Array.isArray(cur)) cur = cur[Number(t)];
    else if (isObject(cur)) cur = Object.prototype.hasOwnProperty.call(cur, t) ? cur[t] : undefined;
    else cur = undefined;
    if (cur === undefined) throw new PatchError(`doc is missing path: ${ptr}`);
  }
  return cur;
}

function arrayIndex(arr: Json[], last: string, forAdd: boolean, ptr: string): number {
  if (forAdd && last === "-") return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(last)) throw new PatchError(`invalid array index ${JSON.stringify(last)} in ${ptr}`);
  const i = Number(last);
  if (i > arr.length || (!forAdd && i === arr.length)) throw new PatchError(`array index ${i} out of bounds in ${ptr}`);
  return i;
}

function addAt(doc: Json, ptr: string, value: Json): void {
  const { parent, last } = resolveParent(doc, parsePointer(ptr), ptr);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true, ptr), 0, clone(value));
  else parent[last] = clone(value);
}

function removeAt(doc: Json, ptr: string): Json {
  const { parent, last } = resolveParent(doc, parsePointer(ptr), ptr);
  if (Array.isArray(parent)) return parent.splice(arrayIndex(parent, last, false, ptr), 1)[0]!;
  if (!Object.prototype.hasOwnProperty.call(parent, last)) throw new PatchError(`unable to remove nonexistent key: ${last}: missing value`);
  const old = parent[last]!;
  delete parent[last];
  return old;
}

export function jsonPatch(target: Json, patch: Json): Json {
  if (!Array.isArray(patch)) throw new PatchError(`json: cannot unmarshal ${typeName(patch)} into Go value of type jsonpatch.Patch`);
  const doc = clone(target);
  for (const op of patch) {
    if (!isObject(op) || typeof op.op !== "string" || typeof op.path !== "string") {
      throw new PatchError(`invalid JSON patch operation ${JSON.stringify(op)}: needs "op" and "path" strings`);
    }
    const path = op.path;
    switch (op.op) {
      case "add":
        if (!("value" in op)) throw new PatchError(`add operation does not contain a value`);
        addAt(doc, path, op.value!);
        break;
      case "remove":
        removeAt(doc, path);
        break;
      case "replace":
        if (!("value" in op)) throw new PatchError(`replace operation does not contain a value`);
        getAt(doc, path);
        removeAt(doc, path);
        addAt(doc, path, op.value!);
        break;
      case "move":
      case "copy": {
        if (typeof op.from !== "string") throw new PatchError(`${op.op} operation needs a "from" string`);
        const v = op.op === "move" ? removeAt(doc, op.from) : clone(getAt(doc, op.from));
        addAt(doc, path, v);
        break;
      }
      case "test":
        if (!deepEqual(getAt(doc, path), op.value ?? null)) throw new PatchError(`testing value ${path} failed: test failed`, 422);
        break;
      default:
        throw new PatchError(`unexpected kind: ${op.op}`);
    }
  }
  return doc;
}

function typeName(v: Json): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v === "object" ? "object" : typeof v;
}
