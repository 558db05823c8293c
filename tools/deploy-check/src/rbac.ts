/**
 * RBAC arithmetic for the manifest check: which (resource, verb) pairs a ClusterRole grants, and which pair an
 * API request needs, with the request-to-verb mapping of the API server's RequestInfoResolver
 * (k8s.io/apiserver/pkg/endpoints/request): GET of one object is `get`, GET of a collection `list`, or `watch`
 * with `?watch=true`; PATCH `patch`; PUT `update`; POST `create`; DELETE `delete` / `deletecollection`.
 * A subresource is its own resource to RBAC (`nodes/status`).
 */
import type { V1ClusterRole } from "@kubernetes/client-node";

/** "resource verb", with `group/` in front of the resource for a named API group: `nodes/status patch`. */
export type Grant = string;

export function grant(group: string, resource: string, verb: string): Grant {
  return `${group ? `${group}/` : ""}${resource} ${verb}`;
}

/** Every pair a ClusterRole grants. Wildcards and resourceNames are refused: the manifest should not need them. */
export function grantedPairs(role: V1ClusterRole): Set<Grant> {
  const out = new Set<Grant>();
  (role.rules ?? []).forEach((r, i) => {
    const where = `ClusterRole ${role.metadata?.name ?? "?"} rules[${i}]`;
    if (r.nonResourceURLs?.length) throw new Error(`${where}: nonResourceURLs are not used by weftd`);
    if (r.resourceNames?.length) throw new Error(`${where}: resourceNames cannot name "this node" in a DaemonSet-wide role`);
    for (const list of [r.apiGroups ?? [], r.resources ?? [], r.verbs]) {
      if (list.includes("*")) throw new Error(`${where}: wildcard "*" grants more than weftd uses`);
    }
    for (const g of r.apiGroups ?? []) for (const res of r.resources ?? []) for (const v of r.verbs) out.add(grant(g, res, v));
  });
  return out;
}

/** What the audit log of an API server keeps of a request. */
export interface ApiRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
}

/** The RBAC pair a resource request needs; throws for a path that is not a resource request. */
export function requiredPair(req: ApiRequest): Grant {
  const parts = req.path.split("/").filter(Boolean).map(decodeURIComponent);
  let group: string;
  let rest: string[];
  if (parts[0] === "api" && parts.length >= 3) {
    group = "";
    rest = parts.slice(2);
  } else if (parts[0] === "apis" && parts.length >= 4) {
    group = parts[1]!;
    rest = parts.slice(3);
  } else throw new Error(`${req.method} ${req.path} is not a resource request`);
  if (rest[0] === "namespaces" && rest.length >= 3) rest = rest.slice(2);
  const [resource, name, sub] = rest;
  if (!resource) throw new Error(`${req.method} ${req.path}: no resource in the path`);
  const res = sub ? `${resource}/${sub}` : resource;
  const watch = req.query.watch === "true" || req.query.watch === "1";
  const verbs: Record<string, string | undefined> = {
    GET: name ? (watch ? "watch" : "get") : watch ? "watch" : "list",
    HEAD: name ? "get" : "list",
    PATCH: "patch",
    PUT: "update",
    POST: "create",
    DELETE: name ? "delete" : "deletecollection",
  };
  const verb = verbs[req.method.toUpperCase()];
  if (!verb) throw new Error(`${req.method} ${req.path}: no RBAC verb for method ${req.method}`);
  return grant(group, res, verb);
}
