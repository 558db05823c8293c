/**
 * Desired-vs-actual reconcilers, one per kernel object kind, and the engine that implements
 * {@link @weft/core!Datapath}. A backend that needs a kernel object kind core does not describe adds its
 * own {@link ObjectReconciler} through {@link RECONCILER_CONTRIBUTION}; {@link registerDatapath} wires the
 * engine into a container (the agent and the test agent call it, a backend does not).
 *
 * @module @weft/reconcile
 */
export * from "@weft/reconcile";
