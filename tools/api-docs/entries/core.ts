/**
 * The contract a backend is written against, and the value types it passes around: the
 * {@link BackendModule} a backend package default-exports, the {@link Backend} it binds, the
 * {@link Datapath} it declares kernel objects on, leases, IP types, kernel object specs, DI tokens and
 * typed errors. Core does no I/O and depends on no other Weft package.
 *
 * @module @weft/core
 */
export * from "@weft/core";
