/**
 * The XfrmPort contract on LinuxXfrm (`ip xfrm`) in a fresh network namespace per test. Policies run everywhere;
 * states need the kernel's ESP transform, which these dev machines lack (XFRM without esp4): there the state
 * cases are reported as "not run: kernel lacks ESP". Needs root and iproute2: fails under CI=true without them.
 */
import { ExecaRunner, LinuxXfrm, type ProcessRunner, ViciIpsec } from "@weft/kernel";
import { createNetns, realKernelStatus } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { describeXfrmPortContract } from "./xfrm-contract.js";

const host = new ExecaRunner();

function runnerIn(netns: string): ProcessRunner {
  return {
    run: (file, args, opts) => host.run("ip", ["netns", "exec", netns, file, ...args], opts),
    spawn: (file, args, opts) => host.spawn("ip", ["netns", "exec", netns, file, ...args], opts),
  };
}

const hex = (n: number) => `0x${n.toString(16)}`;

/** Whether this kernel can hold ESP states, asked once in a throw-away namespace (undefined without root: the tier fails). */
async function probeEsp(): Promise<string | undefined> {
  if (!realKernelStatus(["ip"]).ok) return undefined;
  const ns = await createNetns("wy");
  try {
    const esp = await new ViciIpsec(runnerIn(ns.name)).kernelEsp();
    return esp.available ? undefined : (esp.reason ?? "kernel lacks ESP");
  } finally {
    await ns.destroy();
  }
}
const statesUnsupported = await probeEsp();

describeReal(
  "LinuxXfrm in a network namespace",
  () => {
    describeXfrmPortContract("LinuxXfrm", async () => {
      const ns = await createNetns("wx");
      try {
        const runner = runnerIn(ns.name);
        return {
          port: new LinuxXfrm(runner),
          addPolicy: async (p) => {
            await ns.ip([
              "xfrm", "policy", "add", "src", p.src, "dst", p.dst, "dir", p.dir,
              ...(p.mark ? ["mark", hex(p.mark.value), "mask", hex(p.mark.mask)] : []),
              ...(p.ifId !== undefined ? ["if_id", hex(p.ifId)] : []),
              "tmpl", "src", p.tmplSrc, "dst", p.tmplDst, "proto", "esp", "reqid", String(p.reqid), "mode", "tunnel",
            ]);
          },
          addState: async (s) => {
            await ns.ip(["xfrm", "state", "add", "src", s.src, "dst", s.dst, "proto", "esp", "spi", hex(s.spi), "reqid", String(s.reqid), "mode", "tunnel", "enc", "ecb(cipher_null)", ""]);
          },
          cleanup: () => ns.destroy(),
        };
      } catch (err) {
        await ns.destroy();
        throw err;
      }
    }, statesUnsupported ? { statesUnsupported } : {});
  },
  { tools: ["ip"] },
);
