#!/usr/bin/env bash
# Creates (once, cached in .cache/bullseye) the three Debian 11 roots the shipping checks use, so CI can make
# them in the background while the test suite runs (debootstrap is mostly download and unpack):
#   build-amd64    prebuild.sh's build root (build-essential, g++-aarch64-linux-gnu)
#   minbase-amd64  install-test.sh's bare x64 root (no compiler, make or python)
#   minbase-arm64  install-test.sh's arm64 root (first stage only: libc and libstdc++ for qemu -L)
# Usage: sudo scripts/debian-roots.sh     (apt-get install -y debootstrap)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/bullseye-root.sh
source "$root/scripts/bullseye-root.sh"
ensure_debian_root "$(realpath -m "${BITLLM_BUILD_ROOT:-$root/.cache/bullseye/build-amd64}")" amd64 build-essential,g++-aarch64-linux-gnu
ensure_debian_root "$(realpath -m "${BITLLM_INSTALL_ROOT_X64:-$root/.cache/bullseye/minbase-amd64}")" amd64 ""
ensure_debian_root "$(realpath -m "${BITLLM_INSTALL_ROOT_ARM64:-$root/.cache/bullseye/minbase-arm64}")" arm64 "" foreign
