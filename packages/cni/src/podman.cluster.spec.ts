/**
 * The whole path a pod takes: podman (libcni, as CRI runtimes use it) runs a container on a `weft` network on
 * node 1 of a real Weft cluster (weftd per node, real etcd, vxlan), and the container reaches the pod on node 2.
 *
 * podman runs its CNI plugins in its own network namespace, and `ip netns exec` breaks podman (it remounts /sys
 * and hides the cgroup mounts), so podman is started with `nsenter --net=<node netns>` only: the plugin then
 * plumbs the container into the node namespace's `cni0`, exactly as on a real node. Nothing is created in the
 * root namespace.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { WeftCluster, labRunner } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";

const BUNDLE = fileURLToPath(new URL("../dist/weft-cni.cjs", import.meta.url));
const WEFTD = fileURLToPath(new URL("../../daemon/dist/main.js", import.meta.url));

describeReal(
  "weft-cni under podman on a Weft cluster",
  () => {
    let c: WeftCluster;
    let dir: string;
    beforeAll(async () => {
      c = await WeftCluster.start({ nodes: 2, weftd: WEFTD, backend: { Type: "vxlan" }, name: "wq" });
      dir = mkdtempSync(join(tmpdir(), "weft-podman-cluster-"));
    }, 120_000);
    afterAll(async () => {
      await c?.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it("a podman container on node 1 gets an address from node 1's lease and reaches the pod on node 2: through node 1's weftd, then with it stopped", async () => {
      const [a, b] = c.nodes as [(typeof c.nodes)[0], (typeof c.nodes)[0]];
      const rootfs = join(dir, "rootfs");
      mkdirSync(join(rootfs, "bin"), { recursive: true });
      cpSync("/bin/busybox", join(rootfs, "bin", "busybox"));
      for (const x of ["sh", "ip", "ping"]) symlinkSync("busybox", join(rootfs, "bin", x));
      const src = join(dir, "src.conflist");
      writeFileSync(
        src,
        JSON.stringify({
          cniVersion: "1.0.0",
          name: "weftpod",
          // weftd serves cni.sock next to its --subnet-file (cniSocketPath in packages/daemon).
          plugins: [{ type: "weft", bridge: "cni0", subnetFile: a.subnetFile, dataDir: join(dir, "weft"), ipam: { dataDir: join(dir, "ipam") }, agentSocket: join(dirname(a.subnetFile), "cni.sock") }],
        }),
      );
      const inst = await labRunner.run(
        process.execPath,
        [BUNDLE, "install", "--bin-dir", join(dir, "bin"), "--conf-dir", join(dir, "net.d"), "--conflist", src, "--conf-name", "50-weftpod.conflist", "--node", process.execPath],
        { reject: false },
      );
      expect(inst.exitCode, inst.stderr).toBe(0);
      // [engine] env reaches every podman process of this container, including the cleanup that runs CNI DEL
      // (conmon starts it with an environment of its own): the plugin's code cache stays in the test's directory.
      writeFileSync(
        join(dir, "containers.conf"),
        `[engine]\nenv = ["WEFT_CNI_CODE_CACHE_DIR=${join(dir, "code-cache")}"]\n[network]\ncni_plugin_dirs = ["${join(dir, "bin")}"]\n`,
      );
      const podman = () => labRunner.run(
        "nsenter",
        [
          `--net=${a.lab.netns.path}`,
          "podman", "--runtime", "runc", "--network-backend", "cni", "--network-config-dir", join(dir, "net.d"),
          "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000",
          "--network", "weftpod", "--rootfs", rootfs, "/bin/sh", "-c", `ip -4 addr show eth0; ping -c 3 -W 2 ${b.pod!.ip}`,
        ],
        { env: { CONTAINERS_CONF: join(dir, "containers.conf") }, reject: false, timeoutMs: 120_000 },
      );
      const check = async (r: Awaited<ReturnType<typeof podman>>) => {
        expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
        const subnet = c.subnetEnv(a).subnet!.network;
        const m = /inet (\d+\.\d+\.\d+\.\d+)\/24/.exec(r.stdout);
        expect(m && subnet.contains((await import("@weft/core")).IPAddress.parse(m[1]!))).toBe(true);
        expect(r.stdout).toContain("mtu 1450");
        expect(r.stdout).toMatch(/3 packets transmitted, 3 packets received/);
        // podman's CNI DEL after the container exited released the address.
        expect(readdirSync(join(dir, "ipam", "weftpod")).filter((f) => f.startsWith("198."))).toEqual([]);
      };
      // weftd up: its CNI server did the ADD and the DEL (no Node process per pod: no code cache), and says so.
      await check(await podman());
      expect(existsSync(join(dir, "code-cache"))).toBe(false);
      const metrics = (await c.health(a, "/metrics")).body;
      expect(metrics).toMatch(/weft_cni_request_duration_seconds_count\{command="ADD"\} 1\b/);
      expect(metrics).toMatch(/weft_cni_request_duration_seconds_count\{command="DEL"\} 1\b/);
      // weftd stopped (the datapath stays): the shim runs the Node plugin, which does the same.
      await c.stopAgent(a);
      await check(await podman());
      expect(readdirSync(join(dir, "code-cache")).map((f) => f.replace(/.*-/, "")).sort()).toEqual(["ADD.v8", "DEL.v8"]);
    });
  },
  { tools: ["etcd", "podman", "runc", "nsenter", "ping"] },
);
