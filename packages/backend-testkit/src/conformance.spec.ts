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
  type PeerStatus,
  WeftError,
  subnetKey,
} from "@weft/core";
import { inject, injectable } from "tsyringe";
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
    constructor(@inject(DATAPATH) private readonly datapath: Datapath) {}

    async registerSubnet(local: LocalLease): Promise<BackendData> {
      const gw = local.lease.subnet!;
      this.datapath.declare("local", {
        links: [{ name: this.dev, kind: "bridge", mtu: 1500, address: this.mac, up: true }],
        addresses: [{ dev: this.dev, address: `${gw.ip.add(1)}/${gw.prefix}` }],
      });
      await this.datapath.flush();
      return { v4: { Mac: this.mac } };
    }

    async addPeer(peer: Lease): Promise<PeerStatus> {
      const owner = subnetKey(peer);
      const fail = (reason: string): PeerStatus => {
        this.datapath.retract(owner);
        this.peers.delete(owner);
        return { state: "skipped", reason };
      };
      if (!defects.ignoresType && peer.attrs.backendType !== type) return fail(`peer ${owner} is ${peer.attrs.backendType}`);
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

  return {
    type,
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
    },
  };
}

const baseOptions: ConformanceOptions = {
  encapsulates: false,
  invalidConfigs: [{ config: { Type: "toy", Colour: "blue" }, path: "Backend.Colour" }],
  malformedPeerData: [null, 42, { Mac: 7 }],
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
    expect((await failures({ ignoresType: true })).get("malformed or foreign peer leases are skipped without affecting other peers")).toMatch(/a peer of another backend type was reported programmed/);
  });

  it("catches a backend whose desired state drifts on every addPeer", async () => {
    const f = await failures({ drifts: true });
    expect(f.get("adding the same peer twice changes nothing")).toMatch(/re-adding a known peer must not touch the kernel, but the pass wrote/);
  });

  it("catches teardown leaving objects behind", async () => {
    const f = await failures({ keepsDeviceOnTeardown: true });
    expect(f.get("teardown removes everything the backend created")).toMatch(/kernel differs[\s\S]*\+ link weft-toy bridge/);
  });

  it("checks the MTU overhead against what the backend says it does", async () => {
    expect((await failures({ overhead: 0 }, { encapsulates: true })).get("declares a positive MTU overhead per underlay family")).toMatch(/but the backend encapsulates/);
    expect((await failures({ overhead: 20 })).get("declares no MTU overhead (plain routing)")).toMatch(/does not encapsulate/);
  });
});
