/**
 * weftd's command line. Flag names follow flanneld's so operators can switch (reference/flannel.md §6.4), with
 * Weft's defaults; every flag can also come from `WEFTD_<FLAG_NAME>` (`--etcd-endpoints` ← WEFTD_ETCD_ENDPOINTS),
 * a command-line value winning. Accepted forms: `--name value`, `--name=value`, and `--bool` / `--bool=false`;
 * Go-style single-dash `-name` works too, as flanneld's users type it.
 */
import { IPAddress, WeftError, describeValue } from "@weft/core";
import { checkWritableFilePath, ensureDirectory } from "@weft/kernel";
import { redactEndpoint } from "@weft/subnet-etcd";

type Kind = "string" | "bool" | "int" | "list" | "commaList";

interface FlagDef {
  readonly kind: Kind;
  readonly default?: unknown;
  readonly help: string;
  /** Never echoed in errors or logs. */
  readonly secret?: boolean;
  readonly min?: number;
  readonly max?: number;
  /** Accepted for compatibility with flanneld; the text says what Weft does instead (logged once at start). */
  readonly compat?: string;
  /** Only from the command line, never from WEFTD_<NAME>: loading code must not be reachable from a ConfigMap. */
  readonly cliOnly?: boolean;
}

export const FLAG_DEFS = {
  "etcd-endpoints": { kind: "commaList", default: ["http://127.0.0.1:2379"], help: "etcd endpoints, comma separated" },
  "etcd-prefix": { kind: "string", default: "/weft.io/network", help: "etcd key prefix (Flannel's is /coreos.com/network)" },
  "etcd-certfile": { kind: "string", default: "", help: "TLS client certificate for etcd" },
  "etcd-keyfile": { kind: "string", default: "", help: "TLS client key for etcd" },
  "etcd-cafile": { kind: "string", default: "", help: "CA bundle for etcd's server certificate" },
  "etcd-username": { kind: "string", default: "", help: "etcd username" },
  "etcd-password": { kind: "string", default: "", help: "etcd password (prefer WEFTD_ETCD_PASSWORD)", secret: true },
  "etcd-lease-ttl": { kind: "int", default: 86400, min: 5, help: "seconds an etcd subnet lease lives without renewal" },
  "kube-subnet-mgr": { kind: "bool", default: false, help: "use the Kubernetes API (node podCIDR and annotations) instead of etcd" },
  "kubeconfig-file": { kind: "string", default: "", help: "kubeconfig to use outside a pod" },
  "kube-api-url": { kind: "string", default: "", help: "Kubernetes API server URL, outside a pod" },
  "kube-annotation-prefix": { kind: "string", default: "weft.io", help: "node annotation prefix (Flannel's is flannel.alpha.coreos.com)" },
  "net-config-path": { kind: "string", default: "/etc/weft/net-conf.json", help: "network config file (kube mode)" },
  iface: { kind: "list", default: [], help: "interface (name or IP) to use for the underlay; repeatable, first match wins" },
  "iface-regex": { kind: "list", default: [], help: "regex matched against interface IPs, then names; repeatable" },
  "iface-can-reach": { kind: "string", default: "", help: "use the interface that routes to this IP" },
  "public-ip": { kind: "string", default: "", help: "IPv4 address to advertise (must be on an interface)" },
  "public-ipv6": { kind: "string", default: "", help: "IPv6 address to advertise (must be on an interface)" },
  "ip-masq": { kind: "bool", default: false, help: "masquerade traffic leaving the pod network" },
  "ip-masq-fully-random-disable": { kind: "bool", default: false, help: "do not use --random-fully for masquerade" },
  "iptables-forward-rules": { kind: "bool", default: true, help: "accept forwarded pod-network traffic in the filter table" },
  "subnet-file": { kind: "string", default: "/run/weft/subnet.env", help: "where to write subnet.env" },
  "cni-socket": { kind: "string", default: "", help: "unix socket (0600, in a root-owned directory) where weftd serves the weft CNI shim; default: cni.sock next to --subnet-file (/run/weft/cni.sock); \"off\": no server (the shim runs the Node plugin)" },
  "subnet-lease-renew-margin": { kind: "int", default: 60, min: 1, max: 1439, help: "minutes before expiry to renew the etcd lease" },
  "healthz-ip": { kind: "string", default: "0.0.0.0", help: "address for /healthz, /readyz and /metrics" },
  "healthz-port": { kind: "int", default: 0, min: 0, max: 65535, help: "port for /healthz, /readyz and /metrics (0 = off)" },
  "set-node-network-unavailable": { kind: "bool", default: true, help: "kube: set NetworkUnavailable=False once up" },
  "state-dir": { kind: "string", default: "/var/lib/weft", help: "state kept across restarts (keys, VTEP MACs)" },
  "resync-interval": { kind: "int", default: 10, min: 1, max: 3600, help: "seconds between full reconciles of kernel state and rules" },
  "backend-module": { kind: "list", default: [], cliOnly: true, help: "third-party backend module (package name or path); repeatable; command line only (not WEFTD_BACKEND_MODULE)" },
  "log-level": { kind: "string", default: "info", help: "debug, info, warn or error" },
  "ip-blackhole-route": { kind: "bool", default: false, help: "add a blackhole route for this node's pod subnet(s), so traffic to unassigned pod addresses is dropped here" },
  // flanneld flags that Weft covers differently: accepted so a Flannel DaemonSet's arguments carry over.
  "iptables-resync": { kind: "int", default: 5, min: 1, help: "flanneld compatibility; Weft re-checks rules every --resync-interval", compat: "--iptables-resync is accepted for flanneld compatibility; Weft re-checks traffic rules every --resync-interval" },
  v: { kind: "int", default: 0, min: 0, help: "flanneld compatibility (klog verbosity); 4 or more means --log-level debug", compat: "-v is accepted for flanneld compatibility; use --log-level" },
  teardown: { kind: "bool", default: false, help: "remove every device, route and rule Weft owns on this node, then exit" },
  version: { kind: "bool", default: false, help: "print the version and exit" },
  help: { kind: "bool", default: false, help: "print this help and exit" },
} as const satisfies Record<string, FlagDef>;

export type FlagName = keyof typeof FLAG_DEFS;
type ValueOf<K extends Kind> = K extends "bool" ? boolean : K extends "int" ? number : K extends "list" | "commaList" ? string[] : string;
export type Flags = { -readonly [N in FlagName]: ValueOf<(typeof FLAG_DEFS)[N]["kind"]> };

const LOG_LEVELS = ["debug", "info", "warn", "error"];

export function envName(flag: string): string {
  return "WEFTD_" + flag.toUpperCase().replace(/-/g, "_");
}

function bad(msg: string): never {
  throw new WeftError("CONFIG_INVALID", msg);
}

function convert(name: FlagName, raw: string, origin: string): unknown {
  const def: FlagDef = FLAG_DEFS[name];
  const shown = def.secret ? "(hidden)" : describeValue(raw);
  switch (def.kind) {
    case "bool":
      if (/^(true|1|yes)$/i.test(raw)) return true;
      if (/^(false|0|no)$/i.test(raw)) return false;
      return bad(`${origin} ${shown} is not a boolean: use true or false`);
    case "int": {
      if (!/^-?\d+$/.test(raw.trim())) return bad(`${origin} ${shown} is not an integer`);
      const n = Number(raw);
      if (!Number.isSafeInteger(n)) return bad(`${origin} ${shown} is out of range: must be between ${def.min ?? "-inf"} and ${def.max ?? "inf"}`);
      if ((def.min !== undefined && n < def.min) || (def.max !== undefined && n > def.max)) {
        return bad(`${origin} ${n} is out of range: must be between ${def.min ?? "-inf"} and ${def.max ?? "inf"}`);
      }
      return n;
    }
    case "commaList":
      return raw
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
    default:
      return raw;
  }
}

/** Parses argv (without node and script) and the environment. Throws WeftError CONFIG_INVALID with one line. */
export function parseFlags(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = {}): Flags {
  return parseFlagsWithNotes(argv, env).flags;
}

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

/** parseFlags, plus notes for the log (flanneld-compatibility flags that were given). */
export function parseFlagsWithNotes(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = {}): { flags: Flags; notes: string[] } {
  const notes: string[] = [];
  const out: Record<string, unknown> = {};
  const fromCli = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--?([a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    if (!m) bad(`unexpected argument ${describeValue(arg)}: weftd takes only flags; see --help`);
    const name = m[1]! as FlagName;
    if (!(name in FLAG_DEFS)) {
      // Suggestions only for names of a plausible length: the edit distance is quadratic.
      const close = name.length > 64 ? [] : Object.keys(FLAG_DEFS)
        .map((f) => ({ f, d: distance(name, f) }))
        .filter((x) => x.d <= Math.max(2, Math.floor(name.length / 4)))
        .sort((a, b) => a.d - b.d);
      bad(`unknown flag --${name.length > 64 ? `${name.slice(0, 64)}… (${name.length} chars)` : name}${close.length ? `: did you mean --${close[0]!.f}?` : ": see --help"}`);
    }
    const def: FlagDef = FLAG_DEFS[name];
    let raw = m[2];
    if (raw === undefined) {
      if (def.kind === "bool") raw = "true";
      else {
        raw = argv[++i];
        if (raw === undefined) bad(`flag --${name} needs a value`);
        // `-v --etcd-password=x`: the next argument is another flag, not this one's value. Say so without
        // echoing it (it may carry a secret).
        const next = /^--?([a-z0-9-]+)(?:=|$)/s.exec(raw!);
        if (next && next[1]! in FLAG_DEFS) bad(`flag --${name} needs a value, but the next argument is the flag --${next[1]}: write --${name}=<value>`);
      }
    }
    const v = convert(name, raw!, `--${name}`);
    if (def.kind === "list") {
      out[name] = [...((fromCli.has(name) ? out[name] : []) as string[]), v as string];
    } else out[name] = v;
    fromCli.add(name);
  }
  for (const name of Object.keys(FLAG_DEFS) as FlagName[]) {
    if (fromCli.has(name)) continue;
    const e = env[envName(name)];
    const def: FlagDef = FLAG_DEFS[name];
    if (e !== undefined && e !== "" && def.cliOnly) {
      // An environment can come from a ConfigMap (envFrom): code is loaded only from what is on the command line.
      notes.push(`${envName(name)} is ignored: --${name} is taken only from the command line (it loads code)`);
    } else if (e !== undefined && e !== "") {
      // A repeatable flag from the environment takes a comma-separated list.
      out[name] = def.kind === "list" ? e.split(",").map((s) => s.trim()).filter(Boolean) : convert(name, e, envName(name));
      continue;
    }
    out[name] = structuredClone(FLAG_DEFS[name].default);
  }
  const flags = out as Flags;
  for (const name of fromCli) {
    const compat = (FLAG_DEFS as Record<string, FlagDef>)[name]?.compat;
    if (compat) notes.push(compat);
  }
  if (flags.v >= 4 && !fromCli.has("log-level") && !env[envName("log-level")]) flags["log-level"] = "debug";
  if (!LOG_LEVELS.includes(flags["log-level"])) bad(`--log-level ${describeValue(flags["log-level"])} is not one of ${LOG_LEVELS.join(", ")}`);
  // An address, never a host name: a name would be resolved (and fail with a resolver error) only when the
  // health server starts, after the node was changed.
  const healthzIp = flags["healthz-ip"];
  if (IPAddress.tryParse(healthzIp) === undefined) {
    bad(`--healthz-ip ${describeValue(healthzIp)} is not an IP address: use an address of this node such as 127.0.0.1, or 0.0.0.0 / :: for all`);
  }
  for (const [flag, family] of [["public-ip", "v4"], ["public-ipv6", "v6"]] as const) {
    const v = flags[flag];
    if (v === "") continue;
    const ip = IPAddress.tryParse(v);
    if (ip === undefined || ip.family !== family) {
      bad(`--${flag} ${describeValue(v)} is not an ${family === "v4" ? "IPv4" : "IPv6"} address: give the address to advertise, held by an interface of this node`);
    }
  }
  const cniSocket = flags["cni-socket"];
  if (cniSocket !== "" && cniSocket !== "off" && (!cniSocket.startsWith("/") || Buffer.byteLength(cniSocket) > 107)) {
    bad(`--cni-socket ${describeValue(cniSocket)} must be an absolute path of at most 107 bytes (a unix socket's limit), or "off"`);
  }
  if ((flags["etcd-certfile"] === "") !== (flags["etcd-keyfile"] === "")) {
    bad("--etcd-certfile and --etcd-keyfile must be given together for TLS client authentication");
  }
  return { flags, notes };
}

/**
 * Checks the paths weftd writes before anything on the node or in the store changes: --state-dir is made a
 * directory (components created one at a time), --subnet-file must be a writable file path. A
 * pseudo filesystem (/proc, /sys), a component that is a file or a read-only place is refused with a
 * ConfigError naming the flag, the value and the fix (Node's recursive mkdir would spin forever on /proc).
 */
export function checkFlagPaths(flags: Flags): void {
  // Checks that create nothing first, so a refusal leaves no new directory behind.
  checkWritableFilePath(flags["subnet-file"], "--subnet-file");
  ensureDirectory(flags["state-dir"], "--state-dir", 0o755);
}

/**
 * The command line that gives `flags` back through parseFlags: `--name=value` for every flag that differs from
 * its default (a repeatable flag once per value, a comma list joined). The formatter of the flags' round trip.
 */
export function flagsToArgv(flags: Flags): string[] {
  const argv: string[] = [];
  for (const [name, def] of Object.entries(FLAG_DEFS) as [FlagName, FlagDef][]) {
    const v = flags[name] as unknown;
    // --log-level is always written with -v 4 and up, which otherwise implies debug.
    if (JSON.stringify(v) === JSON.stringify(def.default) && !(name === "log-level" && flags.v >= 4)) continue;
    if (def.kind === "list") for (const item of v as string[]) argv.push(`--${name}=${item}`);
    else if (def.kind === "commaList") argv.push(`--${name}=${(v as string[]).join(",")}`);
    else argv.push(`--${name}=${String(v)}`);
  }
  return argv;
}

export function helpText(): string {
  const lines = ["Usage: weftd [flags]", "", "Every flag can also be set with WEFTD_<FLAG_NAME>; the command line wins.", ""];
  for (const [name, def] of Object.entries(FLAG_DEFS) as [string, FlagDef][]) {
    const d = def.default;
    const shown = def.secret || d === "" || (Array.isArray(d) && d.length === 0) ? "" : ` (default ${Array.isArray(d) ? d.join(",") : String(d)})`;
    lines.push(`  --${name}${def.kind === "bool" ? "" : " <value>"}`.padEnd(40) + def.help + shown);
  }
  return lines.join("\n");
}

/** Flags safe to log: secrets replaced, and credentials in URLs (`https://user:pass@host`) removed. */
export function redactedFlags(flags: Flags): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const clean = (v: unknown): unknown => (typeof v === "string" ? redactEndpoint(v) : Array.isArray(v) ? v.map(clean) : v);
  for (const [name, v] of Object.entries(flags)) out[name] = (FLAG_DEFS as Record<string, FlagDef>)[name]?.secret && v ? "(hidden)" : clean(v);
  return out;
}
