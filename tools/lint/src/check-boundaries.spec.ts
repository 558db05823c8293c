/**
 * The boundary check on fixture trees: what it must catch (however the import is spelled) and what it must
 * leave alone (comments, strings, the kernel package, the loaders).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ExecaRunner } from "@weft/kernel";
import { afterEach, describe, expect, it } from "vitest";

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "..", "check-boundaries.mjs");
const runner = new ExecaRunner();
let root: string;
afterEach(() => rmSync(root, { recursive: true, force: true }));

interface FixturePackage {
  readonly name: string;
  readonly tags: readonly string[];
  readonly dependencies?: Record<string, string>;
  readonly devDependencies?: Record<string, string>;
}

/** packages/kernel (scope:kernel), packages/recon (scope:reconcile) and packages/daemon (scope:daemon), each depending on execa only. */
const BASE_PACKAGES: Record<string, FixturePackage> = {
  "packages/kernel": { name: "@weft/kernel", tags: ["scope:kernel"] },
  "packages/recon": { name: "@weft/recon", tags: ["scope:reconcile"] },
  "packages/daemon": { name: "@weft/daemon", tags: ["scope:daemon"] },
};

/** A workspace with the base packages (or `packages` over them, by directory) and the given sources. */
async function check(files: Record<string, string>, packages: Record<string, FixturePackage> = {}): Promise<{ ok: boolean; lines: string[] }> {
  root = mkdtempSync(join(tmpdir(), "weft-lint-"));
  for (const [dir, p] of Object.entries({ ...BASE_PACKAGES, ...packages })) {
    mkdirSync(join(root, dir, "src"), { recursive: true });
    const json = { name: p.name, nx: { tags: p.tags }, dependencies: p.dependencies ?? { execa: "*" }, devDependencies: p.devDependencies ?? {} };
    writeFileSync(join(root, dir, "package.json"), JSON.stringify(json));
  }
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  const r = await runner.run(process.execPath, [SCRIPT, "--root", root], { reject: false });
  return { ok: r.exitCode === 0, lines: (r.stdout + r.stderr).split("\n").filter((l) => l.startsWith("  ")).map((l) => l.trim()) };
}

describe("check-boundaries", () => {
  it("catches process modules outside the kernel however the import is written", async () => {
    const r = await check({
      "packages/recon/src/a.ts": 'import { execa } from "execa";\n',
      "packages/recon/src/b.ts": "export async function f() { return import(`node:child_process`); }\n",
      "packages/recon/src/c.ts": 'const cp = require("child_process");\n',
      "packages/recon/src/d.ts": 'const m = "node:child" + "_process";\nexport const x = await import(m);\n',
      "packages/recon/src/e.ts": 'import { createRequire } from "node:module";\nexport const cp = createRequire(import.meta.url)("child_process");\n',
    });
    expect(r.ok).toBe(false);
    expect(r.lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^packages\/recon\/src\/a\.ts: imports "execa": only packages\/kernel may start processes/),
        expect.stringMatching(/^packages\/recon\/src\/b\.ts: imports "node:child_process": only packages\/kernel/),
        expect.stringMatching(/^packages\/recon\/src\/c\.ts: imports "child_process": only packages\/kernel/),
        expect.stringMatching(/^packages\/recon\/src\/d\.ts: import\(\) with a computed module name/),
        expect.stringMatching(/^packages\/recon\/src\/e\.ts: imports "node:module"/),
        expect.stringMatching(/^packages\/recon\/src\/e\.ts: createRequire\(\)/),
      ]),
    );
    expect(r.lines).toHaveLength(6);
  });

  it("leaves alone comments, strings, the kernel package and the --backend-module loader", async () => {
    const r = await check({
      "packages/recon/src/a.ts": '// import { execa } from "execa";\n/* require("child_process") */\nexport const s = \'import x from "execa"\';\n',
      "packages/kernel/src/run.ts": 'import { execa } from "execa";\nimport { spawn } from "node:child_process";\nexport { execa, spawn };\n',
      "packages/daemon/src/backend-modules.ts": "export const load = (url: string) => import(url);\n",
    });
    expect(r).toEqual({ ok: true, lines: [] });
  });
  it("rejects sockets outside the kernel: value imports of node:net, node:dgram and node:tls (types and isIP* are fine)", async () => {
    const r = await check(
      {
        "packages/recon/src/a.ts": 'import { connect } from "node:net";\nexport const c = connect;\n',
        "packages/recon/src/b.ts": 'import * as dgram from "dgram";\nexport const d = dgram;\n',
        "packages/recon/src/c.ts": 'import type { AddressInfo } from "node:net";\nimport { isIPv6, type Socket } from "node:net";\nexport type A = [AddressInfo, Socket];\nexport const v6 = isIPv6;\n',
        "packages/recon/src/d.ts": 'export const tls = () => import("node:tls");\n',
        "packages/recon/src/e.ts": 'import { type Socket, createServer } from "net";\nexport const s: [Socket?, unknown?] = [undefined, createServer];\n',
        "packages/recon/src/f.spec.ts": 'import { createServer } from "node:net";\nexport const s = createServer;\n',
        "packages/kernel/src/sock.ts": 'import { createConnection } from "node:net";\nexport const c = createConnection;\n',
        "tools/lab/src/forward.ts": 'import { connect } from "node:net";\nexport const c = connect;\n',
      },
      { "tools/lab": { name: "@weft/lab", tags: ["scope:tools"] } },
    );
    expect(r.ok).toBe(false);
    expect(r.lines.sort()).toEqual([
      expect.stringMatching(/^packages\/recon\/src\/a\.ts: imports "node:net": connect: only packages\/kernel opens sockets/),
      expect.stringMatching(/^packages\/recon\/src\/b\.ts: imports "dgram": \*: only packages\/kernel opens sockets/),
      expect.stringMatching(/^packages\/recon\/src\/d\.ts: imports "node:tls": \*: only packages\/kernel opens sockets/),
      expect.stringMatching(/^packages\/recon\/src\/e\.ts: imports "net": createServer: only packages\/kernel opens sockets/),
    ]);
  });

  it("rejects /proc paths in strings and templates outside the kernel, not in comments or look-alikes", async () => {
    const r = await check(
      {
        "packages/recon/src/a.ts": 'import { readFileSync } from "node:fs";\nexport const m = () => readFileSync("/proc/self/mountinfo", "utf8");\n',
        "packages/recon/src/b.ts": "export const ns = (pid: number) => `/proc/${pid}/ns/net`;\n",
        "packages/recon/src/c.ts": "export const root = '/proc';\n",
        "packages/recon/src/d.ts": '// reads /proc/self/stat\nexport const s = ["/process", "/sys/proc", "proc/1", `${"x"}/proc/1`];\n',
        "packages/recon/src/e.spec.ts": "export const p = `/proc/${1}/stat`;\n",
        "packages/kernel/src/pid.ts": "export const stat = (pid: number) => `/proc/${pid}/stat`;\n",
        "packages/kit/src/fake.ts": 'export const p = "/proc/sys/net/ipv4/ip_forward";\n',
      },
      { "packages/kit": { name: "@weft/kit", tags: ["scope:testing"] } },
    );
    expect(r.ok).toBe(false);
    expect(r.lines.sort()).toEqual([
      expect.stringMatching(/^packages\/recon\/src\/a\.ts: reads "\/proc\/self\/mountinfo": only packages\/kernel reads \/proc/),
      expect.stringMatching(/^packages\/recon\/src\/b\.ts: reads "\/proc\/\$\{\.\.\.\}": only packages\/kernel reads \/proc/),
      expect.stringMatching(/^packages\/recon\/src\/c\.ts: reads "\/proc": only packages\/kernel reads \/proc/),
    ]);
  });

  it("rejects the process runner outside the kernel, the kits, the tools, tests and the composition roots", async () => {
    const kernelDep = { dependencies: { "@weft/kernel": "*" } };
    const r = await check(
      {
        "packages/recon/src/a.ts": 'import { PROCESS_RUNNER, type ProcessRunner } from "@weft/kernel";\nexport type R = ProcessRunner;\nexport const t = PROCESS_RUNNER;\n',
        "packages/recon/src/b.ts": 'import * as k from "@weft/kernel";\nexport const r = new k.ExecaRunner();\n',
        "packages/recon/src/c.ts": '/** Runs nothing itself: see {@link ProcessRunner}. */\nexport const processRunner = "ProcessRunner";\n',
        "packages/recon/src/d.spec.ts": 'import { ExecaRunner } from "@weft/kernel";\nexport const r = new ExecaRunner();\n',
        "packages/daemon/src/main.ts": 'import { ExecaRunner } from "@weft/kernel";\nexport const r = new ExecaRunner();\n',
        "packages/daemon/src/teardown.ts": 'import { PROCESS_RUNNER, type ProcessRunner } from "@weft/kernel";\nexport const bind = (c: { register(t: unknown, v: unknown): void }, runner: ProcessRunner) => c.register(PROCESS_RUNNER, { useValue: runner });\n',
        "packages/daemon/src/flags.ts": 'import type { ProcessRunner } from "@weft/kernel";\nexport interface Deps { runner: ProcessRunner }\n',
        "packages/kit/src/fake.ts": 'import type { ProcessRunner } from "@weft/kernel";\nexport type R = ProcessRunner;\n',
        "packages/kernel/src/spawn.ts": "export class SpawnRunner {}\n",
      },
      {
        "packages/recon": { name: "@weft/recon", tags: ["scope:reconcile"], ...kernelDep },
        "packages/daemon": { name: "@weft/daemon", tags: ["scope:daemon"], ...kernelDep },
        "packages/kit": { name: "@weft/kit", tags: ["scope:testing"], ...kernelDep },
      },
    );
    expect(r.ok).toBe(false);
    expect(r.lines.sort()).toEqual([
      expect.stringMatching(/^packages\/daemon\/src\/flags\.ts: uses ProcessRunner: only packages\/kernel runs processes/),
      expect.stringMatching(/^packages\/daemon\/src\/teardown\.ts: uses PROCESS_RUNNER: a composition root hands backends the kernel's ports, never the runner/),
      expect.stringMatching(/^packages\/recon\/src\/a\.ts: uses PROCESS_RUNNER, ProcessRunner: only packages\/kernel runs processes/),
      expect.stringMatching(/^packages\/recon\/src\/b\.ts: uses ExecaRunner: only packages\/kernel runs processes/),
    ]);
  });

  it("holds backends to the author surface: kits only in tests; no adapters, parsers or engine internals; core's tokens are fine", async () => {
    const r = await check(
      {
        "backends/tun/src/a.ts": 'import { KERNEL, type KernelPort, LinuxKernel, parseWgDump } from "@weft/kernel";\nexport const x = [KERNEL, LinuxKernel, parseWgDump] as const;\nexport type K = KernelPort;\n',
        "backends/tun/src/b.ts": 'import { DatapathEngine, type ObjectReconciler, RECONCILER_CONTRIBUTION } from "@weft/reconcile";\nexport const x = [DatapathEngine, RECONCILER_CONTRIBUTION] as const;\nexport type O = ObjectReconciler<unknown>;\n',
        "backends/tun/src/c.ts": 'import { CLOCK, LOGGER } from "@weft/core";\nexport const x = [CLOCK, LOGGER] as const;\n',
        "backends/tun/src/d.ts": 'import { FakeKernel } from "@weft/kit";\nexport const k = new FakeKernel();\n',
        "backends/tun/src/e.ts": 'export * from "@weft/kernel";\n',
        "backends/tun/src/f.spec.ts":
          'import { FakeKernel } from "@weft/kit";\nimport { DatapathEngine } from "@weft/reconcile";\nimport { LinuxKernel } from "@weft/kernel";\nimport { Lab } from "@weft/lab";\nexport const x = [FakeKernel, DatapathEngine, LinuxKernel, Lab];\n',
        "backends/tun/src/g.ts": 'import { Lab } from "@weft/lab";\nexport const l = Lab;\n',
      },
      {
        "packages/core": { name: "@weft/core", tags: ["scope:core"] },
        "packages/reconcile": { name: "@weft/reconcile", tags: ["scope:reconcile"] },
        "packages/kit": { name: "@weft/kit", tags: ["scope:testing"] },
        "tools/lab": { name: "@weft/lab", tags: ["scope:tools", "type:lib"] },
        "backends/tun": {
          name: "@weft/backend-tun",
          tags: ["scope:backend"],
          dependencies: { "@weft/core": "*", "@weft/kernel": "*", "@weft/reconcile": "*", "@weft/lab": "*" },
          devDependencies: { "@weft/kit": "*" },
        },
      },
    );
    expect(r.ok).toBe(false);
    expect(r.lines.sort()).toEqual([
      expect.stringMatching(/^backends\/tun\/src\/a\.ts: imports "@weft\/kernel": LinuxKernel, parseWgDump: a backend uses the kernel's ports/),
      expect.stringMatching(/^backends\/tun\/src\/b\.ts: imports "@weft\/reconcile": DatapathEngine: a backend contributes reconcilers/),
      expect.stringMatching(/^backends\/tun\/src\/d\.ts: imports "@weft\/kit": @weft\/kit is a devDependency of @weft\/backend-tun, but this file ships/),
      expect.stringMatching(/^backends\/tun\/src\/d\.ts: imports "@weft\/kit": backends may import only core, the kernel port, reconcile and, in tests, the testing kits and the lab/),
      expect.stringMatching(/^backends\/tun\/src\/e\.ts: imports "@weft\/kernel": \*: a backend uses the kernel's ports/),
      expect.stringMatching(/^backends\/tun\/src\/g\.ts: imports "@weft\/lab": backends may import only core, .* not @weft\/lab \(scope:tools,type:lib\) \(testing kits and the lab only in \*\.spec\.ts files\)$/),
    ]);
  });

  it("rejects a shipping source that imports a devDependency; tests and spec helpers may", async () => {
    const r = await check(
      {
        "packages/daemon/src/a.ts": 'import { FakeKernel } from "@weft/kit";\nexport const k = new FakeKernel();\n',
        "packages/daemon/src/b.spec.ts": 'import { FakeKernel } from "@weft/kit";\nexport const k = new FakeKernel();\n',
        "packages/daemon/src/c.spec-helper.ts": 'import type { FakeKernel } from "@weft/kit";\nexport type K = FakeKernel;\n',
        "packages/daemon/src/d.ts": 'import { kernel } from "@weft/kernel";\nexport const k = kernel;\n',
        "packages/daemon/src/e.ts": 'import { recon } from "@weft/recon";\nexport const r = recon;\n',
      },
      {
        "packages/kit": { name: "@weft/kit", tags: ["scope:testing"] },
        "packages/daemon": { name: "@weft/daemon", tags: ["scope:daemon"], dependencies: { "@weft/kernel": "*" }, devDependencies: { "@weft/kit": "*" } },
      },
    );
    expect(r.ok).toBe(false);
    expect(r.lines.sort()).toEqual([
      'packages/daemon/src/a.ts: imports "@weft/kit": @weft/kit is a devDependency of @weft/daemon, but this file ships: move @weft/kit to "dependencies" in packages/daemon/package.json, or import it only from *.spec.ts files',
      'packages/daemon/src/e.ts: imports "@weft/recon": @weft/recon is not declared in @weft/daemon\'s package.json dependencies',
    ]);
  });

  it("lets the known exceptions through, and flags one that no longer applies", async () => {
    const kernelDep = { dependencies: { "@weft/kernel": "*" } };
    const r = await check(
      {
        "packages/cni/src/delegate.ts": 'import type { ProcessRunner } from "@weft/kernel";\nexport type R = ProcessRunner;\n',
        "packages/cni/src/plugin.ts": "export const plugin = {};\n",
        "packages/cni/src/ipam/lock.ts": "export const stat = (pid: number) => `/proc/${pid}/stat`;\n",
      },
      { "packages/cni": { name: "@weft/cni", tags: ["scope:cni"], ...kernelDep } },
    );
    expect(r.ok).toBe(false);
    expect(r.lines).toEqual([expect.stringMatching(/^packages\/cni\/src\/plugin\.ts: the known exception for rule "runner" no longer applies/)]);
  });
});
