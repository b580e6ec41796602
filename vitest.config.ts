import { availableParallelism } from 'node:os';

import { defineConfig } from 'vitest/config';

import { TIME_SCALE } from './test/time-scale.js';

// The llama.cpp peer (node-llama-cpp's prebuilt CPU binary, scripts/install-peers.sh) is pinned for
// linux-x64; elsewhere there is no peer to compare against, so its test file is not collected.
const peerPlatform = process.platform === 'linux' && process.arch === 'x64';

// Four suites, each run by its own npm script and all by .ci/run; none is skipped where its tools are missing:
//   main      test/*.test.ts           `npm test`: Node, a C++ toolchain and what `npm install` + pretest bring
//   corpus    test/corpus/*.test.ts    `npm run test:corpus`: the training corpus, which needs Debian's bible-kjv
//   python    test/python/*.test.ts    `npm run test:python`: python3-sentencepiece (and the corpus)
//   scaleout  test/scaleout/*.test.ts  `npm run test:scaleout`: Debian's nginx (apt-get install nginx) in front of
//                                      `bitllm serve` replicas on loopback (deploy/nginx/bitllm.conf, docs/scale-out.md)
export default defineConfig({
  test: {
    // BITLLM_TEST_TIME_SCALE (test/time-scale.ts: 10 under qemu from scripts/test-arm64.sh) scales every wall-clock bound.
    testTimeout: 60_000 * TIME_SCALE,
    hookTimeout: 60_000 * TIME_SCALE,
    pool: 'forks',
    // One test file per core (vitest's default leaves one core free: on the 2-core CI machine that ran the files one
    // at a time; two at a time took the main suite from ~370 s to ~195 s). Tests never assert on timing.
    maxWorkers: availableParallelism(),
    minWorkers: 1,
    projects: [
      {
        extends: true,
        test: { name: 'main', include: ['test/*.test.ts'], exclude: ['**/node_modules/**', ...(peerPlatform ? [] : ['test/peer.test.ts'])] },
      },
      { extends: true, test: { name: 'corpus', include: ['test/corpus/*.test.ts'] } },
      { extends: true, test: { name: 'python', include: ['test/python/*.test.ts'] } },
      { extends: true, test: { name: 'scaleout', include: ['test/scaleout/*.test.ts'] } },
    ],
  },
});
