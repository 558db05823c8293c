export {
  FakeApiError,
  FakeApiServer,
  type FakeApiServerOptions,
  type FakeRequestRecord,
  type FaultHandle,
  type FaultSpec,
  type FieldValidation,
  type PatchType,
  kubeconfigFor,
  startFakeApiServer,
} from "./fake-api-server.js";
export { PatchError, deepEqual, jsonMergePatch, jsonPatch, strategicMergePatch } from "./patch.js";
export { type Json, type JsonObject, type Schema, nodeSchema, podSchema, validate } from "./schema.js";
export { nodeProblems, qualifiedNameProblem, syncPodCIDRs } from "./validation.js";
