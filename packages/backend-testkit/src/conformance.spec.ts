/**
 * The suite must catch broken backends, or it proves nothing. A small correct backend ("toy": a local bridge
 * with the subnet's gateway address, and a route per peer via its PublicIP) passes every check; each broken
 * variant below fails the check that targets its defect, and says why.
 */
import "reflect-metadata";
import { randomBytes } from "node:crypto";
import {
  BACKEND,
  type Backend,
  type BackendData,
  type BackendModule,
  DATAPATH,
  type Datapath,
  type Lease,
  type LocalLease,
  type ExternalInterface,
  LOGGER,
  type Logger,
  type PeerStatus,
  STATE_DIR,
  WeftError,
  subnetKey,
} from "@weft/core";
import { KERNEL, KernelError, type KernelPort, type OpResult, type OwnedSysctls, ownedSysctls } from "@weft/kernel";
import { type Drift, type ObjectReconciler, RECONCILER_CONTRIBUTION } from "@weft/reconcile";
import { inject, injectable, instanceCachingFactory } from "tsyringe";
import { describe, expect, it } from "vitest";
import { type ConformanceOptions, runBackendConformance } from "./conformance.js";

interface Defects {
  /** removePeer forgets to retract. */
  leaks?: boolean;
  /** A new instance invents a new device MAC: a restart rewrites the link and publishes new data. */
  newMacPerInstance?: boolean;
  /** The device name is random per instance: a restart creates a second device. */
  newNamePerInstance?: boolean;
  /** Every addPeer declares a different route metric. */
  drifts?: boolean;
  /** The schema accepts any value. */
  acceptsAnything?: boolean;
  /** addPeer throws on data it does not like instead of skipping. */
  throwsOnBadData?: boolean;
  /** teardown leaves the device. */
  keepsDeviceOnTeardown?: boolean;
  /** A peer of another backend type is programmed anyway. */
  ignoresType?: boolean;
  /** mtuOverhead returns this. */
  overhead?: number;
  /** Logs a warning for every peer it skips (the agent already logs peer states). */
  logsSkippedPeers?: boolean;
  /** Reports a peer that has not published its data yet as malformed. */
  unpublishedLooksMalformed?: boolean;
  /** The NAT check lives only in registerSubnet (no preflight). */
  noPreflight?: boolean;
  /** preflight exists but lets a NAT'd PublicIP through; registerSubnet finds it. */
  lenientPreflight?: boolean;
  /**
   * Sets rp_filter on the underlay through an extra `sysctl` kind: "restores" puts it back at teardown
   * (OwnedSysctls), "leaves" is a copy of the sample's old reconciler, which never restored anything.
   */
  sysctl?: "restores" | "leaves";
  /** Keeps an extra kind of its own ("marks", state outside the kernel) whose removal forgets to remove. */
  marks?: "removes" | "leaves";
}

let counter = 0;

function toyModule(defects: Defects = {}): BackendModule<{ Type: string }> {
  const type = `toy-${++counter}`;

  @injectable()
  class ToyBackend implements Backend {
    private readonly mac = defects.newMacPerInstance ? `02:${randomBytes(5).toString("hex").match(/../g)!.join(":")}` : "02:00:00:00:00:77";
    private readonly dev = defects.newNamePerInstance ? `weft-t${randomBytes(3).toString("hex")}` : "weft-toy";
    private readonly peers = new Set<string>();
    private nextMetric = 100;
    constructor(
      @inject(DATAPATH) private readonly datapath: Datapath,
      @inject(LOGGER) private readonly logger: Logger,
    ) {}

    async registerSubnet(local: LocalLease): Promise<BackendData> {
      natCheck(local.iface);
      const gw = local.lease.subnet!;
      this.datapath.declare("local", {
        links: [{ name: this.dev, kind: "bridge", mtu: 1500, address: this.mac, up: true }],
        addresses: [{ dev: this.dev, address: `${gw.ip.add(1)}/${gw.prefix}` }],
        extra: {
          ...(defects.sysctl ? { sysctl: [{ key: `net.ipv4.conf.${local.iface.name}.rp_filter`, value: "2" }] } : {}),
          ...(defects.marks ? { marks: [{ id: "toy" }] } : {}),
        },
      });
      await this.datapath.flush();
      return { v4: { Mac: this.mac } };
    }

    async addPeer(peer: Lease): Promise<PeerStatus> {
      const owner = subnetKey(peer);
      const fail = (reason: string): PeerStatus => {
        this.datapath.retract(owner);
        this.peers.delete(owner);
        if (defects.logsSkippedPeers) this.logger.warn(`toy: ${reason}`);
        return { state: "skipped", reason };
      };
      if (!defects.ignoresType && peer.attrs.backendType !== type) return fail(`peer ${owner} is ${peer.attrs.backendType}`);
      if (peer.attrs.backendData === undefined && !defects.unpublishedLooksMalformed) return { ...fail(`peer ${owner} has not published its backend data yet`), state: "pending" };
      const data = peer.attrs.backendData as { Mac?: unknown } | null | undefined;
      if (typeof data?.Mac !== "string") {
        if (defects.throwsOnBadData) throw new WeftError("PEER_DATA_INVALID", `peer ${owner}: bad data`);
        return fail(`peer ${owner}: BackendData has no Mac`);
      }
      if (!peer.attrs.publicIP || !peer.subnet) return fail(`peer ${owner} has no PublicIP`);
      this.datapath.declare(owner, {
        routes: [
          {
            family: "v4",
            dst: peer.subnet.toString(),
            gateway: peer.attrs.publicIP.toString(),
            dev: "eth0",
            ...(defects.drifts ? { metric: this.nextMetric++ } : {}),
          },
        ],
      });
      this.peers.add(owner);
      return { state: "programmed" };
    }

    async removePeer(peer: Lease): Promise<void> {
      if (defects.leaks) return;
      this.datapath.retract(subnetKey(peer));
      this.peers.delete(subnetKey(peer));
    }

    async close(mode: "restart" | "teardown"): Promise<void> {
      if (mode === "restart") return;
      for (const p of this.peers) this.datapath.retract(p);
      if (!defects.keepsDeviceOnTeardown) this.datapath.retract("local");
      await this.datapath.flush();
    }
  }

  /** Like host-gw: peers route to the PublicIP, so it must be the interface's own address. */
  function natCheck(iface: ExternalInterface): void {
    if (iface.extAddr && iface.ifaceAddr && !iface.extAddr.equals(iface.ifaceAddr)) {
      throw new WeftError("CONFIG_INVALID", `${type}: PublicIP ${iface.extAddr} is not ${iface.name}'s address ${iface.ifaceAddr}: drop --public-ip`);
    }
  }

  return {
    type,
    ...(defects.noPreflight ? {} : { preflight: (_c: unknown, _n: unknown, iface: ExternalInterface) => (defects.lenientPreflight ? undefined : natCheck(iface)) }),
    configSchema: {
      parse(input: unknown, path: string) {
        if (defects.acceptsAnything) return input as { Type: string };
        if (input === null || typeof input !== "object" || Array.isArray(input)) throw new WeftError("BACKEND_CONFIG_INVALID", `net-conf.json: ${path} must be an object`);
        const extra = Object.keys(input).filter((k) => k.toLowerCase() !== "type");
        if (extra.length) throw new WeftError("BACKEND_CONFIG_INVALID", `net-conf.json: ${path}.${extra[0]} is not an option of ${type}`);
        return input as { Type: string };
      },
    },
    mtuOverhead: () => defects.overhead ?? 0,
    register(container) {
      container.register(BACKEND, { useClass: ToyBackend });
      if (defects.sysctl === "restores") {
        container.register(RECONCILER_CONTRIBUTION, { useFactory: instanceCachingFactory((c) => new OwnedSysctlReconciler(ownedSysctls(c.resolve(KERNEL), c.resolve(STATE_DIR)))) });
      } else if (defects.sysctl === "leaves") {
        container.register(RECONCILER_CONTRIBUTION, { useFactory: instanceCachingFactory((c) => new OldSampleSysctlReconciler(c.resolve(KERNEL))) });
      }
      if (defects.marks) container.register(RECONCILER_CONTRIBUTION, { useFactory: instanceCachingFactory((c) => marksReconciler(c.resolve(KERNEL), defects.marks === "removes")) });
    },
  };
}

interface SysctlSpec {
  readonly key: string;
  readonly value: string;
}

/** A copy of backends/sample's sysctl reconciler before OwnedSysctls: it sets, and never restores. */
class OldSampleSysctlReconciler implements ObjectReconciler<SysctlSpec, SysctlSpec> {
  readonly kind = "sysctl";
  constructor(private readonly kernel: KernelPort) {}
  key(s: SysctlSpec): string {
    return s.key;
  }
  async listOwned(kernel: KernelPort, desired: readonly SysctlSpec[]): Promise<SysctlSpec[]> {
    const out: SysctlSpec[] = [];
    for (const d of desired) {
      try {
        out.push({ key: d.key, value: (await kernel.getSysctl(d.key)).trim() });
      } catch (err) {
        if (!(err instanceof KernelError && err.code === "KERNEL_NOT_FOUND")) throw err;
      }
    }
    return out;
  }
  drift(d: SysctlSpec, a: SysctlSpec): Drift {
    return d.value !== a.value ? `value ${a.value} != ${d.value}` : undefined;
  }
  addOps(s: SysctlSpec): SysctlSpec[] {
    return [s];
  }
  updateOps(d: SysctlSpec): SysctlSpec[] {
    return [d];
  }
  removeOps(): SysctlSpec[] {
    return [];
  }
  async apply(ops: readonly SysctlSpec[]): Promise<OpResult[]> {
    const results: OpResult[] = [];
    for (const s of ops) {
      try {
        await this.kernel.setSysctl(s.key, s.value);
        results.push({ ok: true });
      } catch (err) {
        results.push({ ok: false, error: err instanceof KernelError ? err : new KernelError("KERNEL_FAILED", String(err)) });
      }
    }
    return results;
  }
}

/** The same kind over OwnedSysctls: removal restores the value from before. */
class OwnedSysctlReconciler extends OldSampleSysctlReconciler {
  constructor(private readonly owned: OwnedSysctls) {
    super(undefined as never);
  }
  override async listOwned(kernel: KernelPort, desired: readonly SysctlSpec[]): Promise<SysctlSpec[]> {
    const recorded = (await this.owned.owned()).map((o) => ({ key: o.key, value: "" }));
    return super.listOwned(kernel, [...desired, ...recorded.filter((r) => !desired.some((d) => d.key === r.key))]);
  }
  async snapshot(): Promise<unknown[]> {
    return this.owned.owned();
  }
  override removeOps(s: SysctlSpec): SysctlSpec[] {
    return [{ key: s.key, value: "" }];
  }
  override async apply(ops: readonly SysctlSpec[]): Promise<OpResult[]> {
    const results: OpResult[] = [];
    for (const s of ops) {
      try {
        await (s.value === "" ? this.owned.restore(s.key) : this.owned.set(s.key, s.value));
        results.push({ ok: true });
      } catch (err) {
        results.push({ ok: false, error: err instanceof KernelError ? err : new KernelError("KERNEL_FAILED", String(err)) });
      }
    }
    return results;
  }
}

/** Marks kept outside the kernel (one set per kernel): a kind only its own snapshot can show. */
const MARKS = new WeakMap<KernelPort, Set<string>>();
function marksReconciler(kernel: KernelPort, removes: boolean): ObjectReconciler<{ id: string }, string> {
  const set = MARKS.get(kernel) ?? new Set<string>();
  MARKS.set(kernel, set);
  return {
    kind: "marks",
    key: (m) => m.id,
    listOwned: async () => [...set].map((id) => ({ id })),
    drift: () => undefined,
    addOps: (m) => [`+${m.id}`],
    updateOps: (m) => [`+${m.id}`],
    removeOps: (m) => (removes ? [`-${m.id}`] : []),
    apply: async (ops) =>
      ops.map((op) => {
        if (op.startsWith("+")) set.add(op.slice(1));
        else set.delete(op.slice(1));
        return { ok: true as const };
      }),
  };
}

const baseOptions: ConformanceOptions = {
  encapsulates: false,
  invalidConfigs: [{ config: { Type: "toy", Colour: "blue" }, path: "Backend.Colour" }],
  malformedPeerData: [null, 42, { Mac: 7 }],
  preflightRejects: [{ name: "PublicIP is not the interface address", iface: { address: "198.18.0.1/24", publicIP: "198.18.9.9" }, error: "drop --public-ip" }],
};

async function failures(defects: Defects, options: Partial<ConformanceOptions> = {}) {
  const results = await runBackendConformance(toyModule(defects), { ...baseOptions, ...options });
  return new Map(results.filter((r) => r.error).map((r) => [r.name, r.error!]));
}

describe("the conformance suite", () => {
  it("passes a correct backend", async () => {
    expect([...(await failures({})).entries()]).toEqual([]);
  });

  it("catches a backend that leaks objects on removePeer", async () => {
    const f = await failures({ leaks: true });
    expect(f.get("removePeer removes exactly what addPeer created")).toMatch(/node-2's objects remain[\s\S]*\+ route v4 254 198\.19\.2\.0\/24 dev=eth0 gateway=198\.18\.0\.2/);
    expect(f.get("a changed peer lease replaces the old objects")).toBeDefined();
  });

  it("catches a backend that duplicates its device on restart", async () => {
    const f = await failures({ newNamePerInstance: true });
    expect(f.get("a restart adopts the datapath instead of duplicating it")).toMatch(/the restart wrote \d+ kernel op\(s\) \(allowed 0\):\s+links weft-t[0-9a-f]{6}: missing/);
  });

  it("catches a backend whose device (and published data) changes on restart", async () => {
    const f = await failures({ newMacPerInstance: true });
    expect(f.get("a restart adopts the datapath instead of duplicating it")).toMatch(/links weft-toy: address \S+ != \S+/);
  });

  it("catches a schema that accepts anything", async () => {
    const f = await failures({ acceptsAnything: true });
    expect(f.get("the config schema rejects invalid Backend sections, naming the JSON path")).toMatch(/configSchema.parse accepted null/);
  });

  it("catches a schema error that does not name the JSON path", async () => {
    const f = await failures({}, { invalidConfigs: [{ config: { Type: "toy", Colour: "blue" }, path: "Backend.Color" }] });
    expect(f.get("the config schema rejects invalid Backend sections, naming the JSON path")).toMatch(/must name the JSON path Backend.Color/);
  });

  it("catches addPeer throwing on malformed data, and programming a foreign peer", async () => {
    expect((await failures({ throwsOnBadData: true })).get("malformed or foreign peer leases are skipped without affecting other peers")).toMatch(/addPeer threw for a peer with BackendData null/);
    // A peer of another backend type never reaches the backend: the agent core screens it first (the peer
    // preamble, done once for every backend), so even a backend that would program it passes this check.
    expect((await failures({ ignoresType: true })).has("malformed or foreign peer leases are skipped without affecting other peers")).toBe(false);
    // An author who lists no malformed data still gets the check, with data that is not even an object.
    const { malformedPeerData: _listed, ...unlisted } = baseOptions;
    const results = await runBackendConformance(toyModule({ throwsOnBadData: true }), unlisted);
    expect(results.find((r) => r.name === "malformed or foreign peer leases are skipped without affecting other peers")?.error).toMatch(/addPeer threw for a peer with BackendData 42/);
  });

  it("catches a backend whose desired state drifts on every addPeer", async () => {
    const f = await failures({ drifts: true });
    expect(f.get("adding the same peer twice changes nothing")).toMatch(/re-adding a known peer must not touch the kernel, but the pass wrote/);
  });

  it("catches teardown leaving objects behind", async () => {
    const f = await failures({ keepsDeviceOnTeardown: true });
    expect(f.get("teardown removes everything the backend created")).toMatch(/kernel differs[\s\S]*\+ link weft-toy bridge/);
  });

  it("catches a sysctl left changed at teardown (the sample's old reconciler), and passes one that restores it", async () => {
    const f = await failures({ sysctl: "leaves" });
    expect(f.get("teardown removes everything the backend created")).toMatch(/kernel differs[\s\S]*- sysctl net\/ipv4\/conf\/eth0\/rp_filter=0[\s\S]*\+ sysctl net\/ipv4\/conf\/eth0\/rp_filter=2/);
    expect([...f.keys()]).toEqual(["teardown removes everything the backend created"]);
    expect([...(await failures({ sysctl: "restores" })).entries()]).toEqual([]);
  });

  it("checks the backend's own kinds at teardown through their reconcilers' snapshots", async () => {
    const f = await failures({ marks: "leaves" });
    expect(f.get("teardown removes everything the backend created")).toMatch(/the backend's own kinds \(marks\) are not as before it ran[\s\S]*\+ kind marks \{"id":"toy"\}/);
    expect([...(await failures({ marks: "removes" })).entries()]).toEqual([]);
  });

  it("catches a configuration error found only in registerSubnet, after the lease and the node changes", async () => {
    const name = "preflight refuses what the backend cannot run with, before a lease is taken or the node changed";
    expect((await failures({ noPreflight: true })).get(name)).toMatch(/"PublicIP is not the interface address": the module has no preflight, so the agent would find this only in registerSubnet/);
    expect((await failures({ lenientPreflight: true })).get(name)).toMatch(/preflight accepted .* it must throw a configuration error/);
    // Without cases the check is not there at all; with a wrong expected text it says what the error was.
    expect((await failures({}, { preflightRejects: [] })).has(name)).toBe(false);
    expect((await failures({}, { preflightRejects: [{ name: "x", iface: { address: "198.18.0.1/24", publicIP: "198.18.9.9" }, error: /use vxlan/ }] })).get(name)).toMatch(
      /preflight's error must match \/use vxlan\/; it said: toy-\d+: PublicIP 198\.18\.9\.9 is not eth0's address 198\.18\.0\.1: drop --public-ip/,
    );
  });

  it("catches a backend that logs the peers it skips, and one that calls an unpublished peer malformed", async () => {
    expect((await failures({ logsSkippedPeers: true })).get("malformed or foreign peer leases are skipped without affecting other peers")).toMatch(
      // The first bad lease that reaches the backend (a foreign one is refused by the agent before).
      /the backend logged a peer without PublicIP at warn; return the reason in the status instead/,
    );
    expect((await failures({ unpublishedLooksMalformed: true })).get("a peer that has not published its backend data yet is pending quietly, and programmed once it has")).toMatch(
      /a peer without BackendData: skipped: peer 198\.19\.2\.0-24: BackendData has no Mac; it must be pending until it publishes its data/,
    );
    // A backend that needs no peer data (host-gw) opts out.
    expect([...(await failures({ unpublishedLooksMalformed: true }, { requiresPeerData: false })).keys()]).toEqual([]);
  });

  it("checks the MTU overhead against what the backend says it does", async () => {
    expect((await failures({ overhead: 0 }, { encapsulates: true })).get("declares a positive MTU overhead per underlay family")).toMatch(/but the backend encapsulates/);
    expect((await failures({ overhead: 20 })).get("declares no MTU overhead (plain routing)")).toMatch(/does not encapsulate/);
  });
});
