// A native call that is under way when its thread's JavaScript stops (Worker.terminate(), process.exit()
// while a model loads or generates) must let the process end normally. Its later Node-API calls fail then;
// without NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS (binding.gyp) node-addon-api turned that failure into a C++
// exception out of the callback and the process aborted ("terminate called after throwing an instance of
// 'Napi::Error'", exit 134): the model worker of a closing server, or `bitllm` interrupted while loading.
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { describe, expect, it } from 'vitest';

const dist = pathToFileURL(fileURLToPath(new URL('../dist', import.meta.url))).href;

// A worker starts a native call that runs for 1 s and builds its result object at the end (probeInt8Peak);
// 300 ms after the call began the main thread stops the worker, or exits.
const script = `
import { Worker } from 'node:worker_threads';
const mode = process.argv[1];
const w = new Worker(\`
  import('node:worker_threads').then(async ({ parentPort, workerData }) => {
    const [k, n] = await Promise.all([import(workerData.dist + '/kernels/index.js'), import(workerData.dist + '/native.js')]);
    const ctx = new k.KernelContext({ threads: 1 });
    parentPort.postMessage('go');
    n.binding('probeInt8Peak')(ctx.handle, 1);
  });
\`, { eval: true, workerData: { dist: ${JSON.stringify(dist)} } });
w.on('error', (e) => { console.log('worker error', e); process.exitCode = 3; });
w.on('message', (m) => {
  if (m !== 'go') return;
  setTimeout(async () => {
    if (mode === 'exit') { console.log('exiting'); process.exit(0); }
    await w.terminate();
    console.log('terminated');
  }, 300);
});
`;

function run(mode: 'terminate' | 'exit') {
  return spawnSync(process.execPath, ['--input-type=module', '-e', script, mode], { encoding: 'utf8', timeout: 120_000 });
}

describe('a native call interrupted by its thread stopping', () => {
  it('Worker.terminate() during the call: the worker stops, the process goes on', () => {
    const r = run('terminate');
    expect(r.stderr).not.toMatch(/terminate called|Napi::Error/);
    expect({ status: r.status, signal: r.signal, stdout: r.stdout.trim() }).toEqual({ status: 0, signal: null, stdout: 'terminated' });
  });

  it('process.exit() during a worker\'s call: the process exits with its own code', () => {
    const r = run('exit');
    expect(r.stderr).not.toMatch(/terminate called|Napi::Error/);
    expect({ status: r.status, signal: r.signal, stdout: r.stdout.trim() }).toEqual({ status: 0, signal: null, stdout: 'exiting' });
  });
});
