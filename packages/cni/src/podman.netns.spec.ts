/**
 * A real CNI client: podman 4 (libcni, as CRI runtimes use it) runs a container on a network whose conflist
 * names the `weft` plugin, installed by `weft-cni install` into a temporary CNI bin dir that a temporary
 * containers.conf points at (linux-lab.md §11).
 *
 * podman runs its CNI plugins in its own network namespace, so it is started with `nsenter --net=<a namespace
 * this test created>` (`ip netns exec` would remount /sys and hide the cgroup mounts podman needs): the bridge,
 * the veth and the ip_forward the plugin turns on all live in that namespace, which goes at the end. Nothing is
 * created in the root namespace.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createNetns, labRunner, registerCleanup, uniqueName } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { expect, it } from "vitest";
import { type LabCniServer, startLabCniServer, stopLabCniServer } from "./lab-server.spec-helper.js";

const BUNDLE = fileURLToPath(new URL("../dist/weft-cni.cjs", import.meta.url));
const BUSYBOX = "/bin/busybox";

describeReal(
  "weft-cni under podman (libcni)",
  () => {
    // `weft` is the shim: once with weftd's CNI server up in the node namespace (it does the work), once with it
    // down (the shim runs the Node plugin).
    it.each(["served by weftd's CNI server", "weftd down: the Node fallback"])("podman runs a container on a weft network: eth0 gets an address from the node subnet, DEL releases it (%s)", async (how) => {
      const served = how.startsWith("served");
      if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run \`npm run build\` in packages/cni first`);
      const dir = mkdtempSync(join(tmpdir(), "weft-podman-"));
      const node = await createNetns("wpn");
      let server: LabCniServer | undefined;
      const bridge = uniqueName("wpb");
      const net = uniqueName("wpnet");
      const third = 100 + Math.floor(Math.random() * 100);
      const teardown = async () => {
        if (server) await stopLabCniServer(server);
        await node.destroy();
        rmSync(dir, { recursive: true, force: true });
      };
      const unregister = registerCleanup(teardown, () => rmSync(dir, { recursive: true, force: true }));
      try {
        const rootfs = join(dir, "rootfs");
        mkdirSync(join(rootfs, "bin"), { recursive: true });
        cpSync(BUSYBOX, join(rootfs, "bin", "busybox"));
        for (const c of ["sh", "ip", "cat"]) symlinkSync("busybox", join(rootfs, "bin", c));
        writeFileSync(join(dir, "subnet.env"), `FLANNEL_NETWORK=198.19.0.0/16\nFLANNEL_SUBNET=198.19.${third}.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n`);
        const src = join(dir, "src.conflist");
        writeFileSync(
          src,
          JSON.stringify({
            cniVersion: "1.0.0",
            name: net,
            plugins: [{ type: "weft", bridge, subnetFile: join(dir, "subnet.env"), dataDir: join(dir, "weft"), ipam: { dataDir: join(dir, "ipam") }, agentSocket: join(dir, "cni.sock") }],
          }),
        );
        // The install mode of the same executable puts the plugin and the conflist in place.
        const inst = await labRunner.run(
          process.execPath,
          [BUNDLE, "install", "--bin-dir", join(dir, "bin"), "--conf-dir", join(dir, "net.d"), "--conflist", src, "--conf-name", `50-${net}.conflist`, "--node", process.execPath],
          { reject: false },
        );
        expect(inst.exitCode, inst.stderr).toBe(0);
        // [engine] env reaches every podman process of this container, including the cleanup that runs CNI DEL
        // (conmon starts it with an environment of its own): the plugin's code cache stays in the test's directory.
        writeFileSync(
          join(dir, "containers.conf"),
          `[engine]\nenv = ["WEFT_CNI_CODE_CACHE_DIR=${join(dir, "code-cache")}"]\n[network]\ncni_plugin_dirs = ["${join(dir, "bin")}"]\n`,
        );

        if (served) server = await startLabCniServer(node.name, join(dir, "cni.sock"));
        const r = await labRunner.run(
          "nsenter",
          [
            `--net=${node.path}`,
            "podman", "--runtime", "runc", "--network-backend", "cni", "--network-config-dir", join(dir, "net.d"),
            "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000",
            "--network", net, "--rootfs", rootfs, "/bin/ip", "addr",
          ],
          { env: { CONTAINERS_CONF: join(dir, "containers.conf") }, reject: false, timeoutMs: 120_000 },
        );
        expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
        expect(r.stdout).toContain(`inet 198.19.${third}.2/24`);
        expect(r.stdout).toContain("mtu 1450");
        // podman's CNI DEL after the container exited released the reservation.
        expect(readdirSync(join(dir, "ipam", net)).filter((f) => f.startsWith("198."))).toEqual([]);
        // Down: the installed fallback `weft-cni` (run by the shim through its shebang) kept its code caches where
        // podman's environment said (libcni passes the runtime's environment on to plugins), for ADD and for DEL.
        // Served, no Node process ran per pod: no cache at all.
        if (served) expect(existsSync(join(dir, "code-cache"))).toBe(false);
        else expect(readdirSync(join(dir, "code-cache")).map((f) => f.replace(/.*-/, "")).sort()).toEqual(["ADD.v8", "DEL.v8"]);
        // The bridge (the pods' gateway) is in the test's namespace, with ip_forward on there; the root one has no such link.
        expect((await node.ip(["-br", "addr", "show", "dev", bridge])).stdout).toContain(`198.19.${third}.1/24`);
        expect((await node.run("cat", ["/proc/sys/net/ipv4/ip_forward"])).stdout.trim()).toBe("1");
        expect((await labRunner.run("ip", ["link", "show", bridge], { reject: false })).exitCode).not.toBe(0);
      } finally {
        await teardown();
        unregister();
      }
    });
  },
  { tools: ["podman", "runc", BUSYBOX, "nsenter"] },
);
