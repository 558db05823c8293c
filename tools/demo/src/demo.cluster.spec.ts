/**
 * The README's main command, as an operator runs it: the built demo brings up a 3-node dual-stack cluster
 * (host-gw), prints the leases and both ping matrices, and removes everything it made.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { labRunner } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { expect, it } from "vitest";

const DEMO = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "demo.js");

describeReal(
  "npm run demo (the built demo script)",
  () => {
    it("brings up 3 nodes, every pod reaches every pod over IPv4 and IPv6, and leaves nothing behind", async () => {
      const r = await labRunner.run(process.execPath, [DEMO, "--backend", "host-gw", "--ipv6"], { reject: false, timeoutMs: 180_000 });
      expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stdout).toContain("Every pod reaches every other pod.");
      expect(r.stdout).not.toContain("FAIL");
      expect(r.stdout).toContain("Pod-to-pod ping matrix (IPv6");
      // One lease line per node, in Flannel's key format with both families.
      expect(r.stdout.match(/^ {2}198\.19\.\d+\.0-24&2001:2:0:f[0-9a-f]+::-64 +\{"PublicIP"/gm)).toHaveLength(3);
      expect(r.stdout).toContain("Done: namespaces, devices, etcd and files removed.");
      const names = [...r.stdout.matchAll(/^ {2}node \d+ +(\S+)/gm)].map((m) => m[1]!);
      expect(names).toHaveLength(3);
      const left = (await labRunner.run("ip", ["netns", "list"])).stdout;
      for (const n of names) expect(left).not.toContain(n);
    });
  },
  { tools: ["etcd", "curl", "ping"] },
);
