#!/usr/bin/env bash
# Static gate for prebuilds/linux-<arch>/bitllm.node (run after every prebuild; ~1 s):
#   - the ELF machine matches the folder (x64: x86-64, arm64: aarch64), a shared object
#   - the highest GLIBC_ version needed <= BITLLM_GLIBC_MAX (2.28, what official Node needs),
#     GLIBCXX_ <= 3.4.22 and CXXABI_ <= 1.3.11 (Debian 11 / Ubuntu 20.04 have newer)
#   - NEEDED lists only libc, libm, libstdc++, libgcc_s, libpthread, libdl, ld-linux, and does list
#     libstdc++.so.6 (a statically linked libstdc++ would drop it)
#   - stripped (no .symtab, no .debug_* sections), and within a size budget (x64 1.75 MiB, arm64
#     1.25 MiB; 2026-12-07: 1.24 / 0.79 MB. The first budgets, 1.25 MiB / 768 KiB at 0.91 / 0.55 MB,
#     were outgrown by kernels and families, not by a packaging mistake; the budget stays a backstop
#     for what the two checks above do not name)
# Usage: scripts/check-prebuilds.sh [x64] [arm64]   (default: both; a missing file fails)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
glibc_max="${BITLLM_GLIBC_MAX:-2.28}"
glibcxx_max="${BITLLM_GLIBCXX_MAX:-3.4.22}"
cxxabi_max="${BITLLM_CXXABI_MAX:-1.3.11}"
declare -A budget=([x64]="${BITLLM_SIZE_MAX_X64:-1835008}" [arm64]="${BITLLM_SIZE_MAX_ARM64:-1310720}")
declare -A machine=([x64]="Advanced Micro Devices X86-64" [arm64]="AArch64")
declare -A file_arch=([x64]="x86-64" [arm64]="ARM aarch64")
allowed_needed='^(libc\.so\.6|libm\.so\.6|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libpthread\.so\.0|libdl\.so\.2|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1)$'

arches=("$@")
[ ${#arches[@]} -eq 0 ] && arches=(x64 arm64)

# version_le A B: A <= B in version order.
version_le() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -1)" = "$2" ]; }

# Highest version of the given prefix among the needed symbol versions (.gnu.version_r).
max_version() {  # empty when the file needs no such version (grep finding none must not end the script)
  readelf -V --wide "$1" | { grep -oE "Name: $2[0-9.]+" || true; } | sed "s/Name: $2//" | sort -uV | tail -1
}

status=0
fail() {
  echo "check-prebuilds: $1" >&2
  status=1
}

for arch in "${arches[@]}"; do
  f="$root/prebuilds/linux-$arch/bitllm.node"
  status_before="$status"
  status=0
  if [ ! -f "$f" ]; then
    fail "$f is missing (scripts/prebuild.sh $arch)"
    continue
  fi
  if [ -z "${machine[$arch]:-}" ]; then
    fail "unknown arch folder linux-$arch"
    continue
  fi
  desc="$(file -b "$f")"
  [[ "$desc" == *"shared object"* && "$desc" == *"${file_arch[$arch]}"* ]] ||
    fail "$f: file says '$desc', expected an ${file_arch[$arch]} shared object"
  m="$(readelf -h "$f" | sed -n 's/^ *Machine: *//p')"
  [ "$m" = "${machine[$arch]}" ] || fail "$f: ELF machine '$m', expected '${machine[$arch]}'"

  glibc="$(max_version "$f" GLIBC_)"
  glibcxx="$(max_version "$f" GLIBCXX_)"
  cxxabi="$(max_version "$f" CXXABI_)"
  [ -n "$glibc" ] && ! version_le "$glibc" "$glibc_max" && fail "$f needs GLIBC_$glibc > $glibc_max: $(
    objdump -T "$f" 2>/dev/null | grep -F "GLIBC_$glibc)" | awk '{print $NF}' | tr '\n' ' ')"
  [ -n "$glibcxx" ] && ! version_le "$glibcxx" "$glibcxx_max" && fail "$f needs GLIBCXX_$glibcxx > $glibcxx_max"
  [ -n "$cxxabi" ] && ! version_le "$cxxabi" "$cxxabi_max" && fail "$f needs CXXABI_$cxxabi > $cxxabi_max"

  needed="$(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')"
  while read -r lib; do
    [ -z "$lib" ] && continue
    [[ "$lib" =~ $allowed_needed ]] || fail "$f NEEDs $lib (only libc/libm/libstdc++/libgcc_s/libpthread/ld-linux allowed)"
  done <<<"$needed"
  grep -qx 'libstdc++.so.6' <<<"$needed" || fail "$f does not NEED libstdc++.so.6 (a statically linked libstdc++?)"

  size="$(stat -c %s "$f")"
  [ "$size" -le "${budget[$arch]}" ] || fail "$f is $size bytes, over the budget ${budget[$arch]}"
  if readelf -S --wide "$f" | grep -qE '\.symtab|\.debug_'; then
    fail "$f is not stripped"
  fi

  if [ "$status" -ne 0 ]; then
    echo "check-prebuilds: linux-$arch FAILED" >&2
    continue
  fi
  status="$status_before"
  echo "check-prebuilds: linux-$arch ok: $size bytes, GLIBC_${glibc:-none} GLIBCXX_${glibcxx:-none}" \
    "CXXABI_${cxxabi:-none}, NEEDED $(echo "$needed" | tr '\n' ' ')"
done
exit "$status"
