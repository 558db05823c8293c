/** The IpsecPort contract on FakeIpsec, plus what only the fake models (two charons establishing an SA). */
import { expect, it } from "vitest";
import { FakeIpsec } from "./fake-ipsec.js";
import { CONTRACT_CONN, describeIpsecPortContract } from "./ipsec-contract.js";

describeIpsecPortContract("FakeIpsec", async () => {
  const port = new FakeIpsec();
  port.serve("/fake/a.vici");
  port.serve("/fake/dead.vici");
  port.stop("/fake/dead.vici");
  return { port, socket: "/fake/a.vici", deadSocket: "/fake/dead.vici", cleanup: async () => {} };
});

it("FakeIpsec: mirrored connections with the same key establish; a stopped responder leaves the initiator re-connecting", async () => {
  const f = new FakeIpsec();
  f.serve("/a");
  f.serve("/b");
  await f.loadSharedKey("/a", "k", "x".repeat(96));
  await f.loadSharedKey("/b", "k", "x".repeat(96));
  await f.loadConnection("/a", { ...CONTRACT_CONN, initiator: true });
  expect((await f.listSas("/a"))[0]?.state).toBe("CONNECTING");
  await f.loadConnection("/b", { ...CONTRACT_CONN, name: "mirror", localAddr: CONTRACT_CONN.remoteAddr, remoteAddr: CONTRACT_CONN.localAddr, localTs: CONTRACT_CONN.remoteTs, remoteTs: CONTRACT_CONN.localTs });
  expect((await f.listSas("/a")).map((s) => [s.state, s.children[0]?.state])).toEqual([["ESTABLISHED", "INSTALLED"]]);
  expect((await f.listSas("/b")).map((s) => [s.connection, s.state, s.initiator])).toEqual([["mirror", "ESTABLISHED", false]]);
  f.stop("/b");
  expect((await f.listSas("/a")).map((s) => [s.state, s.children.length])).toEqual([["CONNECTING", 0]]);
  expect(f.charons.get("/b")!.sas.size).toBe(0);
});
