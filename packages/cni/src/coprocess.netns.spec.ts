/**
 * IpCoprocessRunner (@weft/kernel), which weftd's CNI server uses for the node side, against the real kernel:
 * the same ops through LinuxKernel give the same results with one warm `ip -batch` process as with a fresh
 * process per batch, including failed lines, a line that ends the ip process, and many batches at once.
 * (Here, not in packages/kernel: the lab kit depends on @weft/kernel.)
 */
import { IpCoprocessRunner, type KernelOp, LinuxKernel, SpawnRunner } from "@weft/kernel";
import { createNetns } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { expect, it } from "vitest";

const strip = (rs: Awaited<ReturnType<LinuxKernel["apply"]>>) => rs.map((r) => (r.ok ? "ok" : `${r.error.code}: ${r.error.message}`));

describeReal("IpCoprocessRunner on the real kernel", () => {
  it("gives LinuxKernel the results a fresh ip process gives, from one process, across failures and process-ending lines", async () => {
    const a = await createNetns("wcpa");
    const b = await createNetns("wcpb");
    const spawnRunner = new SpawnRunner();
    const co = new IpCoprocessRunner(spawnRunner, { netns: a.name });
    try {
      const warm = new LinuxKernel({ runner: co, netns: a.name });
      const fresh = new LinuxKernel({ runner: spawnRunner, netns: b.name });
      const batches: KernelOp[][] = [
        [
          { op: "link.add", link: { name: "wcbr0", kind: "bridge", mtu: 1450, up: true } },
          { op: "addr.replace", addr: { dev: "wcbr0", address: "198.19.40.1/24" } },
        ],
        // A failed line in the middle (the bridge exists), then one that ends ip (master missing), then more.
        [
          { op: "link.add", link: { name: "wcbr0", kind: "bridge" } },
          { op: "addr.add", addr: { dev: "wcbr0", address: "198.19.41.1/24" } },
          { op: "link.add", link: { name: "wcv0", kind: "veth", master: "nope0", veth: { peer: "wcv1" } } },
          { op: "addr.add", addr: { dev: "wcbr0", address: "198.19.42.1/24" } },
        ],
        [{ op: "route.add", route: { family: "v4", dst: "198.19.50.0/24", gateway: "198.19.40.2", dev: "wcbr0" } }],
        [{ op: "addr.del", addr: { dev: "wcbr0", address: "198.19.99.1/24" } }],
      ];
      let pid: number | undefined;
      for (const ops of batches) {
        const w = strip(await warm.apply(ops)).map((x) => x.replaceAll(a.name, "NS"));
        const f = strip(await fresh.apply(ops)).map((x) => x.replaceAll(b.name, "NS"));
        expect(w).toEqual(f);
        if (ops === batches[0]) pid = co.pid;
      }
      expect(strip(await warm.apply(batches[2]!))[0]).toMatch(/^KERNEL_EXISTS/);
      // The process-ending line cost one coprocess; the ones after it share the next.
      const now = co.pid;
      expect(pid).toBeDefined();
      expect(now).toBeDefined();
      // Many batches at once: serialised through the one coprocess, each with its own results.
      const many = await Promise.all(
        Array.from({ length: 20 }, (_, i) => warm.apply([{ op: "addr.add", addr: { dev: "wcbr0", address: `198.19.60.${i + 1}/32` } }, { op: "addr.add", addr: { dev: "wcbr0", address: `198.19.60.${i + 1}/32` } }])),
      );
      for (const r of many) expect(strip(r).map((x) => x.split(":")[0])).toEqual(["ok", "KERNEL_EXISTS"]);
      expect(co.pid).toBe(now);
      const addrs = (await warm.listAddresses("wcbr0")).map((x) => x.address);
      expect(addrs.filter((x) => x.startsWith("198.19.60."))).toHaveLength(20);
      expect(addrs).toEqual(expect.arrayContaining(["198.19.40.1/24", "198.19.41.1/24", "198.19.42.1/24"]));
    } finally {
      co.close();
      await a.destroy();
      await b.destroy();
    }
  });
});
