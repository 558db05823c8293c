/**
 * Working in a network namespace given by PATH, which is how CNI names a container's namespace (CNI_NETNS:
 * /var/run/netns/<name>, /proc/<pid>/ns/net, or a bind mount anywhere). Owned by the CNI plugin's author.
 *
 * What iproute2 6.1 does with paths (tested on this machine):
 * - `ip -n X` takes a NAME only: it opens /run/netns/X, so `ip -n /run/netns/x` fails with
 *   `Cannot open network namespace "/run/netns/x": No such file or directory`.
 * - `ip link add A type veth peer name B netns <path>` DOES take a path (/run/netns/x and /proc/<pid>/ns/net
 *   both work), so a veth end can be created straight inside the container from the host side.
 * Hence: a path whose directory is /run/netns (also through the /var/run symlink) becomes LinuxKernel's `netns`
 * name (`ip -n`, one exec); any other path runs ip under `nsenter --net=<path> --` (util-linux: setns, then exec
 * ip; no mount namespace change, so it costs one extra exec and nothing else).
 *
 * Sysctls: /proc/sys/net shows the namespace of the process that OPENS it, not of the file's owner, so writing
 * /proc/sys from this process would change our own namespace. They go through `nsenter --net=<path> -- sysctl`.
 */
import { existsSync, realpathSync } from "node:fs";
import { basename, dirname } from "node:path";
import type { FdbSpec, Family, Link, LinkKindDefinition, RouteSpec } from "@weft/core";
import { type Address, KernelError, type KernelOp, type KernelPort, type Neighbour, type OpResult, type RouteLookup, type RouteQuery } from "../port.js";
import type { ProcessRunner, RunOptions, RunResult } from "../process.js";
import { classifyKernelMessage } from "./classify.js";
import { LinuxKernel } from "./linux-kernel.js";
import * as v from "./validate.js";

const NETNS_RUN_DIR = "/run/netns";

/** The /run/netns name of `path` when it lives there (so `ip -n <name>` reaches it), else undefined. */
export function netnsNameOf(path: string): string | undefined {
  let dir: string;
  try {
    dir = realpathSync(dirname(path));
  } catch {
    return undefined;
  }
  const name = basename(path);
  return dir === NETNS_RUN_DIR && /^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}$/.test(name) && name !== "." && name !== ".." ? name : undefined;
}

/**
 * A ProcessRunner that runs `ip` and `bridge` inside the namespace at `path` (via nsenter). When the path does
 * not exist it answers like `ip -n` does for a missing namespace, so LinuxKernel classifies it as NOT_FOUND
 * once instead of retrying every batch line.
 */
export function netnsPathRunner(runner: ProcessRunner, path: string): ProcessRunner {
  const checked = v.netnsRef("netns path", path);
  const missing = (): RunResult => ({
    exitCode: 1,
    stdout: "",
    stderr: `Cannot open network namespace "${checked}": No such file or directory\n`,
  });
  return {
    run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult> {
      if (!existsSync(checked)) return Promise.resolve(missing());
      return runner.run("nsenter", [`--net=${checked}`, "--", file, ...args], options);
    },
    spawn(file, args, options) {
      return runner.spawn("nsenter", [`--net=${checked}`, "--", file, ...args], options);
    },
  };
}

/**
 * The KernelPort of the namespace at `path`: LinuxKernel with `ip -n <name>` for /run/netns paths, or over
 * netnsPathRunner for any other path; sysctls through `nsenter --net=<path> sysctl` in both cases.
 */
export class NetnsPathKernel implements KernelPort {
  private readonly inner: LinuxKernel;
  private readonly path: string;

  constructor(
    private readonly runner: ProcessRunner,
    path: string,
    opts: { timeoutMs?: number; linkKinds?: readonly LinkKindDefinition[] } = {},
  ) {
    this.path = v.netnsRef("netns path", path);
    const name = netnsNameOf(this.path);
    this.inner = name
      ? new LinuxKernel({ runner, netns: name, ...opts })
      : new LinuxKernel({ runner: netnsPathRunner(runner, this.path), ...opts });
  }

  listLinks(): Promise<Link[]> {
    return this.inner.listLinks();
  }
  listAddresses(dev?: string): Promise<Address[]> {
    return this.inner.listAddresses(dev);
  }
  listRoutes(query: RouteQuery): Promise<RouteSpec[]> {
    return this.inner.listRoutes(query);
  }

  routeGet(dst: string): Promise<RouteLookup | undefined> {
    return this.inner.routeGet(dst);
  }
  listNeighbours(query: { readonly dev?: string; readonly family?: Family }): Promise<Neighbour[]> {
    return this.inner.listNeighbours(query);
  }
  listFdb(query: { readonly dev: string }): Promise<FdbSpec[]> {
    return this.inner.listFdb(query);
  }
  apply(ops: readonly KernelOp[]): Promise<OpResult[]> {
    return this.inner.apply(ops);
  }

  async getSysctl(key: string): Promise<string> {
    const r = await this.sysctl(["-n", this.key(key)]);
    if (r.exitCode !== 0 || r.stderr.trim()) throw this.sysctlError("read", key, r);
    return r.stdout.trim();
  }

  async setSysctl(key: string, value: string): Promise<void> {
    let val: string;
    try {
      val = v.sysctlValue(value);
    } catch (err) {
      throw new KernelError("KERNEL_INVALID", `sysctl ${key}: ${(err as Error).message}; nothing was run`);
    }
    // procps sysctl may print "setting key ...: Invalid argument" and still exit 0: any stderr is a failure.
    const r = await this.sysctl(["-q", "-w", `${this.key(key)}=${val}`]);
    if (r.exitCode !== 0 || r.stderr.trim()) throw this.sysctlError("write", key, r);
  }

  private key(key: string): string {
    try {
      // Slash form: interface names may contain dots, which sysctl's dotted form would split.
      return v.sysctlKey(key).join("/");
    } catch (err) {
      throw new KernelError("KERNEL_INVALID", `sysctl ${key}: ${(err as Error).message}; nothing was run`);
    }
  }

  private sysctl(args: readonly string[]): Promise<RunResult> {
    if (!existsSync(this.path)) {
      return Promise.resolve({ exitCode: 1, stdout: "", stderr: `network namespace ${this.path}: No such file or directory` });
    }
    return this.runner.run("nsenter", [`--net=${this.path}`, "--", "sysctl", ...args], { reject: false });
  }

  private sysctlError(what: "read" | "write", key: string, r: RunResult): KernelError {
    const msg = (r.stderr || `exit code ${r.exitCode}`).trim().split("\n").filter(Boolean).join("; ");
    return new KernelError(classifyKernelMessage(msg), `sysctl ${what} ${key} (netns ${this.path}): ${msg}`);
  }
}
