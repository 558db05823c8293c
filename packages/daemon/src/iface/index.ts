/** Interface and public-IP choice (flannel.md §7.4, IPv6-aware). */
export { type InterfaceChoiceOptions, chooseExternalInterface } from "./choose.js";
export { type UsableAddress, defaultRoute, isGlobalUnicast, isLinkLocalUnicast, usableAddresses } from "./addresses.js";
