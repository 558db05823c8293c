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
import { CniError, CniErrorCode, invalidConfig, showText, showValue } from "./errors.js";
import type { Attachment } from "./ipam/allocator.js";
import { DEFAULT_IPAM_DATA_DIR } from "./ipam/store.js";
import { checkVersion, type CniDns, type CniRoute, type CniVersion } from "./result.js";
import { DEFAULT_SUBNET_FILE } from "./subnet-file.js";
import { foldKey, getKeyInsensitive, IPAddress, IPNet, isWeftError, parseConfigJson } from "@weft/core";
import type { RangeInput } from "./ipam/range.js";
import { pseudoFilesystemPrefix } from "@weft/kernel";

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

/**
 * Interface names weft-cni accepts (CNI_IFNAME, "bridge"): the kernel's rules (1-15 bytes, not . or .., no '/',
 * ':' or whitespace) narrowed to names `ip` reads as names and every tool prints unchanged: ASCII letters, digits,
 * '_', '.' and '-', not starting with '-' (an option to `ip`) or '.'. That also refuses '%' (a kernel name
 * template: "eth%d" becomes eth0, eth1, ...), '@' (how `ip link` shows a veth's peer), shell metacharacters and
 * non-ASCII. Returns the problem (the rest of a message that starts with the field's name), or undefined.
 */
export function ifnameProblem(name: string): string | undefined {
  if (name === "") return "is empty";
  const shown = `"${showText(name, 40)}"`;
  if (Buffer.byteLength(name) > 15) return `${shown} is longer than 15 bytes`;
  if (name === "." || name === "..") return `${shown} is not a valid interface name`;
  if (/[/:\s]/.test(name)) return `${shown} contains '/', ':' or whitespace`;
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(name)) {
    return `${shown} contains characters other than ASCII letters, digits, '_', '.' and '-', or starts with '-' or '.'; use a name such as eth0 or net1`;
  }
  return undefined;
}

/** The CNI spec's rule for a network name (it is also a directory name in the IPAM data dir). */
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
/** A container id or network name becomes a file or directory name: at most NAME_MAX bytes. */
const NAME_MAX = 255;

/** A data directory value: absolute, bounded, not under /proc or /sys (Node 20's mkdir spins there; the rest is checked when it is created). */
function dataDirProblem(dir: string): string | undefined {
  if (!dir.startsWith("/")) return `must be an absolute path, got "${showText(dir)}"`;
  if (dir.includes("\0")) return `must not contain a NUL character, got "${showText(dir)}"`;
  if (Buffer.byteLength(dir) > 4095) return `is longer than 4095 bytes (PATH_MAX), got "${showText(dir)}"`;
  const top = pseudoFilesystemPrefix(dir);
  if (top !== undefined) {
    return `is "${showText(dir)}", on ${top}, a kernel pseudo filesystem; choose a directory on a real filesystem (the default is under /var/lib/cni)`;
  }
  return undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The object with each of `known` keys looked up as Go's encoding/json does (Flannel's plugin, libcni and the
 * reference plugins are Go): case-insensitively, the last match in the text winning (getKeyInsensitive over an
 * object from parseConfigJson, which keeps text order). Other keys are kept as they are.
 */
function goKeys(o: Record<string, unknown>, known: readonly string[]): Record<string, unknown> {
  const folded = new Set(known.map(foldKey));
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o)) if (!folded.has(foldKey(k))) Object.defineProperty(out, k, { value: o[k], enumerable: true, writable: true, configurable: true });
  for (const k of known) {
    const hit = getKeyInsensitive(o, k);
    if (hit !== undefined) out[k] = hit.value;
  }
  return out;
}

const TOP_KEYS = [
  "cniVersion", "name", "type", "subnetFile", "dataDir", "bridge", "isDefaultGateway", "hairpinMode", "mtu", "ipMasq",
  "delegate", "dns", "ipam", "prevResult", "runtimeConfig", "args", "cni.dev/valid-attachments", "cni.dev/attachments",
] as const;
const IPAM_KEYS = ["type", "ranges", "subnet", "rangeStart", "rangeEnd", "gateway", "routes", "dataDir"] as const;

function optString(o: Record<string, unknown>, key: string, path = key): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw invalidConfig(path, `must be a string, got ${showValue(v)}`);
  return v;
}

function optBool(o: Record<string, unknown>, key: string): boolean | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw invalidConfig(key, `must be true or false, got ${showValue(v)}`);
  return v;
}

function parseRoutes(v: unknown, path: string): CniRoute[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalidConfig(path, "must be an array of {dst, gw?}");
  return v.map((r, i) => {
    const p = `${path}[${i}]`;
    if (!isObject(r)) throw invalidConfig(p, "must be an object {dst, gw?}");
    r = goKeys(r, ["dst", "gw"]);
    const dst = optString(r, "dst", `${p}.dst`);
    if (!dst || !IPNet.tryParse(dst)) throw invalidConfig(`${p}.dst`, `must be a CIDR, got ${showValue(r.dst)}`);
    const route: CniRoute = { dst: IPNet.parse(dst).toString() };
    const gw = optString(r, "gw", `${p}.gw`);
    if (gw !== undefined) {
      const ip = IPAddress.tryParse(gw);
      if (!ip) throw invalidConfig(`${p}.gw`, `must be an IP address, got ${showValue(gw)}`);
      if (ip.family !== IPNet.parse(dst).family) throw invalidConfig(`${p}.gw`, `${ip} is not of the same IP family as dst ${IPNet.parse(dst)}`);
      route.gw = ip.toString();
    }
    return route;
  });
}

function parseRangeInput(given: unknown, path: string): RangeInput {
  if (!isObject(given)) throw invalidConfig(path, "must be an object {subnet, rangeStart?, rangeEnd?, gateway?}");
  const v = goKeys(given, ["subnet", "rangeStart", "rangeEnd", "gateway"]);
  const subnet = optString(v, "subnet", `${path}.subnet`);
  if (!subnet) throw invalidConfig(`${path}.subnet`, "is required");
  const out: { -readonly [K in keyof RangeInput]: RangeInput[K] } = { subnet };
  for (const k of ["rangeStart", "rangeEnd", "gateway"] as const) {
    const s = optString(v, k, `${path}.${k}`);
    if (s !== undefined) out[k] = s;
  }
  return out;
}

function parseIpam(given: unknown, delegateMode: boolean): IpamOverrides {
  if (given === undefined || given === null) return { routes: [], dataDir: DEFAULT_IPAM_DATA_DIR, raw: {} };
  if (!isObject(given)) throw invalidConfig("ipam", "must be an object");
  const v = goKeys(given, IPAM_KEYS);
  const type = optString(v, "type", "ipam.type");
  if (!delegateMode && type !== undefined && type !== "host-local") {
    throw invalidConfig(
      "ipam.type",
      `is "${showText(type)}": without "delegate" weft-cni allocates with its built-in host-local IPAM only; remove ipam.type, ` +
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
  const dirProblem = dataDirProblem(dataDir);
  if (dirProblem) throw invalidConfig("ipam.dataDir", dirProblem);
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
    if (isObject(a)) a = goKeys(a, ["containerID", "ifname"]);
    if (!isObject(a) || typeof a.containerID !== "string" || typeof a.ifname !== "string") {
      throw invalidConfig(`${key}[${i}]`, "must be an object with string containerID and ifname");
    }
    return { containerID: a.containerID, ifname: a.ifname };
  });
}

/** How deep a network config may nest: real ones are a few levels; JSON.stringify (delegate mode, results) recurses. */
export const MAX_CONFIG_DEPTH = 64;

/** The top-level key under which `v` nests deeper than `max` levels (measured without recursion), if any. */
function tooDeep(v: Record<string, unknown>, max: number): string | undefined {
  for (const [key, value] of Object.entries(v)) {
    const stack: [unknown, number][] = [[value, 2]];
    while (stack.length > 0) {
      const [x, depth] = stack.pop()!;
      if (typeof x !== "object" || x === null) continue;
      if (depth > max) return key;
      for (const child of Array.isArray(x) ? x : Object.values(x)) if (typeof child === "object" && child !== null) stack.push([child, depth + 1]);
    }
  }
  return undefined;
}

/** Decodes stdin (code 6 when it is not JSON) and returns the raw object. */
export function decodeConfig(stdin: string): Record<string, unknown> {
  let raw: unknown;
  try {
    // As Go reads it (Flannel's plugin, libcni): the last of duplicate keys wins, 1e400 is out of range, and the
    // nesting is bounded (MAX_CONFIG_DEPTH) and read without recursion.
    raw = parseConfigJson(stdin, "stdin", MAX_CONFIG_DEPTH + 1);
  } catch (err) {
    if (!isWeftError(err)) throw err;
    if (!/not valid JSON/.test(err.message)) throw new CniError(CniErrorCode.INVALID_NETWORK_CONFIG, `invalid network config: ${err.message}`, undefined, { cause: err });
    throw new CniError(
      CniErrorCode.DECODING_FAILURE,
      `the network configuration on stdin is not valid JSON (${showText(err.message.replace(/^stdin: /, ""), 160)}); check the conflist in the CNI conf dir`,
    );
  }
  if (!isObject(raw)) throw new CniError(CniErrorCode.DECODING_FAILURE, "the network configuration on stdin must be a JSON object");
  const deep = tooDeep(raw, MAX_CONFIG_DEPTH);
  if (deep !== undefined) {
    throw invalidConfig(showText(deep, 40), `nests deeper than ${MAX_CONFIG_DEPTH} levels; a CNI network config is a few levels deep`);
  }
  return raw;
}

/** Validates a decoded configuration; every error names the field (code 7) or the version (code 1). */
export function parseNetConf(given: Record<string, unknown>): WeftNetConf {
  const raw = goKeys(given, TOP_KEYS);
  const cniVersion = checkVersion(raw.cniVersion);
  const name = optString(raw, "name");
  if (!name) throw invalidConfig("name", "is required: the network name (e.g. \"cbr0\")");
  if (!NETWORK_NAME.test(name) || name.length > NAME_MAX) {
    throw invalidConfig(
      "name",
      `"${showText(name)}" is not a network name: use at most ${NAME_MAX} ASCII letters, digits, '_', '.' and '-', ` +
        `starting with a letter or digit (the CNI spec's rule), e.g. "cbr0"`,
    );
  }
  const type = optString(raw, "type") ?? "weft";
  const subnetFile = optString(raw, "subnetFile") ?? DEFAULT_SUBNET_FILE;
  const dataDir = optString(raw, "dataDir") ?? DEFAULT_DATA_DIR;
  const dirProblem = dataDirProblem(dataDir);
  if (dirProblem) throw invalidConfig("dataDir", dirProblem);
  const bridge = optString(raw, "bridge") ?? DEFAULT_BRIDGE;
  const bridgeProblem = ifnameProblem(bridge);
  if (bridgeProblem) throw invalidConfig("bridge", bridgeProblem);
  let mtu: number | undefined;
  if (raw.mtu !== undefined && raw.mtu !== null) {
    if (typeof raw.mtu !== "number" || !Number.isInteger(raw.mtu) || raw.mtu < 68 || raw.mtu > 65535) {
      throw invalidConfig("mtu", `must be an integer between 68 and 65535, got ${showValue(raw.mtu)}`);
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

/** The shim's limit on the CNI_* environment it forwards ("NAME=value\0" per variable). */
export const MAX_CNI_ENV_BYTES = 64 * 1024;

function envError(message: string): CniError {
  return new CniError(CniErrorCode.INVALID_ENVIRONMENT, message);
}

/**
 * Reads the CNI_* variables and checks what each command needs (code 4 names the variable). CNI_NETNS may be
 * empty for DEL (the namespace may be gone); ADD and CHECK need it.
 */
export function parseEnv(env: Readonly<Record<string, string | undefined>>): CniEnv {
  // The shim refuses a CNI_* environment over its limit before anything else: so does the Node plugin.
  let envBytes = 0;
  for (const [k, v] of Object.entries(env)) if (v !== undefined && /^CNI_[A-Z0-9_]+$/.test(k)) envBytes += Buffer.byteLength(k) + Buffer.byteLength(v) + 2;
  if (envBytes > MAX_CNI_ENV_BYTES) throw envError(`the CNI_* environment is larger than the 64 KiB limit of weft (${envBytes} bytes)`);
  const command = env.CNI_COMMAND ?? "";
  if (!(COMMANDS as readonly string[]).includes(command)) {
    throw envError(
      command === ""
        ? "CNI_COMMAND is not set: weft-cni is a CNI plugin run by the container runtime (to install it, run: weft-cni install --help)"
        : `CNI_COMMAND=${showText(command)} is not a CNI command (one of ${COMMANDS.join(", ")})`,
    );
  }
  const c = command as CniCommand;
  const containerID = env.CNI_CONTAINERID ?? "";
  const netns = env.CNI_NETNS ?? "";
  const ifname = env.CNI_IFNAME ?? "";
  if (c === "ADD" || c === "DEL" || c === "CHECK") {
    if (containerID === "") throw envError(`CNI_CONTAINERID is required for ${c}`);
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(containerID)) {
      throw envError(`CNI_CONTAINERID=${showText(containerID)} has invalid characters (letters, digits, '_', '.', '-'; starting with a letter or digit)`);
    }
    if (containerID.length > NAME_MAX) throw envError(`CNI_CONTAINERID=${showText(containerID)} is longer than ${NAME_MAX} characters`);
    const p = ifnameProblem(ifname);
    if (p) throw envError(`CNI_IFNAME ${p}`);
    if (c !== "DEL" && netns === "") throw envError(`CNI_NETNS is required for ${c}: the path of the container's network namespace`);
    if (netns !== "") {
      const shown = `CNI_NETNS "${showText(netns)}"`;
      if (!netns.startsWith("/")) throw envError(`${shown} must be an absolute path (of the container's network namespace)`);
      if (netns.includes("\0") || /[\u0000-\u001f\u007f]/.test(netns)) throw envError(`${shown} contains control characters; it must be the path of the container's network namespace`);
      if (Buffer.byteLength(netns) > 4095) throw envError(`${shown} is longer than 4095 bytes (PATH_MAX)`);
    }
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
