#!/usr/bin/env node
// Reads `bitllm bench kernels --json` lines on stdin and prints the README's markdown tables:
// per kernel/shape the best-ISA figures at 1 and 2 threads, the ratio to the TypeScript reference
// (batch 1), the fraction of the read-bandwidth probe (batch 1) and of the int8 peak (batch 128).
//   node dist/cli/main.js bench kernels --json | tee .bench/kernels.jsonl | node bench/summarize-kernels.mjs
import { createInterface } from 'node:readline';

const rows = [];
const probes = { read_bw: new Map(), int8_peak: new Map() };
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim().startsWith('{')) continue;
  const r = JSON.parse(line);
  // Start and end probes are averaged (bandwidth drifts on a shared machine).
  if (r.probe) {
    const prev = probes[r.probe]?.get(r.threads);
    const v = r.probe === 'read_bw' ? 'gbps' : 'gops';
    probes[r.probe]?.set(r.threads, prev ? { ...r, [v]: (prev[v] + r[v]) / 2 } : r);
  }
  else rows.push(r);
}

const key = (r) => `${r.kernel} ${r.m}x${r.k}`;
const groups = new Map();
for (const r of rows) {
  if (!groups.has(key(r))) groups.set(key(r), []);
  groups.get(key(r)).push(r);
}
const fmt = (v, d = 1) => (v === undefined ? '–' : Number(v).toFixed(d));

console.log('| probe | 1 thread | 2 threads |');
console.log('| --- | --- | --- |');
console.log(`| read bandwidth (GB/s, 1 GiB stream, median; mean of start/end) | ${fmt(probes.read_bw.get(1)?.gbps)} | ${fmt(probes.read_bw.get(2)?.gbps)} |`);
console.log(`| int8 peak (GOP/s, ${probes.int8_peak.get(2)?.instruction ?? 'n/a'}) | ${fmt(probes.int8_peak.get(1)?.gops, 0)} | ${fmt(probes.int8_peak.get(2)?.gops, 0)} |`);
console.log();
console.log('| kernel | m×k | ISA | B=1 t=1 GB/s | B=1 t=2 GB/s | % read bw (t=2) | B=1 t=2 in L3 GB/s | × TS ref (B=1) | B=8 t=2 GOP/s | B=128 t=2 GOP/s | % int8 peak (B=128, int8 kernels) |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const [k, rs] of groups) {
  const ref = rs.find((r) => r.isa === 'reference');
  const isas = [...new Set(rs.filter((r) => r.isa !== 'reference').map((r) => r.isa))];
  const best = isas[isas.length - 1];
  // Decode-sized batches: the DRAM-streaming row (in-cache rows are the separate 'in L3' column).
  const get = (b, t, cache = b <= 8 ? 'dram' : 'cache') => rs.find((r) => r.isa === best && r.batch === b && r.threads === t && (r.cache ?? cache) === cache);
  const g1 = get(1, 1);
  const g2 = get(1, 2);
  const bw2 = probes.read_bw.get(2)?.gbps;
  const peak2 = probes.int8_peak.get(2)?.gops;
  const b128 = get(128, 2);
  const [kernel, shape] = k.split(' ');
  console.log(
    `| ${kernel} | ${shape} | ${best} | ${fmt(g1?.gbps)} | ${fmt(g2?.gbps)} | ${g2 && bw2 ? fmt((100 * g2.gbps) / bw2, 0) : '–'} | ${fmt(get(1, 2, 'cache')?.gbps)} | ` +
      `${ref && g2 ? fmt(ref.ms / g2.ms, 0) : '–'} | ${fmt(get(8, 2)?.gops, 0)} | ${fmt(b128?.gops, 0)} | ${b128 && peak2 && kernel !== 'f16' ? fmt((100 * b128.gops) / peak2, 0) : '–'} |`,
  );
}
