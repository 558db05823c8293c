/**
 * The network configuration weft-cni reads on stdin, and the CNI_* environment.
 *
 * Keys (Flannel's meta-plugin keys plus the bridge plugin's, flannel.md §5.3):
 *   name, type, cniVersion         standard
 *   subnetFile                     default /run/weft/subnet.env (a flanneld subnet.env works too)
 *   dataDir                        delegate mode: where rendered delegate configs are saved (default /var/lib/cni/weft)
 *   delegate                       object: hand the work to another plugin (bridge by default), as Flannel does
 *   ipam                           overrides: ranges (or subnet/rangeStart/rangeEnd/gateway), routes, dataDir
 *                                  (default /var/lib/cni/networks, host-local's); in delegate mode passed through
 *   bridge                         default "cni0"
 *   isDefaultGateway, hairpinMode  booleans, default false
 *   mtu                            default FLANNEL_MTU from the subnet file
 *   dns, runtimeConfig, args, prevResult, cni.dev/valid-attachments   as the spec defines them
 * Unknown keys are ignored, as the spec allows.
 */
import { CniError, CniErrorCode, invalidConfig } from "./errors.js";
import type { Attachment } from "./ipam/allocator.js";
import { DEFAULT_IPAM_DATA_DIR } from "./ipam/store.js";
import { checkVersion, type CniDns, type CniRoute, type CniVersion } from "./result.js";
import { DEFAULT_SUBNET_FILE } from "./subnet-file.js";
import { IPAddress, IPNet } from "@weft/core";
import type { RangeInput } from "./ipam/range.js";

export const DEFAULT_DATA_DIR = "/var/lib/cni/weft";
export const DEFAULT_BRIDGE = "cni0";

export interface IpamOverrides {
  readonly type?: string;
  /** Range sets replacing the subnet file's (one set per family). */
  readonly ranges?: readonly (readonly RangeInput[])[];
  /** Extra routes for the pod, after the cluster-network routes. */
  readonly routes: readonly CniRoute[];
  readonly dataDir: string;
  /** The section as given (delegate mode passes it on). */
  readonly raw: Readonly<Record<string, unknown>>;
}

export interface WeftNetConf {
  readonly cniVersion: CniVersion;
  readonly name: string;
  readonly type: string;
  readonly subnetFile: string;
  readonly dataDir: string;
  readonly bridge: string;
  readonly isDefaultGateway: boolean;
  readonly hairpinMode: boolean;
  readonly mtu?: number;
  readonly ipam: IpamOverrides;
  readonly delegate?: Readonly<Record<string, unknown>>;
  readonly dns?: CniDns;
  readonly prevResult?: unknown;
  readonly validAttachments?: readonly Attachment[];
  /** The whole object as received (delegate mode copies runtimeConfig etc. from it). */
  readonly raw: Readonly<Record<string, unknown>>;
}

/** Linux interface-name rules (the spec's, which are the kernel's): 1-15 bytes, not . or .., no / : or space. */
export function ifnameProblem(name: string): string | undefined {
  if (name === "") return "is empty";
  if (Buffer.byteLength(name) > 15) return `"${name}" is longer than 15 bytes`;
  if (name === "." || name === "..") return `"${name}" is not a valid interface name`;
  if (/[/:\s]/.test(name)) return `"${name}" contains '/', ':' or whitespace`;
  return undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function optString(o: Record<string, unknown>, key: string, path = key): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw invalidConfig(path, `must be a string, got ${JSON.stringify(v)}`);
  return v;
}

function optBool(o: Record<string, unknown>, key: string): boolean | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw invalidConfig(key, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function parseRoutes(v: unknown, path: string): CniRoute[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalidConfig(path, "must be an array of {dst, gw?}");
  return v.map((r, i) => {
    const p = `${path}[${i}]`;
    if (!isObject(r)) throw invalidConfig(p, "must be an object {dst, gw?}");
    const dst = optString(r, "dst", `${p}.dst`);
    if (!dst || !IPNet.tryParse(dst)) throw invalidConfig(`${p}.dst`, `must be a CIDR, got ${JSON.stringify(r.dst)}`);
    const route: CniRoute = { dst: IPNet.parse(dst).toString() };
    const gw = optString(r, "gw", `${p}.gw`);
    if (gw !== undefined) {
      const ip = IPAddress.tryParse(gw);
      if (!ip) throw invalidConfig(`${p}.gw`, `must be an IP address, got ${JSON.stringify(gw)}`);
      if (ip.family !== IPNet.parse(dst).family) throw invalidConfig(`${p}.gw`, `${gw} is not of the same IP family as dst ${dst}`);
      route.gw = ip.toString();
    }
    return route;
  });
}

function parseRangeInput(v: unknown, path: string): RangeInput {
  if (!isObject(v)) throw invalidConfig(path, "must be an object {subnet, rangeStart?, rangeEnd?, gateway?}");
  const subnet = optString(v, "subnet", `${path}.subnet`);
  if (!subnet) throw invalidConfig(`${path}.subnet`, "is required");
  const out: { -readonly [K in keyof RangeInput]: RangeInput[K] } = { subnet };
  for (const k of ["rangeStart", "rangeEnd", "gateway"] as const) {
    const s = optString(v, k, `${path}.${k}`);
    if (s !== undefined) out[k] = s;
  }
  return out;
}

function parseIpam(v: unknown, delegateMode: boolean): IpamOverrides {
  if (v === undefined || v === null) return { routes: [], dataDir: DEFAULT_IPAM_DATA_DIR, raw: {} };
  if (!isObject(v)) throw invalidConfig("ipam", "must be an object");
  const type = optString(v, "type", "ipam.type");
  if (!delegateMode && type !== undefined && type !== "host-local") {
    throw invalidConfig(
      "ipam.type",
      `is "${type}": without "delegate" weft-cni allocates with its built-in host-local IPAM only; remove ipam.type, ` +
        `or add "delegate": {} to hand the work to the bridge plugin with that IPAM plugin`,
    );
  }
  let ranges: RangeInput[][] | undefined;
  if (v.ranges !== undefined) {
    if (!Array.isArray(v.ranges) || v.ranges.length === 0) throw invalidConfig("ipam.ranges", "must be a non-empty array of range sets");
    ranges = v.ranges.map((set, s) => {
      if (!Array.isArray(set) || set.length === 0) throw invalidConfig(`ipam.ranges[${s}]`, "must be a non-empty array of ranges");
      return set.map((r, i) => parseRangeInput(r, `ipam.ranges[${s}][${i}]`));
    });
  } else if (v.subnet !== undefined) {
    // host-local's older single-range form.
    ranges = [[parseRangeInput(v, "ipam")]];
  }
  const dataDir = optString(v, "dataDir", "ipam.dataDir") ?? DEFAULT_IPAM_DATA_DIR;
  if (!dataDir.startsWith("/")) throw invalidConfig("ipam.dataDir", `must be an absolute path, got "${dataDir}"`);
  return {
    ...(type !== undefined ? { type } : {}),
    ...(ranges ? { ranges } : {}),
    routes: parseRoutes(v.routes, "ipam.routes"),
    dataDir,
    raw: v,
  };
}

function parseAttachments(o: Record<string, unknown>): Attachment[] | undefined {
  // libcni sets both keys (the spec once named the second one).
  const key = o["cni.dev/valid-attachments"] !== undefined ? "cni.dev/valid-attachments" : "cni.dev/attachments";
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw invalidConfig(key, "must be an array of {containerID, ifname}");
  return v.map((a, i) => {
    if (!isObject(a) || typeof a.containerID !== "string" || typeof a.ifname !== "string") {
      throw invalidConfig(`${key}[${i}]`, "must be an object with string containerID and ifname");
    }
    return { containerID: a.containerID, ifname: a.ifname };
  });
}

/** Decodes stdin (code 6 when it is not JSON) and returns the raw object. */
export function decodeConfig(stdin: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(
      CniErrorCode.DECODING_FAILURE,
      `the network configuration on stdin is not valid JSON (${(err as Error).message}); check the conflist in the CNI conf dir`,
    );
  }
  if (!isObject(raw)) throw new CniError(CniErrorCode.DECODING_FAILURE, "the network configuration on stdin must be a JSON object");
  return raw;
}

/** Validates a decoded configuration; every error names the field (code 7) or the version (code 1). */
export function parseNetConf(raw: Record<string, unknown>): WeftNetConf {
  const cniVersion = checkVersion(raw.cniVersion);
  const name = optString(raw, "name");
  if (!name) throw invalidConfig("name", "is required: the network name (e.g. \"cbr0\")");
  if (name === "." || name === ".." || name.includes("/")) throw invalidConfig("name", `"${name}" cannot be used as a directory name`);
  const type = optString(raw, "type") ?? "weft";
  const subnetFile = optString(raw, "subnetFile") ?? DEFAULT_SUBNET_FILE;
  const dataDir = optString(raw, "dataDir") ?? DEFAULT_DATA_DIR;
  if (!dataDir.startsWith("/")) throw invalidConfig("dataDir", `must be an absolute path, got "${dataDir}"`);
  const bridge = optString(raw, "bridge") ?? DEFAULT_BRIDGE;
  const bridgeProblem = ifnameProblem(bridge);
  if (bridgeProblem) throw invalidConfig("bridge", bridgeProblem);
  let mtu: number | undefined;
  if (raw.mtu !== undefined && raw.mtu !== null) {
    if (typeof raw.mtu !== "number" || !Number.isInteger(raw.mtu) || raw.mtu < 68 || raw.mtu > 65535) {
      throw invalidConfig("mtu", `must be an integer between 68 and 65535, got ${JSON.stringify(raw.mtu)}`);
    }
    mtu = raw.mtu;
  }
  let delegate: Record<string, unknown> | undefined;
  if (raw.delegate !== undefined && raw.delegate !== null) {
    if (!isObject(raw.delegate)) throw invalidConfig("delegate", "must be an object (e.g. {\"hairpinMode\": true})");
    delegate = raw.delegate;
    if (delegate.type !== undefined && typeof delegate.type !== "string") throw invalidConfig("delegate.type", "must be a string (a plugin name in CNI_PATH)");
    if ("name" in delegate) throw invalidConfig("delegate.name", "must not be set: weft-cni sets it to the network name");
    if ("ipam" in delegate) throw invalidConfig("delegate.ipam", "must not be set: put IPAM settings in the top-level \"ipam\" key");
  } else if (raw.ipMasq === true) {
    throw invalidConfig(
      "ipMasq",
      "is true, but weft-cni does not masquerade in direct mode: masquerading is the agent's job (weftd --ip-masq); " +
        "remove ipMasq, or use \"delegate\" mode to have the bridge plugin do it",
    );
  }
  let dns: CniDns | undefined;
  if (raw.dns !== undefined && raw.dns !== null) {
    if (!isObject(raw.dns)) throw invalidConfig("dns", "must be an object");
    dns = raw.dns as CniDns;
  }
  const validAttachments = parseAttachments(raw);
  const isDefaultGateway = optBool(raw, "isDefaultGateway") ?? false;
  const hairpinMode = optBool(raw, "hairpinMode") ?? false;
  return {
    cniVersion,
    name,
    type,
    subnetFile,
    dataDir,
    bridge,
    isDefaultGateway,
    hairpinMode,
    ...(mtu !== undefined ? { mtu } : {}),
    ipam: parseIpam(raw.ipam, delegate !== undefined),
    ...(delegate ? { delegate } : {}),
    ...(dns ? { dns } : {}),
    ...(raw.prevResult !== undefined ? { prevResult: raw.prevResult } : {}),
    ...(validAttachments ? { validAttachments } : {}),
    raw,
  };
}

export type CniCommand = "ADD" | "DEL" | "CHECK" | "VERSION" | "STATUS" | "GC";
const COMMANDS: readonly CniCommand[] = ["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"];

export interface CniEnv {
  readonly command: CniCommand;
  readonly containerID: string;
  readonly netns: string;
  readonly ifname: string;
  readonly args: string;
  /** CNI_PATH split on ':' (empty entries dropped). */
  readonly path: readonly string[];
}

function envError(message: string): CniError {
  return new CniError(CniErrorCode.INVALID_ENVIRONMENT, message);
}

/**
 * Reads the CNI_* variables and checks what each command needs (code 4 names the variable). CNI_NETNS may be
 * empty for DEL (the namespace may be gone); ADD and CHECK need it.
 */
export function parseEnv(env: Readonly<Record<string, string | undefined>>): CniEnv {
  const command = env.CNI_COMMAND ?? "";
  if (!(COMMANDS as readonly string[]).includes(command)) {
    throw envError(
      command === ""
        ? "CNI_COMMAND is not set: weft-cni is a CNI plugin run by the container runtime (to install it, run: weft-cni install --help)"
        : `CNI_COMMAND=${command} is not a CNI command (one of ${COMMANDS.join(", ")})`,
    );
  }
  const c = command as CniCommand;
  const containerID = env.CNI_CONTAINERID ?? "";
  const netns = env.CNI_NETNS ?? "";
  const ifname = env.CNI_IFNAME ?? "";
  if (c === "ADD" || c === "DEL" || c === "CHECK") {
    if (containerID === "") throw envError(`CNI_CONTAINERID is required for ${c}`);
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(containerID)) {
      throw envError(`CNI_CONTAINERID=${containerID} has invalid characters (letters, digits, '_', '.', '-'; starting with a letter or digit)`);
    }
    const p = ifnameProblem(ifname);
    if (p) throw envError(`CNI_IFNAME ${p}`);
    if (c !== "DEL" && netns === "") throw envError(`CNI_NETNS is required for ${c}: the path of the container's network namespace`);
  }
  return {
    command: c,
    containerID,
    netns,
    ifname,
    args: env.CNI_ARGS ?? "",
    path: (env.CNI_PATH ?? "").split(":").filter((p) => p !== ""),
  };
}
