import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExecaRunner } from "@weft/kernel";
import { afterAll, describe, expect, it } from "vitest";
import { CniError } from "../errors.js";
import { HostLocalAllocator } from "./allocator.js";
import { FileLock } from "./lock.js";
import { candidates, makeRange } from "./range.js";
import { HostLocalStore } from "./store.js";

const root = mkdtempSync(join(tmpdir(), "weft-ipam-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
function fresh(subnets: string[] = ["198.19.1.0/24"], opts: { gateway?: string; rangeEnd?: string } = {}) {
  const dataDir = join(root, `d${n++}`);
  const store = new HostLocalStore(dataDir, "cbr0");
  const sets = subnets.map((s) => [makeRange({ subnet: s, ...opts })]);
  return { dataDir, dir: join(dataDir, "cbr0"), store, alloc: new HostLocalAllocator(store, sets, { timeoutMs: 5000 }) };
}
const ips = (a: { ip: { toString(): string } }[]) => a.map((x) => x.ip.toString());

describe("host-local compatible IPAM", () => {
  it("writes host-local's layout: <ip> = id CRLF ifname, last_reserved_ip.<set>, lock", async () => {
    const { alloc, dir } = fresh(["198.19.1.0/24", "2001:2:0:1::/64"]);
    expect(ips(await alloc.allocate("cid-1", "eth0"))).toEqual(["198.19.1.2", "2001:2:0:1::2"]);
    expect(readFileSync(join(dir, "198.19.1.2"), "utf8")).toBe("cid-1\r\neth0");
    expect(readFileSync(join(dir, "2001:2:0:1::2"), "utf8")).toBe("cid-1\r\neth0");
    expect(readFileSync(join(dir, "last_reserved_ip.0"), "utf8")).toBe("198.19.1.2");
    expect(readFileSync(join(dir, "last_reserved_ip.1"), "utf8")).toBe("2001:2:0:1::2");
    expect(existsSync(join(dir, "lock"))).toBe(true);
    expect(existsSync(join(dir, "weft.lock"))).toBe(false); // released
  });

  it("allocates round-robin: a released address is not reused until the range wraps", async () => {
    const { alloc } = fresh();
    expect(ips(await alloc.allocate("a", "eth0"))).toEqual(["198.19.1.2"]);
    expect(ips(await alloc.allocate("b", "eth0"))).toEqual(["198.19.1.3"]);
    expect((await alloc.release("a", "eth0")).map(String)).toEqual(["198.19.1.2"]);
    expect(ips(await alloc.allocate("c", "eth0"))).toEqual(["198.19.1.4"]);
  });

  it("never hands out the gateway (an explicit one in the middle of the range, too)", async () => {
    const { alloc } = fresh(["198.19.1.0/29"], { gateway: "198.19.1.3" });
    const got: string[] = [];
    for (const id of ["a", "b", "c", "d", "e"]) got.push(...ips(await alloc.allocate(id, "eth0")));
    // /29: .1-.6 usable (no .0, no broadcast .7), gateway .3 skipped
    expect(got).toEqual(["198.19.1.1", "198.19.1.2", "198.19.1.4", "198.19.1.5", "198.19.1.6"]);
  });

  it("reports exhaustion with the range and the directory, and leaves nothing half-allocated", async () => {
    const { alloc, dir } = fresh(["198.19.1.0/30", "2001:2:0:1::/126"]);
    await alloc.allocate("a", "eth0"); // .2 and ::2 (.1/::1 are gateways; /30 has .1-.2; /126 has ::1-::3)
    const err = (await alloc.allocate("b", "eth0").catch((e: unknown) => e)) as CniError;
    expect(err).toBeInstanceOf(CniError);
    expect(err.message).toMatch(/no IP addresses available in range set 198\.19\.1\.1-198\.19\.1\.2/);
    expect(err.message).toContain(dir);
    expect(readdirSync(dir).filter((f) => f.includes(":") && !f.startsWith("last"))).toEqual(["2001:2:0:1::2"]);
  });

  it("continues after last_reserved_ip written by another allocator, and tries the last address last", () => {
    const set = [makeRange({ subnet: "198.19.1.0/29" })];
    const order = [...candidates(set, makeRange({ subnet: "198.19.1.0/29", rangeStart: "198.19.1.4" }).rangeStart)].map(String);
    expect(order).toEqual(["198.19.1.5", "198.19.1.6", "198.19.1.2", "198.19.1.3", "198.19.1.4"]);
  });

  it("gives a container that already holds an address the same one (a retried ADD), not a second", async () => {
    const { alloc } = fresh();
    const first = ips(await alloc.allocate("a", "eth0"));
    const again = await alloc.allocate("a", "eth0");
    expect(ips(again)).toEqual(first);
    // Marked as not reserved by this call: the retried ADD's rollback must leave it to the live pod.
    expect(again.map((a) => a.fresh)).toEqual([false]);
    expect(await alloc.releaseAddresses(again.filter((a) => a.fresh).map((a) => a.ip))).toEqual([]);
    expect(ips(await alloc.allocate("a", "eth0"))).toEqual(first);
    expect(ips(await alloc.allocate("a", "eth1"))).not.toEqual(first);
  });

  it("GC releases what no valid attachment claims, keeps legacy id-only files of valid containers", async () => {
    const { alloc, dir } = fresh();
    await alloc.allocate("keep", "eth0");
    await alloc.allocate("gone", "eth0");
    await alloc.allocate("keep", "eth1");
    writeFileSync(join(dir, "198.19.1.100"), "keep"); // written by an old host-local
    writeFileSync(join(dir, "198.19.1.101"), "old-gone");
    const removed = await alloc.gc([{ containerID: "keep", ifname: "eth0" }]);
    expect(removed.map((r) => `${r.ip} ${r.containerID}/${r.ifname ?? ""}`).sort()).toEqual([
      "198.19.1.101 old-gone/",
      "198.19.1.3 gone/eth0",
      "198.19.1.4 keep/eth1",
    ]);
    expect(readdirSync(dir).sort()).toEqual(["198.19.1.100", "198.19.1.2", "last_reserved_ip.0", "lock"]);
  });

  it("50 concurrent allocators in one process get 50 distinct addresses", async () => {
    const { dataDir } = fresh();
    const sets = [[makeRange({ subnet: "198.19.1.0/24" })]];
    // One allocator (and one lock handle) per ADD, as 50 plugin processes would have.
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => new HostLocalAllocator(new HostLocalStore(dataDir, "cbr0"), sets, { timeoutMs: 20_000 }).allocate(`c${i}`, "eth0")),
    );
    const got = results.flatMap(ips);
    expect(new Set(got).size).toBe(50);
    expect(readdirSync(join(dataDir, "cbr0")).filter((f) => /^\d/.test(f))).toHaveLength(50);
  });
});

describe("IPAM lock", () => {
  it("breaks a lock left by a dead process", async () => {
    const dir = join(root, "lk1");
    mkdirSync(dir);
    const path = join(dir, "weft.lock");
    writeFileSync(path, "999999999 1 deadbeef\n"); // no such pid
    const lock = new FileLock(path);
    await lock.acquire({ timeoutMs: 2000 });
    expect(readFileSync(path, "utf8")).toContain(`${process.pid} `);
    await lock.release();
    expect(existsSync(path)).toBe(false);
    expect(readdirSync(dir)).toEqual([]); // no stale leftovers
  });

  it("waits for a live holder and gives up with code 11 naming the holder", async () => {
    const dir = join(root, "lk2");
    mkdirSync(dir);
    const path = join(dir, "weft.lock");
    const holder = new FileLock(path);
    await holder.acquire();
    const err = (await new FileLock(path).acquire({ timeoutMs: 150 }).catch((e: unknown) => e)) as CniError;
    expect(err.code).toBe(11);
    expect(err.message).toContain(`held by pid ${process.pid}`);
    await holder.release();
    const next = new FileLock(path);
    await next.acquire({ timeoutMs: 1000 });
    await next.release();
  });

  it("breaks an ownerless lock file only once it is older than the grace period", async () => {
    const dir = join(root, "lk4");
    mkdirSync(dir);
    const path = join(dir, "weft.lock");
    writeFileSync(path, "");
    const err = (await new FileLock(path).acquire({ timeoutMs: 100 }).catch((e: unknown) => e)) as CniError;
    expect(err.code).toBe(11); // fresh and empty: its creator may still be writing it
    const old = (Date.now() - 60_000) / 1000;
    utimesSync(path, old, old);
    const lock = new FileLock(path);
    await lock.acquire({ timeoutMs: 1000 });
    await lock.release();
  });

  it("treats a PID reused by another process (different start time) as stale", async () => {
    const dir = join(root, "lk3");
    mkdirSync(dir);
    const path = join(dir, "weft.lock");
    writeFileSync(path, `${process.pid} 1 cafe\n`); // our pid, but not our start time
    const lock = new FileLock(path);
    await lock.acquire({ timeoutMs: 1000 });
    await lock.release();
  });
});

const HOST_LOCAL = "/usr/lib/cni/host-local";
// Runs wherever the reference plugin is installed; under CI=true a missing plugin fails instead of skipping.
describe.skipIf(!existsSync(HOST_LOCAL) && process.env.CI !== "true")("interoperates with the reference host-local on one directory", () => {
  const runner = new ExecaRunner();
  const hostLocal = (cmd: string, id: string, dataDir: string) =>
    runner.run(HOST_LOCAL, [], {
      env: { CNI_COMMAND: cmd, CNI_CONTAINERID: id, CNI_NETNS: "/x", CNI_IFNAME: "eth0", CNI_PATH: "/usr/lib/cni" },
      input: JSON.stringify({ cniVersion: "1.0.0", name: "cbr0", type: "x", ipam: { type: "host-local", ranges: [[{ subnet: "198.19.1.0/24" }]], dataDir } }),
      reject: false,
    });

  it("continues host-local's round robin, and host-local releases weft's reservation", async () => {
    const { alloc, dataDir, dir } = fresh();
    const r = await hostLocal("ADD", "hl-1", dataDir);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout).ips[0].address).toBe("198.19.1.2/24");
    expect(ips(await alloc.allocate("weft-1", "eth0"))).toEqual(["198.19.1.3"]);
    const r2 = await hostLocal("ADD", "hl-2", dataDir);
    expect(JSON.parse(r2.stdout).ips[0].address).toBe("198.19.1.4/24");
    expect((await hostLocal("DEL", "weft-1", dataDir)).exitCode).toBe(0);
    expect(existsSync(join(dir, "198.19.1.3"))).toBe(false);
    expect((await alloc.release("hl-2", "eth0")).map(String)).toEqual(["198.19.1.4"]);
  });
});
