/**
 * Kernel mode's XFRM leftovers on the fake kernel, fake charon and fake XFRM tables: states and policies with
 * Weft's reqids that charon does not hold are deleted at start, on the periodic pass and at teardown; charon's
 * live ones and everything without a Weft reqid stay; libipsec mode touches nothing. The fake charon does not
 * install XFRM objects itself: each test puts in what a real charon (alive, or killed with -9) would have left,
 * and asserts on the tables afterwards.
 */
import type { XfrmPolicy, XfrmState } from "@weft/kernel";
import type { FakeXfrm } from "@weft/kernel-testing";
import { orderKinds } from "@weft/reconcile";
import { describe, expect, it } from "vitest";
import { FakeCharonHost, charonSocketOf, useFakeCharonNodes } from "./fake-charon.spec-helper.js";
import ipsec, { CHARON_KIND, CONN_KIND, ConnReconciler, CharonReconciler, type IpsecBackend, SecretReconciler, XFRM_KIND, XfrmReconciler, isWeftReqid, reqidFor } from "./index.js";

const { node } = useFakeCharonNodes();
const socketOf = charonSocketOf;
const R2 = reqidFor("198.19.2.0/24");
/** A peer that is gone (its lease removed while charon was dead). */
const R9 = reqidFor("198.19.9.0/24");

/** The states and policies a kernel-mode charon on node 1 installs for its SA with node 2 (SPIs as charon reports them). */
function installSa(x: FakeXfrm, reqid: number, spiIn: number, spiOut: number, peer = 2): void {
  x.addState({ src: `198.18.0.${peer}`, dst: "198.18.0.1", proto: "esp", spi: spiIn, reqid, mode: "tunnel" });
  x.addState({ src: "198.18.0.1", dst: `198.18.0.${peer}`, proto: "esp", spi: spiOut, reqid, mode: "tunnel" });
  x.addPolicy({ src: "198.19.1.0/24", dst: `198.19.${peer}.0/24`, dir: "out", reqids: [reqid] });
  x.addPolicy({ src: `198.19.${peer}.0/24`, dst: "198.19.1.0/24", dir: "in", reqids: [reqid] });
  x.addPolicy({ src: `198.19.${peer}.0/24`, dst: "198.19.1.0/24", dir: "fwd", reqids: [reqid] });
}

/** Someone else's IPsec on the node (another IKE daemon: small reqids). */
function installForeign(x: FakeXfrm): void {
  x.addState({ src: "198.18.0.1", dst: "198.18.0.50", proto: "esp", spi: 0x1234, reqid: 3, mode: "tunnel" });
  x.addPolicy({ src: "198.19.1.0/24", dst: "198.19.50.0/24", dir: "out", reqids: [3] });
  x.addPolicy({ src: "198.19.1.0/24", dst: "198.19.51.0/24", dir: "out", reqids: [3, R2] });
}

const spis = (x: FakeXfrm) => x.states.map((s: XfrmState) => s.spi).sort((a, b) => a - b);
const policies = (x: FakeXfrm) => x.policies.map((p: XfrmPolicy) => `${p.dir} ${p.dst} ${p.reqids.join(",")}`).sort();

describe("ipsec kernel mode: XFRM leftovers", () => {
  it("Weft's reqids: tag 0x57 in the top byte, the peer subnet's number below; nothing else is Weft's", () => {
    expect(R2).toBe(0x57c61302);
    expect(reqidFor("10.244.7.0/24")).toBe(0x570af407);
    expect(isWeftReqid(R2)).toBe(true);
    expect([1, 3, 16384, 0x56ffffff, 0x58000000].some(isWeftReqid)).toBe(false);
    const h = {} as never;
    const { order } = orderKinds([{ kind: "routes" }, new ConnReconciler(h), new SecretReconciler(h), new XfrmReconciler(h, h), new CharonReconciler(h)]);
    expect(order.indexOf(XFRM_KIND)).toBeGreaterThan(order.indexOf(CHARON_KIND));
    expect(order.indexOf(XFRM_KIND)).toBeLessThan(order.indexOf(CONN_KIND));
  });

  it("the periodic pass deletes leftovers (old SPIs, a gone peer's policies) and keeps charon's SA and foreign objects", async () => {
    const host = new FakeCharonHost({ kernelEsp: true });
    const a = await node(host, 1);
    const b = await node(host, 2);
    await a.addPeer(b.lease);
    await b.addPeer(a.lease);
    const x = host.xfrmOf(a.kernel);
    const conn = [...host.ipsec.charons.get(socketOf(a))!.conns.values()].find((c) => c.remoteAddr === "198.18.0.2")!;
    expect(conn.reqid).toBe(R2);
    const child = (await host.ipsec.listSas(socketOf(a)))[0]!.children[0]!;
    expect(child.reqid).toBe(R2);
    installSa(x, R2, child.spiIn!, child.spiOut!);
    // What a charon killed earlier left: an SA of the same connection, and a peer that has gone since.
    x.addState({ src: "198.18.0.2", dst: "198.18.0.1", proto: "esp", spi: 0xdead0001, reqid: R2, mode: "tunnel" });
    installSa(x, R9, 0xdead0091, 0xdead0092, 9);
    installForeign(x);
    const r = await a.reconcile();
    expect(r.kinds.find((k) => k.kind === XFRM_KIND)).toMatchObject({ updated: 1, failures: [] });
    expect(spis(x)).toEqual([0x1234, child.spiIn!, child.spiOut!].sort((p, q) => p - q));
    expect(policies(x)).toEqual(
      ["out 198.19.2.0/24 " + R2, "in 198.19.1.0/24 " + R2, "fwd 198.19.1.0/24 " + R2, "out 198.19.50.0/24 3", `out 198.19.51.0/24 3,${R2}`].sort(),
    );
    expect((await a.reconcile()).kinds.find((k) => k.kind === XFRM_KIND)!.writes).toBe(0);
  });

  it("kill -9 of charon: its states and policies stay in the kernel; the recovery pass deletes them before the connections load", async () => {
    const host = new FakeCharonHost({ kernelEsp: true });
    const a = await node(host, 1);
    const b = await node(host, 2);
    await a.addPeer(b.lease);
    await b.addPeer(a.lease);
    const x = host.xfrmOf(a.kernel);
    const old = (await host.ipsec.listSas(socketOf(a)))[0]!.children[0]!;
    installSa(x, R2, old.spiIn!, old.spiOut!);
    installForeign(x);
    const pid = host.charons().find((p) => p.env.STRONGSWAN_CONF?.startsWith(socketOf(a).replace(/charon\.vici$/, "")))!.pid;
    await host.table.crash(pid);
    await a.reconcile();
    const now = (await host.ipsec.listSas(socketOf(a)))[0]!.children[0]!;
    expect(now.spiIn).not.toBe(old.spiIn);
    // Only foreign objects are left: the old SA's states and policies are gone (the new charon's would be
    // installed by it when its SA comes up; the fake charon does not model that).
    expect(spis(x)).toEqual([0x1234]);
    expect(policies(x)).toEqual(["out 198.19.50.0/24 3", `out 198.19.51.0/24 3,${R2}`]);
  });

  it("charon running but not answering: nothing is deleted (the read fails, retried next pass)", async () => {
    const host = new FakeCharonHost({ kernelEsp: true });
    const a = await node(host, 1);
    const x = host.xfrmOf(a.kernel);
    installSa(x, R9, 0xdead0091, 0xdead0092, 9);
    host.ipsec.stop(socketOf(a)); // the socket stops answering; the process is still in the table
    const r = await a.reconcile();
    expect(r.kinds.find((k) => k.kind === XFRM_KIND)!.failures.map((f) => f.key)).toEqual(["*"]);
    expect(spis(x)).toEqual([0xdead0091, 0xdead0092]);
  });

  it("teardown: every state and policy with Weft's reqids goes, foreign ones stay", async () => {
    const host = new FakeCharonHost({ kernelEsp: true });
    const a = await node(host, 1);
    const x = host.xfrmOf(a.kernel);
    installSa(x, R9, 0xdead0091, 0xdead0092, 9);
    installForeign(x);
    await a.close("teardown");
    expect(spis(x)).toEqual([0x1234]);
    expect(policies(x)).toEqual(["out 198.19.50.0/24 3", `out 198.19.51.0/24 3,${R2}`]);
  });

  it("libipsec mode does nothing with XFRM, even with Weft's reqids there", async () => {
    const host = new FakeCharonHost({ kernelEsp: false });
    const a = await node(host, 1);
    expect((await (a.backend as IpsecBackend).status()).datapath).toBe("libipsec");
    const x = host.xfrmOf(a.kernel);
    installSa(x, R9, 0xdead0091, 0xdead0092, 9);
    await a.reconcile();
    await a.close("teardown");
    expect(spis(x)).toEqual([0xdead0091, 0xdead0092]);
    expect(x.policies).toHaveLength(3);
  });
});
