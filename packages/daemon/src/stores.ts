/**
 * The cluster store for this agent: etcd (default) or the Kubernetes API (--kube-subnet-mgr). Each client is
 * imported only in its mode, so a kube-mode agent never loads the etcd client and the other way round.
 */
import type { Logger, SubnetManager } from "@weft/core";
import type { Flags } from "./flags.js";
import { readSubnetFile } from "./subnet-file.js";

export interface StoreChoice {
  readonly manager: SubnetManager;
  /** kube: public IPs from the node-public-ip(-v6) annotations, which override --public-ip(v6). */
  storedPublicIPs?(signal: AbortSignal): Promise<{ v4?: string; v6?: string }>;
}

export async function createSubnetManager(flags: Flags, logger: Logger): Promise<StoreChoice> {
  if (flags["kube-subnet-mgr"]) {
    const kube = await import("@weft/subnet-kube");
    const manager = new kube.KubeSubnetManager(
      {
        netConfPath: flags["net-config-path"],
        annotationPrefix: flags["kube-annotation-prefix"],
        ...(flags["kubeconfig-file"] ? { kubeconfigFile: flags["kubeconfig-file"] } : {}),
        ...(flags["kube-api-url"] ? { kubeApiUrl: flags["kube-api-url"] } : {}),
        setNodeNetworkUnavailable: flags["set-node-network-unavailable"],
      },
      logger,
    );
    return {
      manager,
      storedPublicIPs: async (signal) => {
        const s = await manager.storedPublicIPs(signal);
        return { ...(s.v4 ? { v4: s.v4.toString() } : {}), ...(s.v6 ? { v6: s.v6.toString() } : {}) };
      },
    };
  }
  const etcd = await import("@weft/subnet-etcd");
  // etcd refuses a TTL above its maximum with OUT_OF_RANGE at every grant, which would look like an unreachable
  // store forever: one clear line at start instead. (Endpoints are checked by the store's constructor below.)
  etcd.checkLeaseTtl(flags["etcd-lease-ttl"], "--etcd-lease-ttl");
  const prev = readSubnetFile(flags["subnet-file"]).env;
  const manager = new etcd.EtcdSubnetManager(
    {
      endpoints: flags["etcd-endpoints"],
      prefix: flags["etcd-prefix"],
      ...(flags["etcd-certfile"] || flags["etcd-cafile"]
        ? {
            tls: {
              ...(flags["etcd-certfile"] ? { certFile: flags["etcd-certfile"], keyFile: flags["etcd-keyfile"] } : {}),
              ...(flags["etcd-cafile"] ? { caFile: flags["etcd-cafile"] } : {}),
            },
          }
        : {}),
      ...(flags["etcd-username"] ? { username: flags["etcd-username"], password: flags["etcd-password"] } : {}),
      leaseTtlSeconds: flags["etcd-lease-ttl"],
      renewMarginSeconds: Math.min(flags["subnet-lease-renew-margin"] * 60, Math.floor(flags["etcd-lease-ttl"] / 2)),
      ...(prev?.subnet ? { previousSubnet: prev.subnet.network } : {}),
      ...(prev?.ipv6Subnet ? { previousIPv6Subnet: prev.ipv6Subnet.network } : {}),
    },
    logger,
  );
  return { manager };
}
