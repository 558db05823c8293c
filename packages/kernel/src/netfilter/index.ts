/** The netfilter port and its two adapters (iptables-save/-restore and nft). */
export * from "./port.js";
export * from "./iptables.js";
export * from "./nftables.js";
export * from "./linux.js";
