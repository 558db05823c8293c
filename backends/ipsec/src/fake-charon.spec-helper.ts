/**
 * One fake machine room for ipsec tests: a FakeDaemonTable with `charon` installed as FakeIpsec's charon program,
 * one FakeIpsec shared by every node (so two nodes' connections establish), and `ports` binding a node's
 * MANAGED_DAEMONS (over the table, with that node's kernel) and IPSEC in its agent container. A restarted agent
 * gets a new FakeManagedDaemons over the same table: it adopts the running charon.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { IPSEC, type KernelPort, MANAGED_DAEMONS, XFRM } from "@weft/kernel";
import { FakeDaemonTable, FakeIpsec, type FakeKernel, FakeManagedDaemons, FakeXfrm } from "@weft/kernel-testing";
import { type TestAgent, startTestAgent, testNetConf } from "@weft/backend-testkit";
import type { DependencyContainer } from "tsyringe";
import { afterAll, afterEach, beforeAll } from "vitest";
import ipsec from "./index.js";

/** A PSK of Flannel's minimum length (test only). */
export const TEST_PSK = "0123456789abcdef".repeat(6);

export class FakeCharonHost {
  readonly table = new FakeDaemonTable();
  readonly ipsec: FakeIpsec;

  constructor(options: { kernelEsp?: boolean } = {}) {
    this.ipsec = new FakeIpsec(options);
    this.table.install("charon", this.ipsec.charonProgram());
  }

  /** Each node's XFRM tables, by its kernel (one namespace per node; a restarted agent gets the same one). */
  readonly xfrms = new Map<KernelPort | undefined, FakeXfrm>();

  /** For startTestAgent / the conformance kit's `ports`. */
  ports = (c: DependencyContainer, kernel?: KernelPort): void => {
    c.register(MANAGED_DAEMONS, { useValue: new FakeManagedDaemons(this.table, kernel ? { kernel: kernel as FakeKernel } : {}) });
    c.register(IPSEC, { useValue: this.ipsec });
    c.register(XFRM, { useValue: this.xfrmOf(kernel) });
  };

  /** The XFRM tables of the node with `kernel`. */
  xfrmOf(kernel: KernelPort | undefined): FakeXfrm {
    let x = this.xfrms.get(kernel);
    if (!x) this.xfrms.set(kernel, (x = new FakeXfrm()));
    return x;
  }

  /** The charon processes running now. */
  charons() {
    return this.table.running().filter((p) => p.command.endsWith("charon"));
  }
}

/**
 * Puts an (empty) `charon` on PATH so locateCharon finds one on machines without strongSwan; the fake table runs
 * it by name. Returns a function that restores PATH and removes the directory.
 */
export function fakeCharonOnPath(): () => void {
  const dir = mkdtempSync(join(tmpdir(), "weft-fake-charon-"));
  writeFileSync(join(dir, "charon"), "#!/bin/false\n");
  chmodSync(join(dir, "charon"), 0o755);
  const before = process.env.PATH;
  process.env.PATH = `${dir}${delimiter}${before ?? ""}`;
  return () => {
    process.env.PATH = before;
    rmSync(dir, { recursive: true, force: true });
  };
}

/**
 * The scaffold every ipsec spec file uses: the fake charon on PATH for the file, and `node(host, n)` — node n
 * (underlay 198.18.0.n, pods 198.19.n.0/24) on `host` — whose agents are closed ("restart") after each test.
 */
export function useFakeCharonNodes(): {
  node(host: FakeCharonHost, n: number, backend?: Record<string, unknown>, extra?: { kernel?: FakeKernel; stateDir?: string }): Promise<TestAgent>;
  /** Closes an agent the test started itself after the test, as `node`'s are. */
  track(a: TestAgent): TestAgent;
} {
  let restorePath: () => void;
  beforeAll(() => {
    restorePath = fakeCharonOnPath();
  });
  afterAll(() => restorePath());
  const agents: TestAgent[] = [];
  afterEach(async () => {
    for (const a of agents.splice(0)) await a.close("restart").catch(() => undefined);
  });
  const track = (a: TestAgent): TestAgent => {
    agents.push(a);
    return a;
  };
  return {
    track,
    async node(host, n, backend = {}, extra = {}) {
      const a = await startTestAgent({
        backends: [ipsec],
        config: testNetConf({ Type: "ipsec", PSK: TEST_PSK, ...backend }, "v4"),
        iface: { address: `198.18.0.${n}/24` },
        leases: { subnet: `198.19.${n}.0/24`, nodeName: `node-${n}` },
        ports: host.ports,
        ...extra,
      });
      return track(a);
    },
  };
}

/** The VICI socket of the charon `a`'s backend talks to. */
export const charonSocketOf = (a: TestAgent): string => (a.backend as unknown as { charon: { socket: string } }).charon.socket;
