/**
 * The backend conformance suite (STYLE 11): what every Weft backend must do, checked against a FakeKernel
 * and a FakeSubnetManager through the real DI loading and the real reconcilers (startTestAgent). Every check
 * asserts on the kernel's state, or on reconcile reports' write counts — never on which calls a backend made.
 *
 * Checks are plain async functions (node:assert), so `runBackendConformance` can run them anywhere and the
 * suite's own tests can show that a broken backend fails them; `describeBackendConformance` turns them into
 * vitest tests for a backend author.
 *
 * What "the kernel as it was" means: the core kinds (links, addresses, routes of every table, neighbours, FDB)
 * read through the KernelPort; on the FakeKernel every sysctl too; and every extra kind the backend registers,
 * as its reconciler's `snapshot` reports it (default `listOwned(kernel, [])`), recorded before the backend runs
 * and compared after `close("teardown")`. A backend must leave all of them as it found them.
 *
 * Link kinds a backend contributes (`BackendModule.linkKinds`) are given to the FakeKernel the suite makes,
 * which models them as their definition's `fake` model says. Kinds the kernel of Weft's test machines lacks
 * (gre, ipip, geneve: `ip link add ... type gre` answers "Unknown device type") are therefore tested on the
 * fake only — the definition's argv and read-back are the author's claim about the real kernel; run the netns
 * variant (`describeBackendConformanceInNetns`, which passes them to the LinuxKernel) where the module exists.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type BackendModule,
  type Family,
  type JsonValue,
  type Lease,
  type LogRecord,
  MemoryLogger,
  WeftError,
  type WeftErrorCode,
  errorMessage,
  leaseSubnet,
  parseNetworkConfig,
} from "@weft/core";
import type { KernelPort, ProcessRunner } from "@weft/kernel";
import { FakeKernel, FakeProcessRunner } from "@weft/kernel-testing";
import { wireBackend } from "@weft/reconcile";
import { type DependencyContainer, container as rootContainer } from "tsyringe";
import { FakeSubnetManager } from "./fake-subnet-manager.js";
import { type KernelSnapshot, type KindState, diffSnapshots, kindLines, snapshotKernel } from "./kernel-snapshot.js";
import { type FamilyMode, TEST_TOPOLOGY, peerLease, testNetConf } from "./leases.js";
import { type TestAgent, type TestAgentOptions, type TestInterface, ensureUnderlay, startTestAgent } from "./test-agent.js";

/**
 * A configuration the backend cannot run with on a given interface: its schema accepts it, but the module's
 * `preflight` must refuse it (a NAT'd PublicIP for a routing backend, an enabled family without an address on
 * the interface, a device name that would be too long).
 */
export interface PreflightReject {
  /** Says what is wrong, for the failure message (e.g. "PublicIP is not the interface address"). */
  readonly name: string;
  /** The node's underlay interface: addresses, PublicIP(s), MTU. */
  readonly iface: TestInterface;
  /** The Backend section (default: the suite's `config`). */
  readonly config?: Readonly<Record<string, unknown>>;
  /** Address families the network config enables (default "v4"). */
  readonly family?: FamilyMode;
  /** Text the error message must contain, or a pattern it must match. */
  readonly error?: string | RegExp;
}

export interface ConformanceOptions {
  /** The Backend section the suite runs with (Type included); default `{ "Type": module.type }`. */
  readonly config?: Readonly<Record<string, unknown>>;
  /** Address families to run the kernel checks in; default ["v4"]. Built-in backends run all three. */
  readonly families?: readonly FamilyMode[];
  /** The backend wraps packets (mtuOverhead must be > 0); false: plain routing (mtuOverhead must be 0). */
  readonly encapsulates: boolean;
  /** Backend sections the schema must reject, each with the JSON path the error must name (e.g. "Backend.VNI"). */
  readonly invalidConfigs?: readonly { readonly config: unknown; readonly path: string }[];
  /**
   * BackendData values a peer might publish that the backend must refuse (a "skipped" status, never a throw).
   * Default, when the backend requires peer data: values that are not objects at all (`42`, `"x"`, `[]`); give
   * your own to also cover wrong fields.
   */
  readonly malformedPeerData?: readonly JsonValue[];
  /**
   * Configurations `preflight` must refuse, each on its own interface (see PreflightReject). The agent calls
   * `preflight` before it takes a lease or changes the node; a check that only registerSubnet makes comes
   * too late. Giving cases for a module without `preflight` fails the suite.
   */
  readonly preflightRejects?: readonly PreflightReject[];
  /**
   * The backend needs its peers' BackendData (default true). Then a peer lease without it (the node has not
   * published it yet: its lease exists before its data) must come back pending, change nothing and log
   * nothing. false for backends that publish no data (host-gw programs such a peer).
   */
  readonly requiresPeerData?: boolean;
  /** A programmed peer has a route to its pod subnet in some table (default true). */
  readonly routesPeerSubnets?: boolean;
  /** Kernel writes a restart may cause (default 0: adopting means touching nothing). */
  readonly expectedRestartWrites?: number;
  /** A fresh kernel per node (default: a new FakeKernel), e.g. the real LinuxKernel in a new namespace. */
  readonly kernel?: () => KernelPort | Promise<KernelPort>;
  /** Called for every kernel `kernel` made, once the check is over (e.g. deletes the namespace). */
  readonly disposeKernel?: (kernel: KernelPort) => Promise<void>;
  /** A fresh process runner per node, for backends that run tools (default: one that refuses). */
  readonly processRunner?: () => ProcessRunner;
  /** Fakes of the kernel ports the backend uses, per node (see TestAgentOptions.ports; default the Linux adapters). */
  readonly ports?: () => TestAgentOptions["ports"];
}

export interface ConformanceCheck {
  readonly name: string;
  /** The family mode the check runs in; undefined for checks that touch no kernel. */
  readonly family?: FamilyMode;
  /**
   * Runs the check on fresh agents and kernels; rejects with an assertion error that says what the backend did
   * wrong.
   */
  run(): Promise<void>;
}

export interface ConformanceResult {
  readonly name: string;
  readonly family?: FamilyMode;
  /** Undefined when the check passed. */
  readonly error?: string;
}

/** Peer data a backend that needs structured peer data must refuse when the author lists none (malformedPeerData). */
const DEFAULT_MALFORMED_PEER_DATA: readonly JsonValue[] = [42, "x", []];
const FAMILIES_OF: Record<FamilyMode, Family[]> = { v4: ["v4"], v6: ["v6"], dual: ["v4", "v6"] };

/** Agents started by one check, all closed when it ends. */
class Scope {
  private readonly agents: TestAgent[] = [];
  private readonly kernels: KernelPort[] = [];
  constructor(
    private readonly module: BackendModule,
    private readonly options: ConformanceOptions,
    readonly mode: FamilyMode,
  ) {}

  get backend(): Record<string, unknown> {
    return this.options.config ?? { Type: this.module.type };
  }

  iface(n: number): TestInterface {
    const node = TEST_TOPOLOGY.node(n);
    return {
      name: "eth0",
      mtu: 1500,
      ...(this.mode !== "v6" ? { address: node.address } : {}),
      ...(this.mode !== "v4" ? { address6: node.address6 } : {}),
    };
  }

  /** Node `n` of the test cluster with its own kernel (or `extra.kernel`), subnet `subnetOf` (default n). */
  async node(n: number, extra: Partial<TestAgentOptions> & { subnetOf?: number } = {}): Promise<TestAgent> {
    const sub = TEST_TOPOLOGY.node(extra.subnetOf ?? n);
    let kernel = extra.kernel;
    if (!kernel && this.options.kernel) {
      kernel = await this.options.kernel();
      this.kernels.push(kernel);
    }
    const runner = extra.processRunner ?? this.options.processRunner?.();
    const ports = extra.ports ?? this.options.ports?.();
    const agent = await startTestAgent({
      backends: [this.module],
      config: testNetConf(this.backend, this.mode),
      iface: extra.iface ?? this.iface(n),
      leases: { subnet: sub.subnet, ipv6Subnet: sub.ipv6Subnet, nodeName: `node-${n}` },
      ...(kernel ? { kernel } : {}),
      ...(runner ? { processRunner: runner } : {}),
      ...(ports ? { ports } : {}),
    });
    this.agents.push(agent);
    return agent;
  }

  /** A fresh kernel for one node: `options.kernel`, or a FakeKernel that knows the module's link kinds. */
  async kernel(): Promise<KernelPort> {
    if (this.options.kernel) {
      const k = await this.options.kernel();
      this.kernels.push(k);
      return k;
    }
    return new FakeKernel({ linkKinds: this.module.linkKinds ?? [] });
  }

  /**
   * The state of every kind beyond the core five that the module registers, read through a fresh wiring of the
   * module on `kernel` and `stateDir` (as a newly started agent has it, before its backend does anything).
   */
  async kinds(kernel: KernelPort, stateDir: string): Promise<KindState[]> {
    const network = parseNetworkConfig(JSON.stringify(testNetConf(this.backend, this.mode)), { source: "net-conf.json" });
    const iface = await ensureUnderlay(kernel, this.iface(1));
    const ports = this.options.ports?.();
    const wiring = wireBackend(rootContainer, {
      module: this.module,
      logger: new MemoryLogger(),
      network,
      backendConfig: this.module.configSchema.parse(network.backend, "Backend"),
      iface,
      kernel,
      runner: this.options.processRunner?.() ?? new FakeProcessRunner(),
      ...(ports ? { ports: (c: DependencyContainer) => ports(c, kernel) } : {}),
      stateDir,
    });
    return wiring.engine.snapshotKinds();
  }

  /** The lease node `n` publishes, produced by running the backend on that node. */
  async peer(n: number, extra: Partial<TestAgentOptions> & { subnetOf?: number } = {}): Promise<Lease> {
    return (await this.node(n, extra)).lease;
  }

  async dispose(): Promise<void> {
    for (const a of this.agents.reverse()) await a.close("restart").catch(() => undefined);
    const errors: unknown[] = [];
    for (const k of this.kernels) await this.options.disposeKernel?.(k).catch((e: unknown) => errors.push(e));
    if (errors.length) throw errors[0];
  }
}

function assertSame(actual: KernelSnapshot, expected: KernelSnapshot, what: string): void {
  const d = diffSnapshots(expected, actual);
  assert.ok(d.length === 0, `${what}; kernel differs (- expected, + actual):\n  ${d.join("\n  ")}`);
}

function assertNoWrites(r: { writes: number; kinds: readonly { kind: string; drifts: readonly { key: string; reason: string }[] }[] }, what: string): void {
  const drifts = r.kinds.flatMap((k) => k.drifts.map((d) => `${k.kind} ${d.key}: ${d.reason}`));
  assert.equal(r.writes, 0, `${what}, but the pass wrote ${r.writes} kernel op(s):\n  ${drifts.join("\n  ") || "(removals)"}`);
}

function statusText(s: { state: string; reason?: string }): string {
  return s.reason ? `${s.state}: ${s.reason}` : s.state;
}

/** Codes a configuration error carries (permanent: the operator must change something). */
const CONFIG_CODES: ReadonlySet<WeftErrorCode> = new Set(["CONFIG_INVALID", "BACKEND_CONFIG_INVALID"]);

/** Log records at warn or error from `from` on (the backend's logger is a MemoryLogger in the suite). */
function loudSince(agent: TestAgent, from: number): LogRecord[] {
  const records = agent.logger instanceof MemoryLogger ? agent.logger.records : [];
  return records.slice(from).filter((r) => r.level === "warn" || r.level === "error");
}

function recordCount(agent: TestAgent): number {
  return agent.logger instanceof MemoryLogger ? agent.logger.records.length : 0;
}

/** One PreflightReject: refused by preflight with a config error; an agent started with it takes no lease, changes nothing. */
async function checkPreflightReject(module: BackendModule, options: ConformanceOptions, c: PreflightReject): Promise<void> {
  const what = `preflightRejects "${c.name}"`;
  const mode = c.family ?? "v4";
  const section = c.config ?? options.config ?? { Type: module.type };
  let config: unknown;
  try {
    config = module.configSchema.parse(section, "Backend");
  } catch (err) {
    assert.fail(`${what}: configSchema.parse refuses ${JSON.stringify(section)} (${errorMessage(err)}); a preflight case must pass the schema (put it in invalidConfigs instead)`);
  }
  const preflight = module.preflight;
  assert.ok(
    preflight,
    `${what}: the module has no preflight, so the agent would find this only in registerSubnet, after it took a lease and changed the node: ` +
      `add preflight(config, network, iface) to the module`,
  );
  const network = parseNetworkConfig(JSON.stringify(testNetConf(section, mode)), { source: "net-conf.json" });
  const kernel = options.kernel ? await options.kernel() : new FakeKernel({ linkKinds: module.linkKinds ?? [] });
  try {
    const iface = await ensureUnderlay(kernel, c.iface);
    const before = await snapshotKernel(kernel);
    let err: unknown;
    try {
      preflight.call(module, config, network, iface);
    } catch (e) {
      err = e;
    }
    assert.ok(err !== undefined, `${what}: preflight accepted ${JSON.stringify(section)} on ${JSON.stringify(c.iface)} (${mode}); it must throw a configuration error`);
    assert.ok(
      err instanceof WeftError && CONFIG_CODES.has(err.code),
      `${what}: preflight threw ${err instanceof WeftError ? err.code : "a non-WeftError"} (${errorMessage(err)}); it must be a ConfigError/WeftError with code CONFIG_INVALID or BACKEND_CONFIG_INVALID`,
    );
    if (c.error !== undefined) {
      const ok = typeof c.error === "string" ? err.message.includes(c.error) : c.error.test(err.message);
      assert.ok(ok, `${what}: preflight's error must ${typeof c.error === "string" ? "contain" : "match"} ${String(c.error)}; it said: ${err.message}`);
    }
    // The agent's order: preflight first, so the refusal leaves no lease in the store and the node as it was.
    const store = new FakeSubnetManager(network, { nodeName: "node-1" });
    let agentErr: unknown;
    try {
      const agent = await startTestAgent({ backends: [module], config: testNetConf(section, mode), iface: c.iface, kernel, leases: store });
      await agent.close("teardown");
    } catch (e) {
      agentErr = e;
    }
    assert.equal(agentErr === undefined ? "(started)" : errorMessage(agentErr), err.message, `${what}: an agent started with it must stop with preflight's error`);
    assert.equal(store.localLease(), undefined, `${what}: the agent took a lease before it refused the configuration`);
    assertSame(await snapshotKernel(kernel), before, `${what}: refusing the configuration changed the node`);
  } finally {
    await options.disposeKernel?.(kernel);
  }
}

/** Every check for one module, in a stable order. */
export function conformanceChecks(module: BackendModule, options: ConformanceOptions): ConformanceCheck[] {
  const modes = options.families ?? ["v4"];
  const routes = options.routesPeerSubnets ?? true;
  const checks: ConformanceCheck[] = [];
  const kernelCheck = (mode: FamilyMode, name: string, body: (s: Scope) => Promise<void>) =>
    checks.push({
      name,
      family: mode,
      async run() {
        const scope = new Scope(module, options, mode);
        try {
          await body(scope);
        } finally {
          await scope.dispose();
        }
      },
    });
  const backend = options.config ?? { Type: module.type };

  checks.push({
    name: "the config schema rejects invalid Backend sections, naming the JSON path",
    async run() {
      module.configSchema.parse(backend, "Backend");
      // Backend.Type is matched case-insensitively by the registry; the schema must not care either.
      module.configSchema.parse({ ...backend, Type: module.type.toUpperCase() }, "Backend");
      const cases: { config: unknown; path: string }[] = [
        { config: null, path: "Backend" },
        { config: 42, path: "Backend" },
        { config: "vxlan", path: "Backend" },
        { config: [backend], path: "Backend" },
        ...(options.invalidConfigs ?? []),
      ];
      for (const c of cases) {
        let err: unknown;
        try {
          module.configSchema.parse(c.config, "Backend");
        } catch (e) {
          err = e;
        }
        const shown = JSON.stringify(c.config);
        assert.ok(err !== undefined, `configSchema.parse accepted ${shown}; it must throw a ConfigError naming ${c.path}`);
        assert.ok(err instanceof WeftError, `configSchema.parse(${shown}) threw ${errorMessage(err)}, not a WeftError/ConfigError`);
        assert.ok(err.message.includes(c.path), `configSchema.parse(${shown}) must name the JSON path ${c.path}; it said: ${err.message}`);
      }
    },
  });

  checks.push({
    name: options.encapsulates ? "declares a positive MTU overhead per underlay family" : "declares no MTU overhead (plain routing)",
    async run() {
      const config = module.configSchema.parse(backend, "Backend");
      const v4 = module.mtuOverhead(config, "v4");
      const v6 = module.mtuOverhead(config, "v6");
      for (const [f, n] of [["v4", v4], ["v6", v6]] as const) assert.ok(Number.isInteger(n) && n >= 0, `mtuOverhead(config, "${f}") is ${n}: must be a non-negative integer`);
      if (options.encapsulates) {
        assert.ok(v4 > 0, `mtuOverhead(config, "v4") is ${v4}, but the backend encapsulates`);
        assert.ok(v6 >= v4, `mtuOverhead(config, "v6") is ${v6} < ${v4} for IPv4: an IPv6 outer header is 20 bytes larger`);
      } else {
        assert.equal(v4 + v6, 0, `mtuOverhead is ${v4}/${v6} (v4/v6), but the backend does not encapsulate`);
      }
    },
  });

  if (options.preflightRejects?.length) {
    checks.push({
      name: "preflight refuses what the backend cannot run with, before a lease is taken or the node changed",
      async run() {
        for (const c of options.preflightRejects ?? []) await checkPreflightReject(module, options, c);
      },
    });
  }

  for (const mode of modes) {
    kernelCheck(mode, "registerSubnet publishes data its peers accept", async (s) => {
      const a = await s.node(1);
      const b = await s.node(2);
      const ab = await a.addPeer(b.lease);
      assert.equal(ab.state, "programmed", `node-1 refused node-2's lease: ${statusText(ab)}`);
      const ba = await b.addPeer(a.lease);
      assert.equal(ba.state, "programmed", `node-2 refused node-1's lease: ${statusText(ba)}`);
    });

    kernelCheck(mode, "addPeer converges the kernel; a full reconcile then finds nothing to do", async (s) => {
      const local = await s.node(1);
      const before = await snapshotKernel(local.kernel);
      const peer = await s.peer(2);
      const status = await local.addPeer(peer);
      assert.equal(status.state, "programmed", `addPeer: ${statusText(status)}`);
      const after = await snapshotKernel(local.kernel);
      assert.ok(diffSnapshots(before, after).length > 0, "addPeer returned programmed but the kernel did not change");
      if (routes) {
        for (const f of FAMILIES_OF[mode]) {
          const dst = leaseSubnet(peer, f)!.toString();
          assert.ok(
            after.lines.some((l) => l.startsWith(`route ${f} `) && l.split(" ")[3] === dst),
            `no ${f} route to the peer subnet ${dst} after addPeer; routes:\n  ${after.lines.filter((l) => l.startsWith("route")).join("\n  ")}`,
          );
        }
      }
      assertNoWrites(await local.reconcile(), "the flush after addPeer should have programmed everything");
      assertNoWrites(await local.reconcile(), "a second full reconcile must be a no-op");
    });

    kernelCheck(mode, "adding the same peer twice changes nothing", async (s) => {
      const local = await s.node(1);
      const peer = await s.peer(2);
      await local.addPeer(peer);
      const once = await snapshotKernel(local.kernel);
      const again = await local.addPeer(peer);
      assert.equal(again.state, "programmed", `second addPeer: ${statusText(again)}`);
      assertNoWrites(local.reports[local.reports.length - 1]!, "re-adding a known peer must not touch the kernel");
      assertNoWrites(await local.reconcile(), "after re-adding a known peer, a full reconcile must be a no-op");
      assertSame(await snapshotKernel(local.kernel), once, "re-adding a known peer changed the kernel");
    });

    kernelCheck(mode, "removePeer removes exactly what addPeer created", async (s) => {
      const local = await s.node(1);
      const before = await snapshotKernel(local.kernel);
      const p2 = await s.peer(2);
      const p3 = await s.peer(3);
      await local.addPeer(p3);
      const withP3 = await snapshotKernel(local.kernel);
      await local.addPeer(p2);
      await local.removePeer(p2);
      assertSame(await snapshotKernel(local.kernel), withP3, "after adding and removing node-2 (node-3 stays), node-2's objects remain or node-3's were touched");
      await local.removePeer(p3);
      assertSame(await snapshotKernel(local.kernel), before, "after removing every peer, the kernel is not as it was before they were added");
      assertNoWrites(await local.reconcile(), "after removing every peer, a full reconcile (with prune) must find nothing left over");
    });

    kernelCheck(mode, "removing an unknown peer is not an error", async (s) => {
      const local = await s.node(1);
      const before = await snapshotKernel(local.kernel);
      const stranger = await s.peer(4);
      await local.removePeer(stranger);
      await local.removePeer(stranger);
      assertSame(await snapshotKernel(local.kernel), before, "removing a peer that was never added changed the kernel");
    });

    kernelCheck(mode, "a changed peer lease replaces the old objects", async (s) => {
      const local = await s.node(1);
      const before = await snapshotKernel(local.kernel);
      const old = await s.peer(2);
      // Same subnet, another node behind it (new underlay address, new backend data): a re-installed node.
      const moved = await s.peer(3, { subnetOf: 2 });
      await local.addPeer(old);
      const status = await local.addPeer(moved);
      assert.equal(status.state, "programmed", `addPeer(changed lease): ${statusText(status)}`);
      assertNoWrites(await local.reconcile(), "after a peer's lease changed, the flush should have left nothing to repair or prune");
      await local.removePeer(moved);
      assertSame(await snapshotKernel(local.kernel), before, "after the changed peer was removed, objects of its old lease remain");
    });

    kernelCheck(mode, "a restart adopts the datapath instead of duplicating it", async (s) => {
      const local = await s.node(1);
      await local.addPeer(await s.peer(2));
      await local.addPeer(await s.peer(3));
      const data = JSON.stringify(local.backendData);
      const before = await snapshotKernel(local.kernel);
      const r = await local.restart();
      assert.deepEqual(r.recreated, [], `the restarted agent recreated ${r.recreated.join(", ")} instead of adopting`);
      const allowed = options.expectedRestartWrites ?? 0;
      const drifts = r.reports.flatMap((p) => p.kinds.flatMap((k) => k.drifts.map((d) => `${k.kind} ${d.key}: ${d.reason}`)));
      assert.ok(r.writes <= allowed, `the restart wrote ${r.writes} kernel op(s) (allowed ${allowed}):\n  ${drifts.join("\n  ")}`);
      assertSame(await snapshotKernel(local.kernel), before, "the kernel after a restart differs from before it");
      assert.equal(JSON.stringify(local.backendData), data, "the backend data changed across a restart: peers' entries for this node would go stale");
    });

    kernelCheck(mode, "a restart prunes peers that left while the agent was down", async (s) => {
      const local = await s.node(1);
      await local.addPeer(await s.peer(2));
      const onlyP2 = await snapshotKernel(local.kernel);
      const p3 = await s.peer(3);
      await local.addPeer(p3);
      local.store.removePeer(p3); // the removal event is missed: the agent is "down"
      await local.restart();
      assertSame(await snapshotKernel(local.kernel), onlyP2, "objects of a peer that vanished during the restart were not pruned");
    });

    kernelCheck(mode, "malformed or foreign peer leases are skipped without affecting other peers", async (s) => {
      const local = await s.node(1);
      const base = await snapshotKernel(local.kernel);
      const good = await s.peer(2);
      await local.addPeer(good);
      const withGood = await snapshotKernel(local.kernel);
      const template = await s.peer(3);
      const bad: { what: string; lease: Lease }[] = [
        { what: "a peer of another backend type", lease: { ...template, attrs: { ...template.attrs, backendType: `not-${module.type}` } } },
        { what: "a peer without PublicIP", lease: { ...template, attrs: { backendType: template.attrs.backendType, ...dataOf(template) } } },
        ...(options.malformedPeerData ?? ((options.requiresPeerData ?? true) ? DEFAULT_MALFORMED_PEER_DATA : [])).map((d) => ({
          what: `a peer with BackendData ${JSON.stringify(d)}`,
          lease: { ...template, attrs: { ...template.attrs, backendData: d, backendV6Data: d } },
        })),
      ];
      for (const b of bad) {
        const logged = recordCount(local);
        let status;
        try {
          status = await local.addPeer(b.lease);
        } catch (err) {
          assert.fail(`addPeer threw for ${b.what}: ${errorMessage(err)}; it must return a skipped status`);
        }
        assert.notEqual(status.state, "programmed", `${b.what} was reported programmed`);
        assert.ok(status.state !== "programmed" && status.reason.length > 0, `${b.what}: the status needs a reason`);
        assertSame(await snapshotKernel(local.kernel), withGood, `${b.what} changed the kernel`);
        // The agent logs a peer's state once per change; a backend logging it too doubles every line.
        const loud = loudSince(local, logged);
        assert.deepEqual(
          loud.map((r) => r.msg),
          [],
          `the backend logged ${b.what} at ${loud[0]?.level}; return the reason in the status instead (the agent logs it once per change)`,
        );
      }
      // A good peer whose lease turns bad loses its entries (its old ones would point at the wrong place).
      const first = bad[bad.length - 1]!;
      await local.addPeer({ ...good, attrs: first.lease.attrs });
      assertSame(await snapshotKernel(local.kernel), base, `a peer whose lease turned unusable (${first.what}) kept its kernel objects`);
      assertNoWrites(await local.reconcile(), "after bad leases, a full reconcile must be a no-op");
    });

    if (options.requiresPeerData ?? true) {
      kernelCheck(mode, "a peer that has not published its backend data yet is pending quietly, and programmed once it has", async (s) => {
        const local = await s.node(1);
        const before = await snapshotKernel(local.kernel);
        const peer = await s.peer(2);
        // A joining node's lease exists before its data: it registers its devices after taking the lease.
        const { backendData: _v4, backendV6Data: _v6, ...attrs } = peer.attrs;
        const logged = recordCount(local);
        let status;
        try {
          status = await local.addPeer({ ...peer, attrs });
        } catch (err) {
          assert.fail(`addPeer threw for a peer without BackendData: ${errorMessage(err)}; it must return a pending status`);
        }
        assert.ok(status.state === "pending", `a peer without BackendData: ${statusText(status)}; it must be pending until it publishes its data`);
        assert.match(status.reason, /not published/, `a peer without BackendData: the reason must say it has not published its backend data yet; it said: ${status.reason}`);
        assertSame(await snapshotKernel(local.kernel), before, "a peer without BackendData changed the kernel");
        const loud = loudSince(local, logged);
        assert.deepEqual(loud.map((r) => r.msg), [], `the backend logged a peer that has not published its data yet at ${loud[0]?.level}: that happens on every node join; return the status only`);
        const later = await local.addPeer(peer);
        assert.equal(later.state, "programmed", `once it published its data: ${statusText(later)}`);
      });
    }

    kernelCheck(mode, "teardown removes everything the backend created", async (s) => {
      const kernel = await s.kernel();
      const stateDir = mkdtempSync(join(tmpdir(), "weft-conformance-"));
      try {
        // Every kind the backend registers, as its reconciler reports it, before the backend runs at all.
        const before = await s.kinds(kernel, stateDir);
        const local = await s.node(1, { kernel, stateDir });
        await local.addPeer(await s.peer(2));
        await local.addPeer(await s.peer(3));
        const declared = (await local.engine.snapshotKinds()).map((k) => k.kind);
        await local.close("teardown");
        assertSame(await snapshotKernel(local.kernel), local.initialSnapshot, "after close(\"teardown\") the kernel is not as the agent found it");
        const after = await s.kinds(kernel, stateDir);
        assert.deepEqual(after.map((k) => k.kind), declared, "the kinds a fresh agent registers differ from those the backend ran with");
        const d = diffSnapshots({ lines: kindLines(before), linkIndexes: {} }, { lines: kindLines(after), linkIndexes: {} });
        assert.ok(d.length === 0, `after close("teardown") the backend's own kinds (${declared.join(", ")}) are not as before it ran (- before, + after):\n  ${d.join("\n  ")}`);
      } finally {
        rmSync(stateDir, { recursive: true, force: true });
      }
    });
  }
  return checks;
}

function dataOf(l: Lease): { backendData?: JsonValue; backendV6Data?: JsonValue } {
  return {
    ...(l.attrs.backendData !== undefined ? { backendData: l.attrs.backendData } : {}),
    ...(l.attrs.backendV6Data !== undefined ? { backendV6Data: l.attrs.backendV6Data } : {}),
  };
}

/** Runs every check; never throws. For tooling and for testing the suite itself. */
export async function runBackendConformance(module: BackendModule, options: ConformanceOptions): Promise<ConformanceResult[]> {
  const out: ConformanceResult[] = [];
  for (const c of conformanceChecks(module, options)) {
    try {
      await c.run();
      out.push({ name: c.name, ...(c.family ? { family: c.family } : {}) });
    } catch (err) {
      out.push({ name: c.name, ...(c.family ? { family: c.family } : {}), error: errorMessage(err) });
    }
  }
  return out;
}
