/**
 * Reading a multi-document Kubernetes manifest the way a client does, with @kubernetes/client-node's loader
 * (`loadAllYaml`: js-yaml, then the typed model of each apiVersion/kind), plus the checks a YAML parser alone
 * does not make: fields the Kubernetes model does not know (a typo such as `readinesProbe` is dropped silently
 * by the loader, and by the API server under `fieldValidation=Ignore`), and volume mounts without volumes.
 */
import { loadAllYaml } from "@kubernetes/client-node";
import type { V1PodSpec } from "@kubernetes/client-node";

/** One document of a manifest, as the typed model returned it. */
export interface KubeObject {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata?: { readonly name?: string; readonly namespace?: string; readonly labels?: Record<string, string> };
  readonly [key: string]: unknown;
}

/** Every non-empty document of `text`, typed by @kubernetes/client-node. */
export function loadManifest(text: string): KubeObject[] {
  return (loadAllYaml(text) as (KubeObject | null | undefined)[]).filter((d): d is KubeObject => d !== null && d !== undefined);
}

const RAW_SUFFIX = "-weft-raw";

/**
 * The same documents WITHOUT the typed model: the loader returns a document untouched when it knows no model
 * for its apiVersion/kind, so every top-level `apiVersion` is given a suffix no model has, then taken off again.
 */
export function loadManifestRaw(text: string): KubeObject[] {
  const renamed = text.replace(/^(apiVersion:[ \t]*)(\S+)[ \t]*$/gm, `$1$2${RAW_SUFFIX}`);
  return loadManifest(renamed).map((d) => ({ ...d, ...(d.apiVersion ? { apiVersion: d.apiVersion.slice(0, -RAW_SUFFIX.length) } : {}) }));
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** JSON paths present in `raw` but missing in `typed` (what the typed model dropped). */
function dropped(raw: unknown, typed: unknown, path: string, out: string[]): void {
  if (Array.isArray(raw)) {
    raw.forEach((r, i) => dropped(r, Array.isArray(typed) ? typed[i] : undefined, `${path}[${i}]`, out));
    return;
  }
  if (!isPlainObject(raw)) return;
  const t = isPlainObject(typed) ? typed : {};
  for (const [k, v] of Object.entries(raw)) {
    const p = `${path}.${k}`;
    if (!(k in t) || t[k] === undefined) out.push(p);
    else dropped(v, t[k], p, out);
  }
}

/**
 * Fields of `text` that the Kubernetes model of their object does not have, as `Kind/name: .path` (empty when
 * every field is known). Free-form maps (labels, ConfigMap data) are kept by the model, so they never show up.
 */
export function unknownFields(text: string): string[] {
  const typed = loadManifest(text).map((d) => JSON.parse(JSON.stringify(d)) as unknown);
  const raw = loadManifestRaw(text);
  const out: string[] = [];
  raw.forEach((r, i) => {
    const found: string[] = [];
    dropped(r, typed[i], "", found);
    for (const f of found) out.push(`${r.kind ?? "?"}/${r.metadata?.name ?? "?"}: ${f}`);
  });
  return out;
}

/** The one object of `kind` named `name`; throws naming what is missing or doubled. */
export function findObject<T = KubeObject>(docs: readonly KubeObject[], kind: string, name: string): T {
  const hits = docs.filter((d) => d.kind === kind && d.metadata?.name === name);
  if (hits.length !== 1) throw new Error(`expected exactly one ${kind} named ${JSON.stringify(name)} in the manifest, found ${hits.length}`);
  return hits[0] as T;
}

/**
 * What is wrong with a pod spec's volumes: a mount naming no declared volume, a declared volume nobody mounts,
 * a volume declared twice, a path mounted twice in one container.
 */
export function volumeProblems(spec: V1PodSpec): string[] {
  const problems: string[] = [];
  const declared = new Map<string, number>();
  for (const v of spec.volumes ?? []) declared.set(v.name, (declared.get(v.name) ?? 0) + 1);
  for (const [name, n] of declared) if (n > 1) problems.push(`volume ${name} is declared ${n} times`);
  const used = new Set<string>();
  for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
    const paths = new Set<string>();
    for (const m of c.volumeMounts ?? []) {
      used.add(m.name);
      if (!declared.has(m.name)) problems.push(`container ${c.name} mounts ${m.name} at ${m.mountPath}, but no volume has that name`);
      if (paths.has(m.mountPath)) problems.push(`container ${c.name} mounts ${m.mountPath} twice`);
      paths.add(m.mountPath);
    }
  }
  for (const name of declared.keys()) if (!used.has(name)) problems.push(`volume ${name} is declared but no container mounts it`);
  return problems;
}

/** The volume mounted in `container` at the longest mountPath that contains `path` (a file or directory). */
export function mountFor(spec: V1PodSpec, containerName: string, path: string): { mountPath: string; volume: NonNullable<V1PodSpec["volumes"]>[number]; subPath: string } | undefined {
  const c = [...(spec.initContainers ?? []), ...spec.containers].find((x) => x.name === containerName);
  if (!c) return undefined;
  const within = (mp: string) => path === mp || path.startsWith(mp.endsWith("/") ? mp : `${mp}/`);
  const best = (c.volumeMounts ?? []).filter((m) => within(m.mountPath)).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  if (!best) return undefined;
  const volume = (spec.volumes ?? []).find((v) => v.name === best.name);
  if (!volume) return undefined;
  return { mountPath: best.mountPath, volume, subPath: path.slice(best.mountPath.length).replace(/^\//, "") };
}
