/**
 * A real CNI client: podman 4 (libcni, as CRI runtimes use it) runs a container on a network whose conflist
 * names the `weft` plugin, installed by `weft-cni install` into a temporary CNI bin dir that a temporary
 * containers.conf points at (linux-lab.md §11).
 *
 * podman runs plugins in ITS OWN (the root) network namespace, so this test's bridge lives there: it gets a
 * unique name and a 198.19.0.0/16 subnet, and is deleted afterwards; net.ipv4.ip_forward, which the plugin
 * turns on for its gateway, is restored.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { labRunner, registerCleanup, uniqueName } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { expect, it } from "vitest";

const BUNDLE = fileURLToPath(new URL("../dist/weft-cni.cjs", import.meta.url));
const BUSYBOX = "/bin/busybox";

describeReal(
  "weft-cni under podman (libcni)",
  () => {
    it("podman runs a container on a weft network: eth0 gets an address from the node subnet, DEL releases it", async () => {
      if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run \`npm run build\` in packages/cni first`);
      const dir = mkdtempSync(join(tmpdir(), "weft-podman-"));
      const bridge = uniqueName("wpb");
      const net = uniqueName("wpnet");
      const third = 100 + Math.floor(Math.random() * 100);
      const forward = readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim();
      const teardown = async () => {
        await labRunner.run("ip", ["link", "del", bridge], { reject: false });
        writeFileSync("/proc/sys/net/ipv4/ip_forward", forward);
        rmSync(dir, { recursive: true, force: true });
      };
      const unregister = registerCleanup(teardown, () => {
        labRunner.runSync("ip", ["link", "del", bridge]);
        writeFileSync("/proc/sys/net/ipv4/ip_forward", forward);
      });
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
            plugins: [{ type: "weft", bridge, subnetFile: join(dir, "subnet.env"), dataDir: join(dir, "weft"), ipam: { dataDir: join(dir, "ipam") } }],
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

        const r = await labRunner.run(
          "podman",
          [
            "--runtime", "runc", "--network-backend", "cni", "--network-config-dir", join(dir, "net.d"),
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
        // The installed `weft` (extensionless, run through its shebang) kept its code caches where podman's
        // environment said (libcni passes the runtime's environment on to plugins), for ADD and for DEL.
        expect(readdirSync(join(dir, "code-cache")).map((f) => f.replace(/.*-/, "")).sort()).toEqual(["ADD.v8", "DEL.v8"]);
        expect((await labRunner.run("ip", ["-br", "addr", "show", "dev", bridge])).stdout).toContain(`198.19.${third}.1/24`);
      } finally {
        await teardown();
        unregister();
      }
    });
  },
  { tools: ["podman", "runc", BUSYBOX, "nsenter"] },
);
