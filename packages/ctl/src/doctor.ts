/**
 * `weftctl doctor`: local checks of what Flannel-class networking needs on a node, each OK / WARN / FAIL with the
 * fix (the things operators trip over, reference/flannel.md §9: subnet.env missing, forwarding off, br_netfilter,
 * the CNI plugin not installed, stale routes, MTU). Kernel state is read only through the KernelPort (the caller
 * passes LinuxKernel in production, FakeKernel in tests); files through node:fs. Nothing is changed.
 *
 * `runDoctor` gathers, `renderDoctor` is pure.
 */
import { constants } from "node:fs";
import { access, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { errorMessage, parseSubnetEnv, type SubnetEnv, type Link, WEFT_LINK_PREFIX, WEFT_ROUTE_PROTOCOL } from "@weft/core";
import type { KernelPort } from "@weft/kernel";
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
  await guard("cni config", () => checkCniConfig(o.cniConfDir, o.cniBinDir));

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
  return ok(name, `${path} is installed`);
}

/** Does a CNI config (a .conflist's plugins, or a single .conf) use the `weft` plugin? */
function namesWeft(conf: unknown): boolean {
  if (typeof conf !== "object" || conf === null) return false;
  const c = conf as { type?: unknown; plugins?: unknown };
  if (c.type === "weft") return true;
  return Array.isArray(c.plugins) && c.plugins.some((p) => typeof p === "object" && p !== null && (p as { type?: unknown }).type === "weft");
}

export async function checkCniConfig(confDir: string, binDir: string): Promise<Check> {
  const name = "cni config";
  const install = `run weft-cni install --bin-dir ${binDir} --conf-dir ${confDir}`;
  let files: string[];
  try {
    // The runtime (libcni) loads the first of *.conf, *.conflist, *.json in lexical order.
    files = (await readdir(confDir)).filter((f) => /\.(conflist|conf|json)$/.test(f)).sort();
  } catch (err) {
    return fail(name, `${confDir} cannot be read: ${errorMessage(err)}`, install);
  }
  const parsed: { file: string; weft: boolean; valid: boolean }[] = [];
  for (const file of files) {
    try {
      parsed.push({ file, weft: namesWeft(JSON.parse(await readFile(join(confDir, file), "utf8"))), valid: true });
    } catch {
      parsed.push({ file, weft: false, valid: false });
    }
  }
  const ours = parsed.find((p) => p.weft);
  if (!ours) return fail(name, `no CNI config in ${confDir} names the weft plugin${files.length ? ` (found ${files.join(", ")})` : ""}`, install);
  const first = parsed[0]!;
  if (first !== ours) {
    return warn(
      name,
      `${join(confDir, ours.file)} names weft, but the runtime uses ${first.file} first (lexical order)${first.valid ? "" : ", which is not valid JSON"}`,
      `remove ${join(confDir, first.file)} if it belongs to a network this node no longer runs, or give Weft's file a name that sorts first (--conf-name)`,
    );
  }
  return ok(name, `${join(confDir, ours.file)} names the weft plugin`);
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

/** The doctor's report: one line per check, the fix under each WARN/FAIL, then a summary line. */
export function renderDoctor(checks: readonly Check[]): string {
  const width = Math.max(0, ...checks.map((c) => c.name.length));
  const lines: string[] = [];
  for (const c of checks) {
    lines.push(`${LABEL[c.level].padEnd(5)} ${c.name.padEnd(width)}  ${c.message}`);
    if (c.fix && c.level !== "ok") lines.push(`${" ".repeat(6 + width)}  fix: ${c.fix}`);
  }
  const n = (l: CheckLevel) => checks.filter((c) => c.level === l).length;
  lines.push("", `${n("ok")} OK, ${n("warn")} WARN, ${n("fail")} FAIL`);
  return lines.join("\n") + "\n";
}

export function doctorFailed(checks: readonly Check[]): boolean {
  return checks.some((c) => c.level === "fail");
}
