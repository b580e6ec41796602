// bitllm public API.
export * from './errors.js';
export { KernelContext, cpuInfo, kernelInfo } from './kernels/context.js';
export type { ContextOptions, CpuInfo, Isa } from './kernels/context.js';
export * from './api.js';
export {
  HubError, HubChecksumError, HubNetworkError, HubNotCachedError, type HubRef, type PullEvent, type PullOptions, type PullResult,
  hubCacheRoot, parseHubRef, pullModel, resolveModelPath,
} from './hub/index.js';
export {
  type BitllmServer, type EngineEvent, type EngineFinishReason, type EngineInfo, type EngineRequest, type EngineStats, HttpError, ModelEngine,
  type ServerEngine, type ServerOptions, type ServerState, createServer,
} from './server/index.js';
