#!/usr/bin/env bash
# Cross-compiles the C++ kernel tests for aarch64 and runs every ctest under qemu-aarch64 twice:
#   -cpu max         every extension qemu implements (dotprod, ...): the NEON dotprod paths run
#   -cpu cortex-a53  plain ARMv8.0, no dotprod: the NEON fallback paths run
# Needs (Debian/Ubuntu): apt-get install -y cmake g++-aarch64-linux-gnu qemu-user
# Env: BITLLM_NEON_BUILD_DIR (default build-neon), BITLLM_QEMU_CPUS (default "max cortex-a53"),
#      BITLLM_NEON_JOBS (parallel build/test jobs, default nproc).
# Exits non-zero on a build failure, any failing test, or when the two CPU models do not select
# different kernel variants (each test's "ISAs: ..." line names the variant that filled its table).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${BITLLM_NEON_BUILD_DIR:-build-neon}"
cpus="${BITLLM_QEMU_CPUS:-max cortex-a53}"
jobs="${BITLLM_NEON_JOBS:-$(nproc 2>/dev/null || echo 2)}"
toolchain="$root/native/cmake/aarch64-linux-gnu.cmake"

for tool in cmake ctest aarch64-linux-gnu-g++ qemu-aarch64; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "test-neon: '$tool' not found; install with: apt-get install -y cmake g++-aarch64-linux-gnu qemu-user" >&2
    exit 1
  fi
done
if [ ! -d /usr/aarch64-linux-gnu/lib ]; then
  echo "test-neon: /usr/aarch64-linux-gnu (the aarch64 libc for qemu -L) is missing; install g++-aarch64-linux-gnu" >&2
  exit 1
fi

first_cpu="${cpus%% *}"
echo "== test-neon: configuring $build (aarch64-linux-gnu, toolchain $toolchain)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
  -DBITLLM_QEMU_CPU="$first_cpu" -DBITLLM_BUILD_BENCH=OFF >/dev/null
echo "== test-neon: building"
cmake --build "$build" --parallel "$jobs"

declare -A isa_lines=()
status=0
for cpu in $cpus; do
  echo
  echo "== test-neon: ctest under qemu-aarch64 -cpu $cpu"
  # Reconfiguring only rewrites the test commands (the emulator line); nothing is rebuilt.
  cmake -S . -B "$build" -DBITLLM_QEMU_CPU="$cpu" >/dev/null
  log="$build/Testing/Temporary/LastTest.log"
  rm -f "$log"
  if ! ctest --test-dir "$build" --output-on-failure --parallel "$jobs"; then
    echo "test-neon: FAILED under -cpu $cpu" >&2
    status=1
  fi
  if [ ! -f "$log" ]; then
    echo "test-neon: no test log under -cpu $cpu" >&2
    status=1
    continue
  fi
  # Every test command must have run under this CPU model.
  ncmd="$(grep -c '^Command: ' "$log" || true)"
  ncpu="$(grep '^Command: ' "$log" | grep -c -F "\"-cpu\" \"$cpu\"" || true)"
  if [ "$ncmd" -eq 0 ] || [ "$ncmd" -ne "$ncpu" ]; then
    echo "test-neon: $((ncmd - ncpu)) of $ncmd test commands did not use -cpu $cpu" >&2
    status=1
  fi
  # Each test prints "ISAs: isa(variant) ..." (its kernel tables) and "name: N checks, F failed".
  summary="$(awk '/^[0-9]+\/[0-9]+ Testing: /{name=$3} /^ISAs:/{print name " " $0}
                  /^[A-Za-z0-9_]+: [0-9]+ checks, [0-9]+ failed$/{print}' "$log" | LC_ALL=C sort)"
  echo "-- [-cpu $cpu] summary ($ncmd tests):"
  sed "s/^/   [-cpu $cpu] /" <<<"$summary"
  isa_lines[$cpu]="$(grep ' ISAs:' <<<"$summary" || true)"
  if [ -z "${isa_lines[$cpu]}" ]; then
    echo "test-neon: no 'ISAs:' line in the test output under -cpu $cpu" >&2
    status=1
  fi
  if ! grep -q 'neon(' <<<"${isa_lines[$cpu]}"; then
    echo "test-neon: the neon kernel table was not tested under -cpu $cpu" >&2
    status=1
  fi
done

# The dotprod and fallback paths must both have run: "max" selects neon-dotprod, "cortex-a53" not.
if [[ " $cpus " == *" max "* && " $cpus " == *" cortex-a53 "* ]]; then
  if ! grep -q 'neon-dotprod' <<<"${isa_lines[max]}"; then
    echo "test-neon: -cpu max did not select a neon-dotprod variant (dotprod not detected?)" >&2
    status=1
  fi
  if grep -q 'neon-dotprod' <<<"${isa_lines[cortex-a53]}"; then
    echo "test-neon: -cpu cortex-a53 selected a neon-dotprod variant (it has no dotprod)" >&2
    status=1
  fi
  if [ "${isa_lines[max]}" == "${isa_lines[cortex-a53]}" ]; then
    echo "test-neon: both CPU models selected the same kernel variants" >&2
    status=1
  fi
fi

echo
if [ "$status" -eq 0 ]; then
  echo "== test-neon: all ctests passed under qemu-aarch64 -cpu {${cpus// /, }}"
else
  echo "== test-neon: FAILED" >&2
fi
exit "$status"
