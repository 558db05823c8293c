import { describe, expect, it } from "vitest";
import type { Datapath } from "./backend.js";
import { IPNet } from "./ip.js";
import type { KernelObjects } from "./kernel-objects.js";
import type { Lease } from "./lease.js";
import { PeerDeclarations } from "./peer-declarations.js";

class MapDatapath implements Datapath {
  readonly owners = new Map<string, KernelObjects>();
  declare(owner: string, objects: KernelObjects) {
    this.owners.set(owner, objects);
  }
  retract(owner: string) {
    this.owners.delete(owner);
  }
  declared(owner: string) {
    return this.owners.get(owner);
  }
  async flush() {}
}

const lease = (n: number): Lease => ({ subnet: IPNet.parse(`198.19.${n}.0/24`), attrs: { backendType: "t" } });
const route = (n: number): KernelObjects => ({ routes: [{ family: "v4", dst: `198.19.${n}.0/24`, dev: "eth0" }] });

describe("PeerDeclarations", () => {
  it("declares under the subnet key, retracts when a peer turns unusable or goes, and clears on teardown", () => {
    const dp = new MapDatapath();
    const p = new PeerDeclarations(dp);
    expect(p.apply(lease(2), { objects: route(2) })).toEqual({ state: "programmed" });
    expect(p.apply(lease(3), { objects: route(3) })).toEqual({ state: "programmed" });
    expect([...dp.owners.keys()]).toEqual(["198.19.2.0-24", "198.19.3.0-24"]);
    expect(p.apply(lease(2), { status: { state: "skipped", reason: "bad data" } })).toEqual({ state: "skipped", reason: "bad data" });
    expect([...dp.owners.keys()]).toEqual(["198.19.3.0-24"]);
    p.remove(lease(9));
    p.remove(lease(3));
    expect(dp.owners.size).toBe(0);
    p.apply(lease(4), { objects: route(4) });
    p.clear();
    expect(dp.owners.size).toBe(0);
    expect(p.size).toBe(0);
  });
});
