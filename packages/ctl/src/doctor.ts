/**
 * `weftctl doctor`: local checks of what Flannel-class networking needs on a node, each OK / WARN / FAIL with the
 * fix (the things operators trip over, reference/flannel.md §9: subnet.env missing, forwarding off, br_netfilter,
 * the CNI plugin not installed, stale routes, MTU), and the path a pod's ADD takes (docs/cni.md): the `weft` shim
 * and its fallback, weftd's CNI socket (mode, owner, directory) and whether weftd answers on it. Kernel state is
 * read only through the KernelPort (the caller passes LinuxKernel in production, FakeKernel in tests); files
 * through node:fs; the CNI socket through @weft/cni's client (requestCniSocket, node:http). Nothing is changed.
 *
 * `runDoctor` gathers, `renderDoctor` is pure.
 */
import { constants } from "node:fs";
import { access, lstat, readdir, readFile, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { DEFAULT_CNI_SOCKET, readShimFallback, requestCniSocket } from "@weft/cni";
import { errorMessage, parseSubnetEnv, type SubnetEnv, type Link, WEFT_LINK_PREFIX, WEFT_ROUTE_PROTOCOL } from "@weft/core";
import type { KernelPort } from "@weft/kernel";
import { escapeText } from "./escape.js";
import { fetchStatus, type StatusReport } from "./status.js";

export type CheckLevel = "ok" | "warn" | "fail";

export interface Check {
  readonly name: string;
  readonly level: CheckLevel;
  readonly message: string;
  /** What to do about a WARN or FAIL. */
  readonly fix?: string;
}

export interface DoctorOptions {
  readonly kernel: KernelPort;
  readonly subnetFile: string;
  readonly cniBinDir: string;
  readonly cniConfDir: string;
  readonly endpoint: string;
  /** The endpoint was given explicitly: weftd not answering there is a FAIL, not a WARN. */
  readonly endpointGiven: boolean;
  /** Reads weftd (default: fetchStatus over HTTP). */
  readonly readWeftd?: (endpoint: string) => Promise<StatusReport>;
  /**
   * weftd's CNI socket (`--cni-socket`). Default: the `agentSocket` of the weft plugin in the CNI config, else
   * /run/weft/cni.sock (what the shim uses).
   */
  readonly cniSocket?: string;
  /** Uids that may own the CNI socket and its directory (weftd's user). Default: root and the user running doctor. */
  readonly cniSocketOwners?: readonly number[];
  /** How long weftd has to answer on the CNI socket (default 3000 ms). */
  readonly cniSocketTimeoutMs?: number;
}

const ok = (name: string, message: string): Check => ({ name, level: "ok", message });
const warn = (name: string, message: string, fix: string): Check => ({ name, level: "warn", message, fix });
const fail = (name: string, message: string, fix: string): Check => ({ name, level: "fail", message, fix });

/** Runs every check; never throws (a check that cannot read what it needs reports that as its result). */
export async function runDoctor(o: DoctorOptions): Promise<Check[]> {
  const checks: Check[] = [];
  const guard = async (name: string, fn: () => Promise<Check | Check[]>) => {
    try {
      const r = await fn();
      checks.push(...(Array.isArray(r) ? r : [r]));
    } catch (err) {
      checks.push(fail(name, `could not check: ${errorMessage(err)}`, "run weftctl doctor as root on the node (or in the weft pod), with iproute2 installed"));
    }
  };

  // subnet.env first: which families to check forwarding for, and the pod MTU, come from it.
  let env: SubnetEnv | undefined;
  await guard("subnet.env", async () => {
    const r = await checkSubnetFile(o.subnetFile);
    env = r.env;
    return r.check;
  });
  const v4 = !env || env.subnet !== undefined || env.ipv6Subnet === undefined;
  const v6 = env?.ipv6Subnet !== undefined;

  if (v4) await guard("ip_forward", () => checkSysctlOne(o.kernel, "ip_forward", "net.ipv4.ip_forward", "pods on other nodes are unreachable through this node"));
  if (v6) await guard("ipv6 forwarding", () => checkSysctlOne(o.kernel, "ipv6 forwarding", "net.ipv6.conf.all.forwarding", "IPv6 pods on other nodes are unreachable through this node"));
  await guard("br_netfilter", () => checkBridgeNetfilter(o.kernel, { v4, v6 }));
  await guard("cni plugin", () => checkCniPlugin(o.cniBinDir, o.cniConfDir));
  let agentSocket: string | undefined;
  await guard("cni config", async () => {
    const r = await inspectCniConfig(o.cniConfDir, o.cniBinDir);
    agentSocket = r.agentSocket;
    return r.check;
  });
  const socket = o.cniSocket
    ? { path: o.cniSocket, from: "--cni-socket" }
    : agentSocket
      ? { path: agentSocket, from: "the CNI config's agentSocket" }
      : { path: DEFAULT_CNI_SOCKET, from: "the default; the CNI config sets no agentSocket" };
  await guard("cni socket", () => checkCniSocket(socket.path, socket.from, { owners: o.cniSocketOwners, timeoutMs: o.cniSocketTimeoutMs }));

  let report: StatusReport | undefined;
  await guard("weftd", async () => {
    const r = await checkWeftd(o, env);
    report = r.report;
    return r.checks;
  });

  let links: Link[] = [];
  await guard("devices", async () => {
    links = await o.kernel.listLinks();
    return checkDevices(links, report?.status.backendType);
  });
  await guard("routes", async () => checkRoutes(o.kernel, await o.kernel.listLinks(), { v4, v6 }));
  if (env?.mtu !== undefined) await guard("mtu", async () => checkMtu(env!.mtu!, links));
  return checks;
}

export async function checkSubnetFile(path: string): Promise<{ check: Check; env?: SubnetEnv }> {
  const name = "subnet.env";
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      return {
        check: fail(
          name,
          `${path} does not exist, so the CNI plugin cannot set up pods (they stay in ContainerCreating)`,
          "weftd writes it once it holds a lease: check the weftd pod on this node and its log (kube mode: does the Node have spec.podCIDR?), and that --subnet-file matches weftd's",
        ),
      };
    }
    return { check: fail(name, `${path} cannot be read: ${errorMessage(err)}`, "run weftctl doctor as root, or pass --subnet-file") };
  }
  let env: SubnetEnv;
  try {
    env = parseSubnetEnv(text);
  } catch (err) {
    return { check: fail(name, `${path} is not a valid subnet.env: ${errorMessage(err)}`, "it is weftd's file: stop whatever else writes it, then restart weftd so it rewrites it") };
  }
  if (!env.subnet && !env.ipv6Subnet) {
    return { check: fail(name, `${path} has neither FLANNEL_SUBNET nor FLANNEL_IPV6_SUBNET`, "restart weftd so it rewrites the file; check that --subnet-file is weftd's") };
  }
  if (env.mtu === undefined) return { env, check: warn(name, `${path} has no FLANNEL_MTU`, "restart weftd so it rewrites the file (CNI plugins then use the MTU weftd computed)") };
  const subnets = [env.subnet?.toString(), env.ipv6Subnet?.toString()].filter(Boolean).join(", ");
  return { env, check: ok(name, `${path}: subnet ${subnets}, MTU ${env.mtu}`) };
}

async function checkSysctlOne(kernel: KernelPort, name: string, key: string, why: string): Promise<Check> {
  const v = (await kernel.getSysctl(key)).trim();
  if (v === "1") return ok(name, `${key} = 1`);
  return fail(name, `${key} = ${v}: ${why}`, `sysctl -w ${key}=1 and persist it in /etc/sysctl.d (weftd sets it at start; something reset it since)`);
}

async function checkBridgeNetfilter(kernel: KernelPort, fam: { v4: boolean; v6: boolean }): Promise<Check[]> {
  const keys = [...(fam.v4 ? ["net.bridge.bridge-nf-call-iptables"] : []), ...(fam.v6 ? ["net.bridge.bridge-nf-call-ip6tables"] : [])];
  const out: Check[] = [];
  for (const key of keys) {
    let v: string | undefined;
    try {
      v = (await kernel.getSysctl(key)).trim();
    } catch (err) {
      if ((err as { code?: string }).code !== "KERNEL_NOT_FOUND") throw err;
    }
    if (v === undefined) {
      out.push(
        fail(
          "br_netfilter",
          `${key} does not exist: the br_netfilter module is not loaded, so Kubernetes Services do not work for pods on a bridge`,
          "modprobe br_netfilter, and load it at boot (echo br_netfilter > /etc/modules-load.d/br_netfilter.conf)",
        ),
      );
    } else if (v !== "1") {
      out.push(fail("br_netfilter", `${key} = ${v}: bridged pod traffic bypasses iptables, so Services do not work for pods on a bridge`, `sysctl -w ${key}=1 and persist it in /etc/sysctl.d`));
    } else out.push(ok("br_netfilter", `${key} = 1`));
  }
  return out;
}

export async function checkCniPlugin(binDir: string, confDir: string): Promise<Check> {
  const name = "cni plugin";
  const path = join(binDir, "weft");
  const install = `run weft-cni install --bin-dir ${binDir} --conf-dir ${confDir} (the weft DaemonSet's init container does this)`;
  let st;
  try {
    st = await stat(path);
  } catch {
    return fail(name, `${path} does not exist: the container runtime cannot run the weft CNI plugin`, install);
  }
  if (!st.isFile()) return fail(name, `${path} is not a file`, install);
  try {
    await access(path, constants.X_OK);
  } catch {
    return fail(name, `${path} is not executable`, `chmod +x ${path}, or ${install}`);
  }
  // The shim (docs/cni.md) forwards to weftd and runs the fallback, whose path `weft-cni install` wrote into it,
  // when weftd does not answer.
  const bytes = await readFile(path);
  const shim = readShimFallback(bytes);
  if (!shim) {
    if (bytes.subarray(0, 2).toString("latin1") === "#!") {
      return warn(name, `${path} is a script (the Node plugin of an older install?), not the weft shim: every pod ADD/DEL starts a Node process (~3x slower, ~42 MB each) and weftd's CNI server is not used`, install);
    }
    return fail(name, `${path} is not the weft shim (it has no fallback slot): another program is installed under the weft plugin's name`, install);
  }
  const fb = shim.fallback;
  if (fb === undefined) {
    return fail(name, `${path} is the weft shim with no fallback written into it: pods work through weftd, but while weftd is down or restarting every ADD/DEL fails with CNI error 11`, install);
  }
  const meanwhile = "pods work through weftd, but while weftd is down or restarting every ADD/DEL fails with CNI error 11";
  let fst;
  try {
    fst = await stat(fb);
  } catch {
    return fail(name, `${path}'s fallback ${fb} does not exist: ${meanwhile}`, install);
  }
  try {
    if (!fst.isFile()) throw new Error("not a file");
    await access(fb, constants.X_OK);
  } catch {
    return fail(name, `${path}'s fallback ${fb} is not an executable file: ${meanwhile}`, `chmod +x ${fb}, or ${install}`);
  }
  // An interpreter pinned with `weft-cni install --node` must exist (`#!/usr/bin/env node` looks node up on the
  // runtime's PATH, which doctor cannot see).
  const head = (await readFile(fb)).subarray(0, 256).toString("utf8");
  const interp = /^#!(\/\S+)/.exec(head)?.[1];
  if (interp && interp !== "/usr/bin/env") {
    try {
      await access(interp, constants.X_OK);
    } catch {
      return fail(name, `${path}'s fallback ${fb} runs ${interp}, which does not exist or is not executable: ${meanwhile}`, `install Node.js there, or ${install} --node <path of node>`);
    }
  }
  return ok(name, `${path} is the weft shim; its fallback ${fb} is installed`);
}

/** Does a CNI config (a .conflist's plugins, or a single .conf) use the `weft` plugin? */
function namesWeft(conf: unknown): boolean {
  if (typeof conf !== "object" || conf === null) return false;
  const c = conf as { type?: unknown; plugins?: unknown };
  if (c.type === "weft") return true;
  return Array.isArray(c.plugins) && c.plugins.some((p) => typeof p === "object" && p !== null && (p as { type?: unknown }).type === "weft");
}

/** The `agentSocket` of the weft plugin in a CNI config, if it sets one. */
function agentSocketOf(conf: unknown): string | undefined {
  const c = conf as { type?: unknown; agentSocket?: unknown; plugins?: unknown };
  const plugin = c.type === "weft" ? c : Array.isArray(c.plugins) ? (c.plugins as { type?: unknown; agentSocket?: unknown }[]).find((p) => typeof p === "object" && p !== null && p.type === "weft") : undefined;
  return typeof plugin?.agentSocket === "string" ? plugin.agentSocket : undefined;
}

export async function checkCniConfig(confDir: string, binDir: string): Promise<Check> {
  return (await inspectCniConfig(confDir, binDir)).check;
}

/** checkCniConfig, and the `agentSocket` the weft plugin's config names (the socket the shim connects to). */
async function inspectCniConfig(confDir: string, binDir: string): Promise<{ check: Check; agentSocket?: string }> {
  const name = "cni config";
  const install = `run weft-cni install --bin-dir ${binDir} --conf-dir ${confDir}`;
  let files: string[];
  try {
    // The runtime (libcni) loads the first of *.conf, *.conflist, *.json in lexical order.
    files = (await readdir(confDir)).filter((f) => /\.(conflist|conf|json)$/.test(f)).sort();
  } catch (err) {
    return { check: fail(name, `${confDir} cannot be read: ${errorMessage(err)}`, install) };
  }
  const parsed: { file: string; weft: boolean; valid: boolean; agentSocket?: string }[] = [];
  for (const file of files) {
    try {
      const conf: unknown = JSON.parse(await readFile(join(confDir, file), "utf8"));
      const weft = namesWeft(conf);
      const agentSocket = weft ? agentSocketOf(conf) : undefined;
      parsed.push({ file, weft, valid: true, ...(agentSocket !== undefined ? { agentSocket } : {}) });
    } catch {
      parsed.push({ file, weft: false, valid: false });
    }
  }
  const ours = parsed.find((p) => p.weft);
  if (!ours) return { check: fail(name, `no CNI config in ${confDir} names the weft plugin${files.length ? ` (found ${files.join(", ")})` : ""}`, install) };
  const agentSocket = ours.agentSocket !== undefined ? { agentSocket: ours.agentSocket } : {};
  const first = parsed[0]!;
  if (first !== ours) {
    return {
      ...agentSocket,
      check: warn(
        name,
        `${join(confDir, ours.file)} names weft, but the runtime uses ${first.file} first (lexical order)${first.valid ? "" : ", which is not valid JSON"}`,
        `remove ${join(confDir, first.file)} if it belongs to a network this node no longer runs, or give Weft's file a name that sorts first (--conf-name)`,
      ),
    };
  }
  return { ...agentSocket, check: ok(name, `${join(confDir, ours.file)} names the weft plugin`) };
}

const octal = (mode: number) => (mode & 0o777).toString(8).padStart(4, "0");

/**
 * weftd's CNI socket, as the shim sees it (docs/cni.md): "cni socket" checks the file (a socket, mode 0600, owned by
 * root or weftd's user, in a directory only that user can write), one check per problem; "cni server" checks that
 * weftd answers a CNI VERSION request on it, through the client the tests use (requestCniSocket). `from` says where
 * the path came from. A missing or refusing socket is a WARN: the shim then runs the Node fallback, and pods work.
 */
export async function checkCniSocket(path: string, from: string, opts: { owners?: readonly number[] | undefined; timeoutMs?: number | undefined } = {}): Promise<Check[]> {
  const name = "cni socket";
  const owners = opts.owners ?? [...new Set([0, process.getuid?.() ?? 0])];
  const ownerText = owners.map((u) => (u === 0 ? "root" : `uid ${u}`)).join(" or ");
  const fallback = "every pod ADD/DEL runs the Node fallback meanwhile (it works, ~3x slower, ~42 MB per pod)";
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    return [
      warn(
        name,
        `${path} (${from}) does not exist: weftd is not serving the weft shim; ${fallback}`,
        `start weftd, or look in its log for "not serving the weft CNI shim"; its --cni-socket must be the agentSocket of the CNI config (default ${DEFAULT_CNI_SOCKET})`,
      ),
    ];
  }
  if (!st.isSocket()) {
    return [fail(name, `${path} (${from}) exists but is not a socket: weftd will not serve there; ${fallback}`, `remove ${path} and restart weftd`)];
  }
  const checks: Check[] = [];
  const recreate = "restart weftd: it replaces the socket with its own, 0600";
  if (!owners.includes(st.uid)) {
    checks.push(fail(name, `${path} is owned by uid ${st.uid}, not ${ownerText}: that user can create and delete pod interfaces and addresses on this node`, `remove ${path} and find what made it; ${recreate}`));
  }
  if ((st.mode & 0o077) !== 0) {
    checks.push(fail(name, `${path} has mode ${octal(st.mode)}: users other than its owner can connect and create or delete pod interfaces`, `chmod 600 ${path}; ${recreate}`));
  }
  const dir = dirname(path);
  const dst = await stat(dir);
  if (!owners.includes(dst.uid) || (dst.mode & 0o022) !== 0) {
    const what = !owners.includes(dst.uid) ? `is owned by uid ${dst.uid}, not ${ownerText}` : `has mode ${octal(dst.mode)}, writable by group or others`;
    checks.push(
      fail(
        name,
        `the socket's directory ${dir} ${what}: someone else can replace the socket and answer the shim in weftd's place`,
        `chown root ${dir} && chmod go-w ${dir}, then restart weftd (it refuses to serve from such a directory)`,
      ),
    );
  }
  if (checks.length === 0) checks.push(ok(name, `${path} (${from}): a socket, mode ${octal(st.mode)}, owned by ${st.uid === 0 ? "root" : `uid ${st.uid}`}, in ${dir} (mode ${octal(dst.mode)})`));
  checks.push(await checkCniServer(path, opts.timeoutMs ?? 3000, fallback));
  return checks;
}

async function checkCniServer(path: string, timeoutMs: number, fallback: string): Promise<Check> {
  const name = "cni server";
  let answer;
  try {
    answer = await requestCniSocket(path, { env: { CNI_COMMAND: "VERSION" }, stdin: '{"cniVersion":"1.0.0"}' }, timeoutMs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ECONNREFUSED") {
      return warn(name, `nobody accepts on ${path} (left by a weftd that stopped or died): ${fallback}`, "start weftd (it replaces the stale socket); if it runs, see its log for \"not serving the weft CNI shim\"");
    }
    if (code === "ETIMEDOUT") {
      return fail(
        name,
        `${path} accepts connections but weftd does not answer within ${timeoutMs} ms: each pod ADD/DEL waits agentTimeoutSeconds (default 60 s) and fails with CNI error 11; the fallback runs only when nothing accepts`,
        "see weftd's log and weft_cni_request_duration_seconds in /metrics, then restart weftd (pods run the Node fallback while it is down)",
      );
    }
    if (code === "EACCES" || code === "EPERM") return fail(name, `cannot connect to ${path} (${code})`, "run weftctl doctor as root (only weftd's user may use the socket)");
    return fail(name, `connecting to ${path} failed: ${errorMessage(err)}`, "see weftd's log; restart weftd");
  }
  let versions: unknown;
  try {
    versions = (JSON.parse(answer.body) as { supportedVersions?: unknown }).supportedVersions;
  } catch {
    versions = undefined;
  }
  if (answer.status !== 200 || answer.exitCode !== 0 || !Array.isArray(versions)) {
    return fail(
      name,
      `${path} answers, but not as weftd's CNI server: CNI VERSION got HTTP ${answer.status}, exit code ${answer.exitCode ?? "none"}: ${JSON.stringify(answer.body.slice(0, 100))}`,
      `find what serves it (ss -xlp | grep ${path}), stop it, and restart weftd`,
    );
  }
  let counts = "";
  try {
    const c = JSON.parse((await requestCniSocket(path, "status", timeoutMs)).body) as { inFlight?: unknown; served?: unknown };
    if (typeof c.inFlight === "number" && typeof c.served === "number") counts = `; ${c.inFlight} in flight, ${c.served} served since it started`;
  } catch {
    // the counts are a courtesy: VERSION answered
  }
  return ok(name, `weftd answers on ${path} (CNI ${versions.join(", ")})${counts}`);
}

async function checkWeftd(o: DoctorOptions, env: SubnetEnv | undefined): Promise<{ checks: Check[]; report?: StatusReport }> {
  const name = "weftd";
  let report: StatusReport;
  try {
    report = await (o.readWeftd ?? fetchStatus)(o.endpoint);
  } catch (err) {
    const msg = errorMessage(err);
    if (o.endpointGiven) return { checks: [fail(name, msg, "check the weftd pod on this node (kubectl -n kube-weft logs <pod> -c weftd), and its --healthz-ip / --healthz-port")] };
    return { checks: [warn(name, `${msg} (skipped comparing subnet.env with weftd)`, "pass --endpoint http://<healthz-ip>:<healthz-port> to check weftd too")] };
  }
  const s = report.status;
  const checks: Check[] = [];
  if (report.readyz.ready) checks.push(ok(name, `ready at ${o.endpoint} (${s.backendType ?? "?"}, ${s.peers.length} peers)`));
  else checks.push(fail(name, `not ready at ${o.endpoint}: ${report.readyz.reason || s.reason}`, "see weftctl status and weftctl peers, and weftd's log"));
  // A subnet.env that disagrees with the running agent is stale: pods would get addresses outside the lease.
  if (env) {
    const stale: string[] = [];
    if (s.subnet && env.subnet && env.subnet.network.toString() !== s.subnet) stale.push(`FLANNEL_SUBNET ${env.subnet} is not in weftd's subnet ${s.subnet}`);
    if (s.ipv6Subnet && env.ipv6Subnet && env.ipv6Subnet.network.toString() !== s.ipv6Subnet) stale.push(`FLANNEL_IPV6_SUBNET ${env.ipv6Subnet} is not in weftd's subnet ${s.ipv6Subnet}`);
    if (s.mtu !== undefined && env.mtu !== undefined && env.mtu !== s.mtu) stale.push(`FLANNEL_MTU ${env.mtu} differs from weftd's MTU ${s.mtu}`);
    if (stale.length) {
      checks.push(fail("subnet.env vs weftd", `${o.subnetFile} is stale: ${stale.join("; ")}`, "check that --subnet-file is the file this weftd writes; restarting weftd rewrites it"));
    } else if (s.subnet || s.ipv6Subnet) checks.push(ok("subnet.env vs weftd", "subnet.env matches weftd's lease and MTU"));
  }
  return { checks, report };
}

export function checkDevices(links: readonly Link[], backendType: string | undefined): Check[] {
  const name = "devices";
  const ours = links.filter((l) => l.name.startsWith(WEFT_LINK_PREFIX));
  if (ours.length === 0) {
    if (backendType === "host-gw") return [ok(name, "no weft* devices (host-gw routes over the underlay and needs none)")];
    return [
      warn(
        name,
        `no ${WEFT_LINK_PREFIX}* devices on this node${backendType ? ` although the backend is ${backendType}` : ""}`,
        "weftd creates them once it holds a lease (host-gw needs none): check weftctl status and weftd's log",
      ),
    ];
  }
  const down = ours.filter((l) => !l.up);
  const desc = ours.map((l) => `${l.name} (${l.rawKind ?? l.kind}, mtu ${l.mtu}${l.up ? "" : ", down"})`).join(", ");
  if (down.length) return [fail(name, `${down.map((l) => l.name).join(", ")} ${down.length === 1 ? "is" : "are"} down: ${desc}`, `ip link set ${down[0]!.name} up (weftd repairs this at its next resync; if it does not, see its log)`)];
  return [ok(name, desc)];
}

async function checkRoutes(kernel: KernelPort, links: readonly Link[], fam: { v4: boolean; v6: boolean }): Promise<Check> {
  const name = "routes";
  const byName = new Map(links.map((l) => [l.name, l]));
  const families = [...(fam.v4 ? (["v4"] as const) : []), ...(fam.v6 ? (["v6"] as const) : [])];
  const routes = (await Promise.all(families.map((family) => kernel.listRoutes({ family, table: "all", protocol: WEFT_ROUTE_PROTOCOL })))).flat();
  const stale = routes.filter((r) => r.dev !== undefined && !byName.has(r.dev));
  if (stale.length) {
    const r = stale[0]!;
    return fail(
      name,
      `${stale.length} of ${routes.length} Weft routes (protocol ${WEFT_ROUTE_PROTOCOL}) point at devices that do not exist, e.g. ${r.dst} dev ${r.dev}`,
      `weftd prunes them at its next resync if it runs; otherwise ip route del ${r.dst} proto ${WEFT_ROUTE_PROTOCOL}${r.table !== undefined && r.table !== 254 ? ` table ${r.table}` : ""} (or weftd --teardown)`,
    );
  }
  const onDown = routes.filter((r) => r.dev !== undefined && !byName.get(r.dev)!.up);
  if (onDown.length) return warn(name, `${onDown.length} of ${routes.length} Weft routes are on devices that are down, e.g. ${onDown[0]!.dst} dev ${onDown[0]!.dev}`, `ip link set ${onDown[0]!.dev} up`);
  return ok(name, `${routes.length} Weft route${routes.length === 1 ? "" : "s"} (protocol ${WEFT_ROUTE_PROTOCOL}), all on existing devices`);
}

export function checkMtu(podMtu: number, links: readonly Link[]): Check {
  const name = "mtu";
  const ours = links.filter((l) => l.name.startsWith(WEFT_LINK_PREFIX));
  const small = ours.filter((l) => l.mtu < podMtu);
  if (small.length) {
    const l = small[0]!;
    return fail(
      name,
      `pod MTU ${podMtu} (subnet.env) is above ${l.name}'s MTU ${l.mtu}: large pod packets are dropped on the tunnel`,
      "restart weftd so it recomputes the MTU and rewrites subnet.env, then recreate the pods on this node (they keep the MTU they started with)",
    );
  }
  return ok(name, ours.length ? `pod MTU ${podMtu} fits every weft* device (${ours.map((l) => `${l.name} ${l.mtu}`).join(", ")})` : `pod MTU ${podMtu} (no weft* devices to compare with)`);
}

const LABEL: Record<CheckLevel, string> = { ok: "OK", warn: "WARN", fail: "FAIL" };

/**
 * The doctor's report: one line per check, the fix under each WARN/FAIL, then a summary line. Messages carry what
 * weftd, the CNI socket and the node said (reasons, device and file names): shown with control characters escaped.
 */
export function renderDoctor(checks: readonly Check[]): string {
  let width = 0;
  for (const c of checks) width = Math.max(width, escapeText(c.name).length);
  const lines: string[] = [];
  for (const c of checks) {
    lines.push(`${LABEL[c.level].padEnd(5)} ${escapeText(c.name).padEnd(width)}  ${escapeText(c.message)}`);
    if (c.fix && c.level !== "ok") lines.push(`${" ".repeat(6 + width)}  fix: ${escapeText(c.fix)}`);
  }
  const n = (l: CheckLevel) => checks.filter((c) => c.level === l).length;
  lines.push("", `${n("ok")} OK, ${n("warn")} WARN, ${n("fail")} FAIL`);
  return lines.join("\n") + "\n";
}

export function doctorFailed(checks: readonly Check[]): boolean {
  return checks.some((c) => c.level === "fail");
}
