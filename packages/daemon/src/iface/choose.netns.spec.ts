/**
 * Interface choice against the real kernel (LinuxKernel) in a throw-away namespace holding two veth pairs,
 * both ends inside it: wa0/wa1 on 198.18.10.0/24 + 2001:2:a::/64 and
 * wb0/wb1 on 198.18.11.0/24 (IPv4 only; IPv6 link-local from the kernel). The default routes point at
 * 198.18.10.254 (wa1) and 2001:2:a::fe (on-link, held by nobody: IPv6 refuses a local gateway), inside the
 * namespace: nothing can leave it.
 */
import { ExecaRunner, LinuxKernel } from "@weft/kernel";
import { type TestNetns, createNetns } from "@weft/netns-lab";
import { describeReal } from "@weft/netns-lab/vitest";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type InterfaceChoiceOptions, chooseExternalInterface } from "./choose.js";

describeReal("chooseExternalInterface on the real kernel", () => {
  let ns: TestNetns;
  let kernel: LinuxKernel;
  const opts = (over: Partial<InterfaceChoiceOptions> = {}): InterfaceChoiceOptions => ({ iface: [], ifaceRegex: [], families: { v4: true, v6: false }, ...over });

  beforeAll(async () => {
    ns = await createNetns("wif");
    const ip = (...args: string[]) => ns.ip(args);
    await ip("link", "add", "wa0", "type", "veth", "peer", "name", "wa1");
    await ip("link", "add", "wb0", "type", "veth", "peer", "name", "wb1");
    await ip("link", "set", "wa0", "mtu", "1450");
    await ip("addr", "add", "198.18.10.1/24", "dev", "wa0");
    await ip("addr", "add", "198.18.10.254/24", "dev", "wa1");
    // nodad: usable at once (no tentative phase while the kernel runs duplicate address detection).
    await ip("addr", "add", "2001:2:a::1/64", "dev", "wa0", "nodad");
    await ip("addr", "add", "198.18.11.1/24", "dev", "wb0");
    await ip("addr", "add", "198.18.11.254/24", "dev", "wb1");
    for (const l of ["wa0", "wa1", "wb0", "wb1"]) await ip("link", "set", l, "up");
    await ip("route", "add", "default", "via", "198.18.10.254", "dev", "wa0");
    await ip("-6", "route", "add", "default", "via", "2001:2:a::fe", "dev", "wa0");
    kernel = new LinuxKernel({ runner: new ExecaRunner(), netns: ns.name });
  });
  afterAll(async () => {
    await ns?.destroy();
  });

  it("picks the default route's interface, with its index, MTU and address", async () => {
    const e = await chooseExternalInterface(kernel, opts());
    const link = JSON.parse((await ns.ip(["-j", "link", "show", "wa0"])).stdout) as Array<{ ifindex: number }>;
    expect(e.name).toBe("wa0");
    expect(e.index).toBe(link[0]!.ifindex);
    expect(e.mtu).toBe(1450);
    expect(e.ifaceAddr?.toString()).toBe("198.18.10.1");
    expect(e.extAddr?.toString()).toBe("198.18.10.1");
  });

  it("dual-stack: the IPv4 and IPv6 default routes share wa0", async () => {
    const e = await chooseExternalInterface(kernel, opts({ families: { v4: true, v6: true } }));
    expect([e.name, e.ifaceAddr?.toString(), e.ifaceV6Addr?.toString()]).toEqual(["wa0", "198.18.10.1", "2001:2:a::1"]);
  });

  it("--iface, --iface-regex and --iface-can-reach pick wb0", async () => {
    for (const o of [{ iface: ["wb0"] }, { iface: ["198.18.11.1"] }, { ifaceRegex: ["^198\\.18\\.11\\.1$"] }, { ifaceRegex: ["^wb0$"] }, { ifaceCanReach: "198.18.11.77" }]) {
      const e = await chooseExternalInterface(kernel, opts(o));
      expect([e.name, e.ifaceAddr?.toString()], JSON.stringify(o)).toEqual(["wb0", "198.18.11.1"]);
    }
  });

  it("an interface with only the kernel's link-local IPv6 address is refused for IPv6 (issue 15 #10), naming it", async () => {
    const err = await chooseExternalInterface(kernel, opts({ iface: ["wb0"], families: { v4: true, v6: true } })).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/interface wb0 has no global IPv6 address, only the link-local fe80:/);
  });

  it("never picks a deprecated address (preferred lifetime over): wb0's deprecated global IPv6 is passed over for its link-local", async () => {
    await ns.ip(["addr", "add", "2001:2:b::9/64", "dev", "wb0", "preferred_lft", "0", "nodad"]);
    try {
      const err = await chooseExternalInterface(kernel, opts({ iface: ["wb0"], families: { v4: true, v6: true } })).catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/only the link-local fe80:/);
    } finally {
      await ns.ip(["addr", "del", "2001:2:b::9/64", "dev", "wb0"]);
    }
  });

  it("can-reach a host behind the default route gives its interface", async () => {
    const e = await chooseExternalInterface(kernel, opts({ ifaceCanReach: "198.19.5.5" }));
    expect(e.name).toBe("wa0");
  });

  it("can-reach follows policy routing: a rule sending the target to another table picks that table's interface", async () => {
    // Main table: 198.19.7.0/24 via wa0's gateway. Table 107, chosen by a rule for 198.19.7.7 only: via wb0's.
    await ns.ip(["route", "add", "198.19.7.0/24", "via", "198.18.10.254", "dev", "wa0"]);
    await ns.ip(["route", "add", "198.19.7.0/24", "via", "198.18.11.254", "dev", "wb0", "table", "107"]);
    await ns.ip(["rule", "add", "to", "198.19.7.7", "table", "107"]);
    try {
      const viaMain = await chooseExternalInterface(kernel, opts({ ifaceCanReach: "198.19.7.8" }));
      expect([viaMain.name, viaMain.ifaceAddr?.toString()]).toEqual(["wa0", "198.18.10.1"]);
      const viaRule = await chooseExternalInterface(kernel, opts({ ifaceCanReach: "198.19.7.7" }));
      expect([viaRule.name, viaRule.ifaceAddr?.toString()]).toEqual(["wb0", "198.18.11.1"]);
    } finally {
      await ns.ip(["rule", "del", "to", "198.19.7.7", "table", "107"]);
      await ns.ip(["route", "flush", "table", "107"]);
      await ns.ip(["route", "del", "198.19.7.0/24"]);
    }
  });

  it("a missing interface is a CONFIG_INVALID line listing the real ones", async () => {
    const err = await chooseExternalInterface(kernel, opts({ iface: ["nosuch0"] })).catch((e: unknown) => e as Error & { code?: string });
    expect(err.code).toBe("CONFIG_INVALID");
    expect(err.message).toContain("--iface nosuch0: no such interface");
    // Kernel order (ifindex): veth creates the peer first.
    expect(err.message).toContain("interfaces: lo, wa1, wa0, wb1, wb0;");
  });
});
