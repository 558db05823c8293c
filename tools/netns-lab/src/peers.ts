/**
 * Fake peers for fault tests, the soak and benchmarks: well-formed Flannel-format vxlan leases written straight
 * into etcd as other nodes would (lease-less keys: nothing expires them), and a count of what an agent programmed
 * for them in its node namespace (routes with Weft's protocol, permanent neighbours and FDB entries on its vxlan
 * device).
 */
import { IPAddress, WEFT_ROUTE_PROTOCOL, encodeLeaseAttrs } from "@weft/core";
import { etcdHttp, etcdPut } from "./etcd.js";
import type { TestNetns } from "./netns.js";

/** Where fake peer `i` lives: its subnet (`len` bits inside `network`), public address and VTEP MAC. */
export interface FakePeer {
  readonly index: number;
  /** `a.b.c.d/len`, the lease key's subnet. */
  readonly subnet: string;
  /** The etcd key suffix: `a.b.c.d-len`. */
  readonly key: string;
  readonly publicIP: string;
  readonly vtepMac: string;
}

const hex = (n: number) => n.toString(16).padStart(2, "0");
const dotted = (v: number) => `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;

/**
 * Fake peer `i` (0-based) in 198.19.0.0/16 with subnets of `len` bits (default 29: 8,191 peers fit), a public
 * address 198.18.Y.Z with Z in 16..254 (a lab node is 198.18.X.i with a small i, so never one of them; never a
 * .0 or .255) and VTEP MAC 0e:57:01:xx:xx:xx. Subnet 0 (198.19.0.0/len) is never used.
 */
export function fakePeer(i: number, len = 29): FakePeer {
  const size = 2 ** (32 - len);
  const base = (198 << 24) | (19 << 16);
  const subnetIp = dotted((base >>> 0) + (i + 1) * size);
  const pub = (((198 << 24) | (18 << 16)) >>> 0) + (16 + Math.floor(i / 239)) * 256 + 16 + (i % 239);
  return {
    index: i,
    subnet: `${subnetIp}/${len}`,
    key: `${subnetIp}-${len}`,
    publicIP: dotted(pub),
    vtepMac: `0e:57:01:${hex((i >> 16) & 255)}:${hex((i >> 8) & 255)}:${hex(i & 255)}`,
  };
}

/** The Flannel-format lease value of a fake vxlan peer (VNI 1). */
export function fakePeerValue(p: FakePeer): string {
  return encodeLeaseAttrs({ publicIP: IPAddress.parse(p.publicIP), backendType: "vxlan", backendData: { VNI: 1, VtepMAC: p.vtepMac } });
}

/** Writes the leases of `peers` under `<prefix>/subnets/` with `workers` concurrent puts (default 32). */
export async function putFakePeers(endpoint: string, prefix: string, peers: readonly FakePeer[], workers = 32): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < peers.length; i = next++) await etcdPut(endpoint, `${prefix}/subnets/${peers[i]!.key}`, fakePeerValue(peers[i]!));
  };
  await Promise.all(Array.from({ length: Math.min(workers, peers.length) }, worker));
}

/** Deletes one fake peer's lease. */
export async function deleteFakePeer(endpoint: string, prefix: string, peer: FakePeer): Promise<void> {
  const r = await etcdHttp(endpoint, "/v3/kv/deleterange", { key: Buffer.from(`${prefix}/subnets/${peer.key}`).toString("base64") });
  if (r.status !== 200) throw new Error(`etcd delete ${prefix}/subnets/${peer.key}: HTTP ${r.status}: ${r.body.slice(0, 200)}`);
}

/** What an agent programmed in a node namespace for its vxlan peers. */
export interface VxlanObjects {
  /** Destinations of routes with Weft's protocol (duplicates kept, so a count shows them). */
  readonly routes: string[];
  /** Permanent neighbours on the device: `ip lladdr`. */
  readonly neighbours: string[];
  /** FDB entries on the device with a remote (`dst`): `mac dst`. */
  readonly fdb: string[];
}

/** Reads the routes, neighbours and FDB entries an agent owns for vxlan peers on `dev` (default weft.1). */
export async function vxlanObjects(netns: TestNetns, dev = "weft.1"): Promise<VxlanObjects> {
  const json = <T>(text: string): T[] => (text.trim() ? (JSON.parse(text) as T[]) : []);
  const [r, n, f] = await Promise.all([
    netns.ip(["-j", "route", "show", "proto", String(WEFT_ROUTE_PROTOCOL)]),
    netns.ip(["-j", "neigh", "show", "dev", dev, "nud", "permanent"]).catch(() => ({ stdout: "[]" })),
    netns.run("bridge", ["-j", "fdb", "show", "dev", dev], { reject: false }),
  ]);
  return {
    routes: json<{ dst: string }>(r.stdout).map((x) => x.dst),
    neighbours: json<{ dst: string; lladdr?: string }>(n.stdout).map((x) => `${x.dst} ${x.lladdr ?? ""}`),
    fdb: json<{ mac: string; dst?: string }>(f.exitCode === 0 ? f.stdout : "[]")
      .filter((x) => x.dst !== undefined)
      .map((x) => `${x.mac} ${x.dst}`),
  };
}
