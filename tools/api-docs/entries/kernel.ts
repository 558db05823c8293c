/**
 * The port types of `@weft/kernel` that a backend or reconciler may use: the {@link KernelPort} (read kernel
 * state, apply batches of {@link KernelOp}), the {@link ProcessRunner} port (the only way to start a
 * program), their DI tokens, and {@link ConnectedSubnets}. The Linux adapters behind these ports
 * (`LinuxKernel`, `ExecaRunner`, `SpawnRunner`) belong to the agent and are not part of this reference.
 *
 * @module @weft/kernel
 */
export {
  type Address,
  type KernelErrorCode,
  type KernelOp,
  type KernelPort,
  type Neighbour,
  type OpResult,
  type RouteQuery,
  KERNEL,
  KernelError,
  describeOp,
  throwOnFailure,
  type ChildHandle,
  type ProcessRunner,
  type RunOptions,
  type RunResult,
  type SpawnOptions,
  PROCESS_RUNNER,
  ConnectedSubnets,
} from "@weft/kernel";
