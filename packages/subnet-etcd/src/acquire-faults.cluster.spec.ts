/**
 * Fault injection (issue 15): etcd killed (SIGKILL) while a node acquires its lease, at several moments of the
 * acquisition, and started again a moment later. Whatever the moment, the node ends with exactly one subnet key
 * for its public IP (no duplicate from a retried create, none lost), and a node that already had a lease keeps
 * that same subnet.
 */
import "reflect-metadata";
import { IPAddress, MemoryLogger, decodeLeaseAttrs } from "@weft/core";
import { type EtcdServer, startEtcd } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { Etcd3 } from "etcd3";
import { afterAll, beforeAll, expect, it } from "vitest";
import { EtcdSubnetManager } from "./manager.js";

const never = () => new AbortController().signal;

describeReal(
  "EtcdSubnetManager when etcd is killed during lease acquisition",
  () => {
    let etcd: EtcdServer;
    let admin: Etcd3;
    const managers: EtcdSubnetManager[] = [];
    beforeAll(async () => {
      etcd = await startEtcd({ listen: "loopback" });
      admin = new Etcd3({ hosts: etcd.endpoints });
    });
    afterAll(async () => {
      for (const m of managers) await m.close().catch(() => undefined);
      admin?.close();
      await etcd?.stop();
    });

    /** Subnet keys under `prefix` whose value carries `ip` as PublicIP. */
    async function keysFor(prefix: string, ip: string): Promise<string[]> {
      const all = await admin.getAll().prefix(`${prefix}/subnets/`).strings();
      return Object.entries(all)
        .filter(([, v]) => decodeLeaseAttrs(v).publicIP?.toString() === ip)
        .map(([k]) => k.slice(`${prefix}/subnets/`.length));
    }

    /** acquireLease with etcd killed `killAfterMs` after it starts and restarted 500 ms later. */
    async function acquireThroughKill(prefix: string, ip: string, killAfterMs: number) {
      const m = new EtcdSubnetManager({ endpoints: etcd.endpoints, prefix, leaseTtlSeconds: 600, requestTimeoutMs: 2_000 }, new MemoryLogger());
      managers.push(m);
      await m.getNetworkConfig(never());
      const acquiring = m.acquireLease({ publicIP: IPAddress.parse(ip), backendType: "vxlan" }, never());
      acquiring.catch(() => undefined);
      await new Promise((r) => setTimeout(r, killAfterMs));
      await etcd.kill();
      await new Promise((r) => setTimeout(r, 500));
      await etcd.restart();
      const lease = await Promise.race([acquiring, new Promise<never>((_, rej) => setTimeout(() => rej(new Error("acquireLease did not finish 20 s after etcd came back")), 20_000))]);
      await m.close();
      return lease;
    }

    it("a new node ends with exactly one lease, whenever etcd died", async () => {
      for (const [i, killAfterMs] of [0, 5, 15, 40, 100].entries()) {
        const prefix = `/weft-faults/new${i}`;
        await admin.put(`${prefix}/config`).value('{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}}');
        // Other nodes' leases, so the acquisition lists and picks among taken subnets.
        for (const n of [1, 2, 3]) await admin.put(`${prefix}/subnets/198.19.${n}.0-24`).value(`{"PublicIP":"198.18.9.${n}","BackendType":"vxlan"}`);
        const lease = await acquireThroughKill(prefix, "198.18.0.1", killAfterMs);
        const keys = await keysFor(prefix, "198.18.0.1");
        expect(keys, `killed ${killAfterMs} ms into the acquisition`).toEqual([`${lease.subnet!.ip}-24`]);
      }
    }, 120_000);

    it("a node that had a lease keeps exactly that one, whenever etcd died", async () => {
      for (const [i, killAfterMs] of [0, 5, 15, 40].entries()) {
        const prefix = `/weft-faults/old${i}`;
        await admin.put(`${prefix}/config`).value('{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan"}}');
        const first = new EtcdSubnetManager({ endpoints: etcd.endpoints, prefix, leaseTtlSeconds: 600 }, new MemoryLogger());
        managers.push(first);
        const before = await first.acquireLease({ publicIP: IPAddress.parse("198.18.0.2"), backendType: "vxlan" }, never());
        await first.close();
        const after = await acquireThroughKill(prefix, "198.18.0.2", killAfterMs);
        expect(after.subnet?.toString(), `killed ${killAfterMs} ms into the re-acquisition`).toBe(before.subnet?.toString());
        expect(await keysFor(prefix, "198.18.0.2")).toEqual([`${before.subnet!.ip}-24`]);
      }
    }, 120_000);
  },
  { tools: ["etcd"] },
);
