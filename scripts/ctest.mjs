// Configures, builds and runs the C++ kernel tests (ctest) in build-cmake/. Part of `npm test`.
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';

const dir = process.env.BITLLM_CMAKE_DIR ?? 'build-cmake';
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.error) {
    const hint = r.error.code === 'ENOENT' ? ' (the C++ kernel tests need CMake >= 3.16: apt-get install -y cmake)' : '';
    console.error(`${cmd}: ${r.error.message}${hint}`);
    process.exit(1);
  }
  if (r.status !== 0) process.exit(r.status ?? 1);
};
run('cmake', ['-S', '.', '-B', dir, '-DCMAKE_BUILD_TYPE=Release']);
run('cmake', ['--build', dir, '--parallel', String(Math.max(1, cpus().length))]);
run('ctest', ['--test-dir', dir, '--output-on-failure']);
