#!/usr/bin/env node
/**
 * `npm run demo [-- --backend vxlan|host-gw] [--nodes 3] [--ipv6] [--keep]`
 *
 * Brings up a local Weft cluster in network namespaces on this machine — a real etcd, one weftd per node, one
 * pod per node — prints the per-node leases and a pod-to-pod connectivity matrix, and tears everything down
 * (unless --keep, which leaves it running until Ctrl-C). Only 198.18.0.0/15 and 2001:2::/48 are used, inside
 * namespaces this run created.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { WeftCluster } from "@weft/netns-lab";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

interface DemoArgs {
  backend: string;
  nodes: number;
  ipv6: boolean;
  keep: boolean;
}

function parseArgs(argv: string[]): DemoArgs {
  const a: DemoArgs = { backend: "vxlan", nodes: 3, ipv6: false, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const next = () => {
      const v = argv[++i];
      if (v === undefined) fail(`${k} needs a value`);
      return v!;
    };
    if (k === "--backend") a.backend = next();
    else if (k.startsWith("--backend=")) a.backend = k.slice(10);
    else if (k === "--nodes") a.nodes = Number(next());
    else if (k === "--ipv6") a.ipv6 = true;
    else if (k === "--keep") a.keep = true;
    else if (k === "--help") {
      console.log("usage: npm run demo -- [--backend vxlan|host-gw|wireguard] [--nodes N] [--ipv6] [--keep]");
      process.exit(0);
    } else fail(`unknown argument ${k}: see --help`);
  }
  if (!["vxlan", "host-gw", "wireguard"].includes(a.backend)) fail(`--backend ${a.backend}: the demo runs vxlan, host-gw or wireguard`);
  if (!Number.isInteger(a.nodes) || a.nodes < 2 || a.nodes > 20) fail(`--nodes ${a.nodes}: must be between 2 and 20`);
  return a;
}

function fail(msg: string): never {
  console.error(`demo: ${msg}`);
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2));
if (process.getuid?.() !== 0) fail("needs root (network namespaces): run as root");

console.log(`Starting a ${args.nodes}-node Weft cluster (backend ${args.backend}${args.ipv6 ? ", dual-stack" : ""}) with a real etcd ...`);
const t0 = performance.now();
const cluster = await WeftCluster.start({
  nodes: args.nodes,
  weftd: join(root, "packages", "daemon", "dist", "main.js"),
  backend: { Type: args.backend },
  ...(args.ipv6 ? { ipv6Network: "2001:2:0:f000::/52" } : {}),
  name: "wd",
  // Several wireguard nodes on one machine share /var/run/wireguard: each agent gets a private one (ADR 0008).
  ...(args.backend === "wireguard" ? { env: { WEFT_WIREGUARD_PRIVATE_SOCKET_DIR: "1" } } : {}),
});
let exitCode = 0;
try {
  console.log(`Cluster up in ${((performance.now() - t0) / 1000).toFixed(1)} s: every agent reports /readyz 200.\n`);
  console.log("Leases in etcd (" + cluster.prefix + "/subnets/):");
  for (const [k, v] of Object.entries(await cluster.leases())) console.log(`  ${k.padEnd(34)} ${v}`);
  console.log("\nNodes:");
  for (const n of cluster.nodes) {
    const env = cluster.subnetEnv(n);
    console.log(
      `  node ${n.lab.index}  ${n.lab.netns.name.padEnd(14)} underlay ${n.lab.underlayIp.padEnd(15)} subnet ${String(env.subnet?.network ?? "-").padEnd(16)}` +
        `${env.ipv6Subnet ? ` ${env.ipv6Subnet.network}` : ""} MTU ${env.mtu}  pod ${n.pod?.ip}${n.pod?.ipv6 ? ` ${n.pod.ipv6}` : ""}`,
    );
  }
  for (const family of args.ipv6 ? (["v4", "v6"] as const) : (["v4"] as const)) {
    console.log(`\nPod-to-pod ping matrix (${family === "v4" ? "IPv4" : "IPv6"}; rows ping columns):`);
    const pods = cluster.nodes.map((n) => n.pod!);
    const header = "            " + pods.map((_, j) => `pod${j + 1}`.padEnd(7)).join("");
    console.log(header);
    for (let i = 0; i < pods.length; i++) {
      const cells: string[] = [];
      for (let j = 0; j < pods.length; j++) {
        if (i === j) {
          cells.push("-".padEnd(7));
          continue;
        }
        const to = (family === "v6" ? pods[j]!.ipv6! : pods[j]!.ip).split("/")[0]!;
        // Up to 3 echo requests: the first one of a new path may go to neighbour discovery.
        const ok = await cluster.lab.ping(pods[i]!.netns, to, { count: 3, timeoutS: 2 });
        if (!ok) exitCode = 1;
        cells.push((ok ? "ok" : "FAIL").padEnd(7));
      }
      console.log(`  pod${i + 1}      ${cells.join("")}`);
    }
  }
  console.log(exitCode === 0 ? "\nEvery pod reaches every other pod." : "\nSome pods cannot reach each other: see the matrix above.");
  if (args.keep) {
    console.log(`\n--keep: the cluster stays up. Node namespaces: ${cluster.nodes.map((n) => n.lab.netns.name).join(", ")}.`);
    console.log(`Try: ip netns exec ${cluster.nodes[0]!.lab.netns.name} ip route; agent logs in ${cluster.dir}. Ctrl-C tears it down.`);
    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
  }
} finally {
  console.log("\nTearing down ...");
  await cluster.destroy();
  console.log("Done: namespaces, devices, etcd and files removed.");
}
process.exit(exitCode);
