/**
 * LinuxKernel: the KernelPort on real Linux through iproute2 (DESIGN §4).
 *
 * Reads are one `-json` process each (`ip -json -details link show`, `ip -json addr show`,
 * `ip -N -json -d route show table T [proto P]`, `ip -json neigh show nud all`, `bridge -json fdb show dev X`).
 * Writes go through BatchExecutor: one `ip|bridge -force -batch -` process per run of consecutive ops of one
 * tool, however many ops there are. With `netns`, every call gets `-n <ns>` (setns inside ip: cheaper than
 * `ip netns exec`); sysctls in a namespace go through `ip netns exec <ns> sysctl`, because /proc/sys/net of
 * this process shows its own namespace; without `netns` /proc/sys is read and written directly.
 */
import { readFile, writeFile } from "node:fs/promises";
import type { FdbSpec, Family, Link, LinkKindDefinition, RouteSpec } from "@weft/core";
import { type Address, KernelError, type KernelOp, type KernelPort, type Neighbour, type OpResult, type RouteLookup, type RouteQuery } from "../port.js";
import type { ProcessRunner, RunResult } from "../process.js";
import { BatchExecutor } from "./batch.js";
import { classifyKernelMessage } from "./classify.js";
import { BUILTIN_LINK_KIND_SET, LinkKinds } from "./link-kinds.js";
import type { Tool } from "./commands.js";
import { parseAddresses, parseFdb, parseJsonArray, parseLinks, parseNeighbours, parseRouteGet, parseRoutes } from "./parse.js";
import * as v from "./validate.js";

export interface LinuxKernelOptions {
  /** Starts ip/bridge/sysctl; ExecaRunner in production. */
  readonly runner: ProcessRunner;
  /** A named network namespace (/run/netns/<name>) to work in; the caller's own namespace when unset. */
  readonly netns?: string;
  /** Per-process timeout (default 60 s: a batch of many thousand lines takes well under a second). */
  readonly timeoutMs?: number;
  /** Link kinds backends contribute (BackendModule.linkKinds), on top of the built-in ones. */
  readonly linkKinds?: readonly LinkKindDefinition[];
}

export class LinuxKernel implements KernelPort {
  private readonly runner: ProcessRunner;
  private readonly netns: string | undefined;
  private readonly timeoutMs: number;
  private readonly executor: BatchExecutor;
  private readonly kinds: LinkKinds;

  constructor(opts: LinuxKernelOptions) {
    this.runner = opts.runner;
    // `ip -n` takes a name under /run/netns only (not a path), and it must not read as an option.
    this.netns = opts.netns === undefined ? undefined : validNetnsName(opts.netns);
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.kinds = opts.linkKinds?.length ? new LinkKinds(opts.linkKinds) : BUILTIN_LINK_KIND_SET;
    this.executor = new BatchExecutor(
      (tool, input) => this.exec(tool, ["-force", "-batch", "-"], input),
      async () => new Set((await this.listNeighbours({})).map((n) => `${n.dev} ${n.ip}`)),
      this.kinds,
    );
  }

  private exec(tool: Tool, args: readonly string[], input?: string): Promise<RunResult> {
    const full = this.netns ? ["-n", this.netns, ...args] : [...args];
    return this.runner.run(tool, full, { reject: false, timeoutMs: this.timeoutMs, ...(input !== undefined ? { input } : {}) });
  }

  /**
   * Runs a read and turns its JSON into values with `parse`; a non-zero exit is a KernelError classified from
   * stderr (e.g. a missing dev: NOT_FOUND), and output that is not what the tool prints (not JSON, or JSON a
   * parser trips over) is a KernelError KERNEL_FAILED: never a SyntaxError or TypeError.
   */
  private async read<T>(tool: Tool, args: readonly string[], parse: (items: Array<Record<string, unknown>>) => T): Promise<T> {
    const r = await this.exec(tool, args);
    if (r.exitCode !== 0) {
      const msg = r.stderr.trim().split("\n").filter(Boolean).join("; ") || `exit code ${r.exitCode}`;
      throw new KernelError(classifyKernelMessage(msg), `${tool} ${args.join(" ")}${this.netns ? ` (netns ${this.netns})` : ""}: ${msg}`);
    }
    return this.parsed(tool, args, r.stdout, parse);
  }

  private parsed<T>(tool: Tool, args: readonly string[], stdout: string, parse: (items: Array<Record<string, unknown>>) => T): T {
    try {
      return parse(parseJsonArray(tool, stdout));
    } catch (err) {
      const why = String(err);
      throw new KernelError("KERNEL_FAILED", `${tool} ${args.join(" ")}: unreadable JSON output: ${why.length > 200 ? `${why.slice(0, 200)}...` : why}`, undefined, { cause: err });
    }
  }

  async listLinks(): Promise<Link[]> {
    return this.read("ip", ["-json", "-details", "link", "show"], (items) => parseLinks(items, this.kinds));
  }

  async listAddresses(dev?: string): Promise<Address[]> {
    const args = ["-json", "addr", "show"];
    if (dev !== undefined) args.push("dev", this.name("dev", dev));
    return this.read("ip", args, parseAddresses);
  }

  async listRoutes(query: RouteQuery): Promise<RouteSpec[]> {
    const family = v.oneOf("family", query.family, ["v4", "v6"] as const);
    const table = query.table === "all" ? "all" : this.int("table", query.table ?? 254, 1, 0xffffffff);
    const args = ["-N", "-json", "-d", family === "v4" ? "-4" : "-6", "route", "show", "table", table];
    if (query.protocol !== undefined) args.push("proto", this.int("protocol", query.protocol, 0, 255));
    return this.read("ip", args, (items) => parseRoutes(items, { ...query, family }));
  }

  async routeGet(dst: string): Promise<RouteLookup | undefined> {
    const ip = this.checked(() => v.address("dst", dst));
    const r = await this.exec("ip", ["-json", "route", "get", ip]);
    if (r.exitCode !== 0) {
      // What the kernel answers for no route, an unreachable/prohibit route, and a blackhole route.
      if (/Network is unreachable|No route to host|Permission denied|Invalid argument/.test(r.stderr)) return undefined;
      const msg = r.stderr.trim().split("\n").filter(Boolean).join("; ") || `exit code ${r.exitCode}`;
      throw new KernelError(classifyKernelMessage(msg), `ip route get ${ip}${this.netns ? ` (netns ${this.netns})` : ""}: ${msg}`);
    }
    return this.parsed("ip", ["-json", "route", "get", ip], r.stdout, parseRouteGet);
  }

  async listNeighbours(query: { readonly dev?: string; readonly family?: Family }): Promise<Neighbour[]> {
    const args = ["-json"];
    if (query.family) args.push(v.oneOf("family", query.family, ["v4", "v6"] as const) === "v4" ? "-4" : "-6");
    // `nud all`: without it ip hides NOARP entries, which can be ours.
    args.push("neigh", "show", "nud", "all");
    if (query.dev !== undefined) args.push("dev", this.name("dev", query.dev));
    return this.read("ip", args, (items) => parseNeighbours(items, query.dev));
  }

  async listFdb(query: { readonly dev: string }): Promise<FdbSpec[]> {
    const dev = this.name("dev", query.dev);
    return this.read("bridge", ["-json", "fdb", "show", "dev", dev], (items) => parseFdb(items, dev));
  }

  apply(ops: readonly KernelOp[]): Promise<OpResult[]> {
    return this.executor.apply(ops);
  }

  async getSysctl(key: string): Promise<string> {
    const parts = this.checked(() => v.sysctlKey(key));
    if (this.netns) {
      const r = await this.runner.run("ip", ["netns", "exec", this.netns, "sysctl", "-n", parts.join("/")], { reject: false, timeoutMs: this.timeoutMs });
      if (r.exitCode !== 0 || r.stderr.trim()) throw this.sysctlError("read", key, r.stderr || `exit code ${r.exitCode}`);
      return r.stdout.trim();
    }
    try {
      return (await readFile(`/proc/sys/${parts.join("/")}`, "utf8")).trim();
    } catch (err) {
      throw this.sysctlError("read", key, errnoText(err), err);
    }
  }

  async setSysctl(key: string, value: string): Promise<void> {
    const parts = this.checked(() => v.sysctlKey(key));
    const val = this.checked(() => v.sysctlValue(value));
    if (this.netns) {
      // procps sysctl may print "setting key ...: Invalid argument" and still exit 0: any stderr is a failure.
      const r = await this.runner.run("ip", ["netns", "exec", this.netns, "sysctl", "-q", "-w", `${parts.join("/")}=${val}`], {
        reject: false,
        timeoutMs: this.timeoutMs,
      });
      if (r.exitCode !== 0 || r.stderr.trim()) throw this.sysctlError("write", key, r.stderr || `exit code ${r.exitCode}`);
      return;
    }
    try {
      await writeFile(`/proc/sys/${parts.join("/")}`, val, "utf8");
    } catch (err) {
      throw this.sysctlError("write", key, errnoText(err), err);
    }
  }

  private sysctlError(what: "read" | "write", key: string, text: string, cause?: unknown): KernelError {
    const msg = text.trim().split("\n").filter(Boolean).join("; ");
    return new KernelError(classifyKernelMessage(msg), `sysctl ${what} ${key}${this.netns ? ` (netns ${this.netns})` : ""}: ${msg}`, undefined, { cause });
  }

  private checked<T>(f: () => T): T {
    try {
      return f();
    } catch (err) {
      if (err instanceof v.InvalidValue) throw new KernelError("KERNEL_INVALID", `${err.message}; nothing was run`);
      throw err;
    }
  }

  private name(field: string, value: string): string {
    return this.checked(() => v.ifname(field, value));
  }

  private int(field: string, value: number, min: number, max: number): string {
    return this.checked(() => v.integer(field, value, min, max));
  }
}

function validNetnsName(name: string): string {
  if (!/^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}$/.test(name) || name === "." || name === "..") {
    throw new KernelError("KERNEL_INVALID", `LinuxKernel: netns ${JSON.stringify(name)} is invalid: use the name of a namespace under /run/netns`);
  }
  return name;
}

function errnoText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException)?.code;
  switch (code) {
    case "ENOENT":
      return "No such file or directory";
    case "EACCES":
    case "EPERM":
      return "Permission denied";
    case "EINVAL":
      return "Invalid argument";
    default:
      return err instanceof Error ? err.message : String(err);
  }
}
