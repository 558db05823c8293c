/**
 * The read-only kernel view a backend gets (the author API): it may read links, addresses, routes, neighbours,
 * FDB entries and sysctls to make decisions, and changes nothing. Changes go through the Datapath; only the
 * datapath engine and the reconcilers hold the writable KernelPort (KERNEL), which a backend's container does
 * not resolve.
 */
import { createToken } from "@weft/core";
import type { KernelPort } from "./port.js";

/** The reading half of KernelPort: everything a backend may ask the kernel. */
export type KernelView = Pick<KernelPort, "listLinks" | "listAddresses" | "listRoutes" | "routeGet" | "listNeighbours" | "listFdb" | "getSysctl">;

/** The read-only kernel view in a backend's container (the agent binds it; backends inject it). */
export const KERNEL_VIEW = createToken<KernelView>("weft.kernel-view");

/**
 * A view of `port` with only the reading methods: a new object that holds the port privately, so a backend
 * cannot cast its way to `apply` or `setSysctl`.
 */
export function kernelView(port: KernelPort): KernelView {
  return Object.freeze({
    listLinks: () => port.listLinks(),
    listAddresses: (dev?: string) => port.listAddresses(dev),
    listRoutes: (query: Parameters<KernelPort["listRoutes"]>[0]) => port.listRoutes(query),
    routeGet: (dst: string) => port.routeGet(dst),
    listNeighbours: (query: Parameters<KernelPort["listNeighbours"]>[0]) => port.listNeighbours(query),
    listFdb: (query: Parameters<KernelPort["listFdb"]>[0]) => port.listFdb(query),
    getSysctl: (key: string) => port.getSysctl(key),
  });
}
