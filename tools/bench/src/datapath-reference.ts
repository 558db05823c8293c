/**
 * The kernel's own figure for the same topology, with no Weft involved: two lab nodes, a pod on each node's
 * bridge, and vxlan (or host-gw routes) configured by hand exactly as linux-lab.md §2–§3 do it. The datapath
 * benchmark puts it beside Weft's numbers, so a gap to the underlay can be told apart from a cost Weft adds.
 */
import { Lab } from "@weft/netns-lab";

export async function handBuiltLab(kind: "vxlan" | "host-gw"): Promise<{ lab: Lab; from: Lab["pods"][number]; to: Lab["pods"][number]; mtu: number }> {
  const lab = await Lab.create({ nodes: 2, name: "wh" });
  try {
    const mtu = kind === "vxlan" ? 1450 : 1500;
    const pods = [];
    for (const n of lab.nodes) {
      pods.push(await lab.addPod(n, { bridge: "cni0", ip: `198.19.${n.index}.10/24`, gateway: `198.19.${n.index}.1`, mtu }));
    }
    const macs: string[] = [];
    if (kind === "vxlan") {
      for (const n of lab.nodes) {
        await n.netns.ip(["-batch", "-"], {
          input: [
            `link add hvx0 type vxlan id 1 local ${n.underlayIp} dev eth0 dstport 8472 nolearning`,
            "link set hvx0 mtu 1450",
            `addr add 198.19.${n.index}.0/32 dev hvx0`,
            "link set hvx0 up",
            "",
          ].join("\n"),
        });
        macs.push(JSON.parse((await n.netns.ip(["-j", "link", "show", "hvx0"])).stdout)[0].address as string);
      }
    }
    for (const n of lab.nodes) {
      const lines: string[] = [];
      for (const p of lab.nodes) {
        if (p === n) continue;
        if (kind === "vxlan") {
          lines.push(
            `neigh replace 198.19.${p.index}.0 lladdr ${macs[p.index - 1]} dev hvx0 nud permanent`,
            `route replace 198.19.${p.index}.0/24 via 198.19.${p.index}.0 dev hvx0 onlink`,
          );
        } else lines.push(`route replace 198.19.${p.index}.0/24 via ${p.underlayIp} dev eth0`);
      }
      await n.netns.ip(["-batch", "-"], { input: lines.join("\n") + "\n" });
      if (kind === "vxlan") {
        for (const p of lab.nodes) if (p !== n) await n.netns.run("bridge", ["fdb", "append", macs[p.index - 1]!, "dev", "hvx0", "dst", p.underlayIp, "self", "permanent"]);
      }
    }
    return { lab, from: pods[0]!, to: pods[1]!, mtu };
  } catch (err) {
    await lab.destroy();
    throw err;
  }
}
