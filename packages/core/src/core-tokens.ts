/** DI tokens shared by the agent, the backends and the test kits. */
import type { Backend, Datapath, ExternalInterface } from "./backend.js";
import type { Clock } from "./clock.js";
import type { Logger } from "./logger.js";
import type { NetworkConfig } from "./network-config.js";
import { createToken } from "./tokens.js";

/** The agent's Logger. */
export const LOGGER = createToken<Logger>("weft.logger");
/** The validated cluster NetworkConfig. */
export const NETWORK_CONFIG = createToken<NetworkConfig>("weft.network-config");
/** The validated Backend section, typed by the backend that validated it. */
export const BACKEND_CONFIG = createToken<unknown>("weft.backend-config");
/** The node's chosen underlay interface and addresses. */
export const EXTERNAL_INTERFACE = createToken<ExternalInterface>("weft.external-interface");
/** The Datapath a backend declares its kernel objects on. */
export const DATAPATH = createToken<Datapath>("weft.datapath");
/** The Backend that BackendModule.register binds. */
export const BACKEND = createToken<Backend>("weft.backend");
/** Directory for state that must survive restarts (keys, VTEP MACs); a flag of the agent. */
export const STATE_DIR = createToken<string>("weft.state-dir");
/** The Clock a backend waits on (systemClock in weftd; a test may bind a fake one). */
export const CLOCK = createToken<Clock>("weft.clock");
