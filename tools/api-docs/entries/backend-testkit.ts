/**
 * What a backend author imports to test a backend, and nothing of the daemon: the conformance suite
 * ({@link describeBackendConformance} as vitest tests, {@link runBackendConformance} as plain functions),
 * a one-node agent on a fake kernel ({@link startTestAgent}), test leases and kernel snapshots.
 *
 * @module @weft/backend-testkit
 */
export * from "@weft/backend-testkit";
