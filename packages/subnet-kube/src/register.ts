/**
 * DI registration: binds SUBNET_MANAGER (and the concrete KubeSubnetManager, for storedBackendData /
 * storedPublicIPs) in the agent's child container. The container must already provide LOGGER.
 */
import "reflect-metadata";
import { SUBNET_MANAGER } from "@weft/core";
import { type DependencyContainer, Lifecycle } from "tsyringe";
import { KUBE_SUBNET_MANAGER_OPTIONS, KubeSubnetManager, type KubeSubnetManagerOptions } from "./kube-subnet-manager.js";

export function registerKubeSubnetManager(container: DependencyContainer, options: KubeSubnetManagerOptions): DependencyContainer {
  container.register(KUBE_SUBNET_MANAGER_OPTIONS, { useValue: options });
  container.register(KubeSubnetManager, { useClass: KubeSubnetManager }, { lifecycle: Lifecycle.ContainerScoped });
  container.register(SUBNET_MANAGER, { useToken: KubeSubnetManager });
  return container;
}
