import { defineConfig } from 'vitest/config';

// The llama.cpp peer (node-llama-cpp's prebuilt CPU binary, scripts/install-peers.sh) is pinned for
// linux-x64; elsewhere there is no peer to compare against, so its test file is not collected.
const peerPlatform = process.platform === 'linux' && process.arch === 'x64';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['**/node_modules/**', ...(peerPlatform ? [] : ['test/peer.test.ts'])],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
