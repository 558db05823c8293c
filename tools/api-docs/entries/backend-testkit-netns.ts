/**
 * The conformance suite against the real kernel: every node of every check gets a fresh network namespace
 * and the Linux kernel adapter inside it. Needs root and iproute2 (the netns test tier).
 *
 * @module @weft/backend-testkit/netns
 */
export * from "@weft/backend-testkit/netns";
