/** DI tokens shared by the agent, the backends and the test kits. */
import type { Backend, Datapath, ExternalInterface } from "./backend.js";
import type { Logger } from "./logger.js";
import type { NetworkConfig } from "./network-config.js";
import type { SubnetManager } from "./subnet-manager.js";
import { createToken } from "./tokens.js";

export const LOGGER = createToken<Logger>("weft.logger");
export const NETWORK_CONFIG = createToken<NetworkConfig>("weft.network-config");
/** The validated Backend section, typed by the backend that validated it. */
export const BACKEND_CONFIG = createToken<unknown>("weft.backend-config");
export const EXTERNAL_INTERFACE = createToken<ExternalInterface>("weft.external-interface");
export const SUBNET_MANAGER = createToken<SubnetManager>("weft.subnet-manager");
export const DATAPATH = createToken<Datapath>("weft.datapath");
export const BACKEND = createToken<Backend>("weft.backend");
/** Directory for state that must survive restarts (keys, VTEP MACs); a flag of the agent. */
export const STATE_DIR = createToken<string>("weft.state-dir");
