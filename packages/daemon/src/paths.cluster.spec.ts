/**
 * Issue 15 #2 with the real weftd: `--state-dir=/proc/x` or `--subnet-file=/proc/x/subnet.env` used to spin at
 * 100 % CPU in Node's recursive mkdir, ignoring SIGTERM, after the subnet-file case had already made weft.1 and
 * taken an etcd lease. Now weftd exits non-zero at once with one line and leaves nothing behind: no device, no
 * lease, no directory.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Lab, etcdHttp, etcdPut, startEtcd, type EtcdServer } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";

const weftd = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "main.js");
const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");

describeReal(
  "weftd refuses pseudo-filesystem paths (issue 15 #2)",
  () => {
    let lab: Lab;
    let etcd: EtcdServer;
    beforeAll(async () => {
      lab = await Lab.create({ nodes: 1, name: "wp" });
      etcd = await startEtcd({ listen: "unix" });
    }, 60_000);
    afterAll(async () => {
      await lab?.destroy();
      await etcd?.stop();
    });

    /** Keys under `prefix` in etcd (leases live under <prefix>/subnets/). */
    const keysUnder = async (prefix: string): Promise<number> => {
      const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
      const r = await etcdHttp(etcd.endpoint, "/v3/kv/range", { key: b64(prefix), range_end: b64(end), count_only: true });
      return Number((JSON.parse(r.body) as { count?: string }).count ?? 0);
    };

    let n = 0;
    for (const [name, paths, line] of [
      ["--state-dir=/proc/weft-x", (dir: string) => ["--state-dir", "/proc/weft-x", "--subnet-file", `${dir}/subnet.env`], /^weftd: --state-dir: "\/proc\/weft-x" is on \/proc/],
      ["--subnet-file=/proc/weft-x/subnet.env", (dir: string) => ["--state-dir", `${dir}/state`, "--subnet-file", "/proc/weft-x/subnet.env"], /^weftd: --subnet-file: "\/proc\/weft-x\/subnet.env" is on \/proc/],
    ] as const) {
      it(`${name}: exit 2 with one line; no weft device, no lease, no directory`, async () => {
        const prefix = `/weft-paths/${process.pid}-${n++}/network`;
        await etcdPut(etcd.endpoint, `${prefix}/config`, JSON.stringify({ Network: "198.19.0.0/16", Backend: { Type: "vxlan" } }));
        const dir = `/tmp/weft-paths-${process.pid}-${n}`;
        // The bound only detects the old hang (it spun forever); a refusal takes milliseconds.
        const r = await lab.nodes[0]!.netns.run(process.execPath, [weftd, "--etcd-endpoints", etcd.endpoint, "--etcd-prefix", prefix, ...paths(dir)], {
          reject: false,
          timeoutMs: 20_000,
        });
        expect(r.exitCode, r.stderr).toBe(2);
        const lines = r.stderr.trim().split("\n");
        expect(lines, r.stderr).toHaveLength(1);
        expect(lines[0]).toMatch(line);
        const links = await lab.nodes[0]!.netns.ip(["-o", "link", "show"]);
        expect(links.stdout).not.toMatch(/weft/);
        expect(await keysUnder(`${prefix}/subnets/`)).toBe(0);
        expect(existsSync(dir)).toBe(false);
        expect(existsSync("/proc/weft-x")).toBe(false);
      }, 30_000);
    }
  },
  { tools: ["etcd"] },
);
