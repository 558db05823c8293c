/** The backends weftd ships. Third-party ones are added only through --backend-module. */
import type { BackendModule } from "@weft/core";
import hostGw from "@weft/backend-host-gw";
import ipsec from "@weft/backend-ipsec";
import vxlan from "@weft/backend-vxlan";
import wireguard from "@weft/backend-wireguard";

export const BUILTIN_BACKENDS: readonly BackendModule[] = [vxlan as BackendModule, hostGw as BackendModule, wireguard as BackendModule, ipsec as BackendModule];
