/** The XfrmPort contract on FakeXfrm (states included: the fake has every transform). */
import { FakeXfrm } from "./fake-xfrm.js";
import { describeXfrmPortContract } from "./xfrm-contract.js";

describeXfrmPortContract("FakeXfrm", async () => {
  const port = new FakeXfrm();
  return {
    port,
    addPolicy: async (p) => {
      port.addPolicy({
        src: p.src,
        dst: p.dst,
        dir: p.dir,
        reqids: [p.reqid],
        ...(p.mark ? { mark: p.mark } : {}),
        ...(p.ifId !== undefined ? { ifId: p.ifId } : {}),
      });
    },
    addState: async (s) => port.addState({ src: s.src, dst: s.dst, proto: "esp", spi: s.spi, reqid: s.reqid, mode: "tunnel" }),
    cleanup: async () => {},
  };
});
