/**
 * CNI results and spec versions. The plugin builds one canonical result (the 1.1.0 shape) and converts it to the
 * version the network configuration asked for, as the reference plugins do:
 *   1.1.0        interfaces (+mtu), ips (interface index), routes (+mtu/advmss/priority/table/scope), dns
 *   1.0.0        the same without the 1.1 additions
 *   0.3.0-0.4.0  ips carry "version": "4" | "6"
 *   0.1.0-0.2.0  the legacy {ip4: {ip, gateway, routes}, ip6: {...}, dns} shape, one address per family
 */
import { IPAddress, IPPrefix } from "@weft/core";
import { CniError, CniErrorCode, showValue } from "./errors.js";

export const SUPPORTED_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
/** The version this plugin speaks natively (VERSION's own cniVersion). */
export const CURRENT_VERSION: CniVersion = "1.1.0";
/** A configuration without "cniVersion" is 0.1.0 (libcni's rule). */
export const IMPLICIT_VERSION: CniVersion = "0.1.0";

export interface CniInterface {
  name: string;
  mac?: string;
  /** 1.1.0+ */
  mtu?: number;
  sandbox?: string;
}

export interface CniIPConfig {
  /** Address with prefix length, e.g. "198.19.1.5/24". */
  address: string;
  gateway?: string;
  /** Index into `interfaces`. */
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
  /** 1.1.0+ */
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** The canonical (1.1.0-shaped) result. */
export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIPConfig[];
  routes?: CniRoute[];
  dns?: CniDns;
}

/** Semver-ish comparison of "a.b.c" strings (CNI versions have no pre-release parts). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map((x) => Number(x));
  const pb = b.split(".").map((x) => Number(x));
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

export function isSupportedVersion(v: string): v is CniVersion {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Validates the configuration's cniVersion (code 1 when unsupported) and returns it. */
export function checkVersion(v: unknown): CniVersion {
  if (v === undefined || v === "") return IMPLICIT_VERSION;
  if (typeof v !== "string" || !isSupportedVersion(v)) {
    throw new CniError(
      CniErrorCode.INCOMPATIBLE_VERSION,
      `incompatible CNI version: the network config has cniVersion ${showValue(v)}, weft-cni supports ` +
        `${SUPPORTED_VERSIONS.join(", ")}; set "cniVersion" in the conflist to one of them (1.0.0 is the common choice)`,
    );
  }
  return v;
}

/** Throws code 1 when `command` needs a newer cniVersion than the configuration's (CHECK: 0.4.0; STATUS, GC: 1.1.0). */
export function requireVersion(command: string, have: string, need: string): void {
  if (compareVersions(have, need) < 0) {
    throw new CniError(
      CniErrorCode.INCOMPATIBLE_VERSION,
      `config version does not allow ${command}: cniVersion is ${have}, ${command} needs ${need} or newer`,
    );
  }
}

function familyOf(address: string): "4" | "6" {
  const ip = IPPrefix.tryParse(address)?.ip ?? IPAddress.tryParse(address);
  return ip?.family === "v6" ? "6" : "4";
}

function stripRoute(r: CniRoute, v11: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = { dst: r.dst };
  if (r.gw !== undefined) out.gw = r.gw;
  if (v11) {
    for (const k of ["mtu", "advmss", "priority", "table", "scope"] as const) if (r[k] !== undefined) out[k] = r[k];
  }
  return out;
}

function dnsOut(dns: CniDns | undefined): CniDns {
  return dns ? { ...dns } : {};
}

/** Renders `result` in the shape of `version` (one of SUPPORTED_VERSIONS). */
export function convertResult(result: CniResult, version: string): Record<string, unknown> {
  const ips = result.ips ?? [];
  const routes = result.routes ?? [];
  if (compareVersions(version, "0.3.0") < 0) {
    // Legacy: one address per family; routes split by the family of their destination.
    const out: Record<string, unknown> = { cniVersion: version };
    for (const fam of ["4", "6"] as const) {
      const ip = ips.find((x) => familyOf(x.address) === fam);
      if (!ip) continue;
      const famRoutes = routes.filter((r) => familyOf(r.dst) === fam).map((r) => stripRoute(r, false));
      const block: Record<string, unknown> = { ip: ip.address };
      if (ip.gateway) block.gateway = ip.gateway;
      if (famRoutes.length > 0) block.routes = famRoutes;
      out[`ip${fam}`] = block;
    }
    out.dns = dnsOut(result.dns);
    return out;
  }
  const v11 = compareVersions(version, "1.1.0") >= 0;
  const withVersion = compareVersions(version, "1.0.0") < 0;
  const out: Record<string, unknown> = { cniVersion: version };
  if (result.interfaces && result.interfaces.length > 0) {
    out.interfaces = result.interfaces.map((i) => {
      const o: Record<string, unknown> = { name: i.name };
      if (i.mac !== undefined) o.mac = i.mac;
      if (v11 && i.mtu !== undefined) o.mtu = i.mtu;
      if (i.sandbox !== undefined) o.sandbox = i.sandbox;
      return o;
    });
  }
  if (ips.length > 0) {
    out.ips = ips.map((ip) => {
      const o: Record<string, unknown> = {};
      if (withVersion) o.version = familyOf(ip.address);
      if (ip.interface !== undefined) o.interface = ip.interface;
      o.address = ip.address;
      if (ip.gateway !== undefined) o.gateway = ip.gateway;
      return o;
    });
  }
  if (routes.length > 0) out.routes = routes.map((r) => stripRoute(r, v11));
  out.dns = dnsOut(result.dns);
  return out;
}

function asObject(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new CniError(CniErrorCode.INVALID_NETWORK_CONFIG, `invalid network config: "${field}" must be an object`);
  }
  return v as Record<string, unknown>;
}

/**
 * Reads a prevResult of any supported version (0.3.0+ or the legacy ip4/ip6 shape) into the canonical form.
 * Unknown fields are ignored; wrong types name the field (code 7).
 */
export function parsePrevResult(raw: unknown): CniResult {
  const o = asObject(raw, "prevResult");
  const version = typeof o.cniVersion === "string" && o.cniVersion !== "" ? o.cniVersion : IMPLICIT_VERSION;
  const bad = (field: string, what: string) =>
    new CniError(CniErrorCode.INVALID_NETWORK_CONFIG, `invalid network config: "prevResult.${field}" ${what}`);
  const str = (v: unknown, field: string): string => {
    if (typeof v !== "string") throw bad(field, "must be a string");
    return v;
  };
  const routeOf = (r: unknown, field: string): CniRoute => {
    const ro = asObject(r, `prevResult.${field}`);
    const route: CniRoute = { dst: str(ro.dst, `${field}.dst`) };
    if (ro.gw !== undefined && ro.gw !== null) route.gw = str(ro.gw, `${field}.gw`);
    return route;
  };
  const result: CniResult = { cniVersion: version };
  if (compareVersions(version, "0.3.0") < 0) {
    const ips: CniIPConfig[] = [];
    const routes: CniRoute[] = [];
    for (const fam of ["ip4", "ip6"]) {
      if (o[fam] === undefined) continue;
      const b = asObject(o[fam], `prevResult.${fam}`);
      const ip: CniIPConfig = { address: str(b.ip, `${fam}.ip`) };
      if (b.gateway !== undefined) ip.gateway = str(b.gateway, `${fam}.gateway`);
      ips.push(ip);
      if (Array.isArray(b.routes)) b.routes.forEach((r, i) => routes.push(routeOf(r, `${fam}.routes[${i}]`)));
    }
    result.ips = ips;
    result.routes = routes;
    return result;
  }
  if (o.interfaces !== undefined) {
    if (!Array.isArray(o.interfaces)) throw bad("interfaces", "must be an array");
    result.interfaces = o.interfaces.map((x, i) => {
      const io = asObject(x, `prevResult.interfaces[${i}]`);
      const iface: CniInterface = { name: str(io.name, `interfaces[${i}].name`) };
      if (typeof io.mac === "string") iface.mac = io.mac;
      if (typeof io.sandbox === "string") iface.sandbox = io.sandbox;
      if (typeof io.mtu === "number") iface.mtu = io.mtu;
      return iface;
    });
  }
  if (o.ips !== undefined) {
    if (!Array.isArray(o.ips)) throw bad("ips", "must be an array");
    result.ips = o.ips.map((x, i) => {
      const io = asObject(x, `prevResult.ips[${i}]`);
      const ip: CniIPConfig = { address: str(io.address, `ips[${i}].address`) };
      if (io.gateway !== undefined) ip.gateway = str(io.gateway, `ips[${i}].gateway`);
      if (typeof io.interface === "number") ip.interface = io.interface;
      return ip;
    });
  }
  if (o.routes !== undefined) {
    if (!Array.isArray(o.routes)) throw bad("routes", "must be an array");
    result.routes = o.routes.map((r, i) => routeOf(r, `routes[${i}]`));
  }
  if (o.dns !== undefined && typeof o.dns === "object" && o.dns !== null) result.dns = o.dns as CniDns;
  return result;
}
