// Hugging Face hub: references, the download cache, pull, and the model-argument resolver.
export { HubError, type HubRef, DEFAULT_REVISION, HUB_PREFIX, formatHubRef, isHubRef, parseHubRef } from './ref.js';
export { type CachedFile, type CachedFileMeta, HubCache, HubNotCachedError, hubCacheRoot } from './cache.js';
export { DEFAULT_ENDPOINT, HubChecksumError, HubClient, type HubClientOptions, HubNetworkError, type PullEvent } from './client.js';
export { type PullOptions, type PullResult, looksLikeRepoName, pullModel, resolveModelPath } from './pull.js';
