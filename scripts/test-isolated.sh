#!/usr/bin/env bash
# The fresh-clone check (issue 12): clones the committed HEAD into an empty temporary folder (nothing beside
# it: no ../shared), then runs `npm ci && npm test` there with the optional tools out of reach:
#   * PATH is a folder of links to every command on the current PATH except `bible` (Debian's bible-kjv)
#     and qemu-*; python3 stays (node-gyp needs it to build the addon);
#   * PYTHONPATH puts stub `sentencepiece` and `torch` modules first, whose import fails, so nothing in
#     the run can use Debian's python3-sentencepiece or python3-torch;
#   * the environment is cleared except HOME, locale, TMPDIR, proxies and npm's registry/cache settings.
# Uncommitted changes are not part of the check. Exits with npm's status; prints the time taken.
# BITLLM_ISOLATED_PREBUILDS=DIR copies a prebuilds/ folder into the clone first (see below).
# The clone is deleted after a pass and kept for inspection after a failure (BITLLM_ISOLATED_KEEP=1: always).
#
# usage: bash scripts/test-isolated.sh   (npm run test:isolated)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
commit="$(git -C "$root" rev-parse HEAD)"
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
  echo "test-isolated: note: $root has uncommitted changes; checking the committed HEAD $commit only"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/bitllm-isolated.XXXXXX")"
clone="$work/iso/bitllm"   # $work/iso holds the clone and nothing else
tools="$work/tools"
mkdir -p "$work/iso" "$tools/bin" "$tools/python"

# Every command on PATH (first one of each name wins, as in a shell), except the hidden ones.
IFS=: read -r -a path_dirs <<< "$PATH"
for dir in "${path_dirs[@]}"; do
  [ -d "$dir" ] || continue
  for cmd in "$dir"/*; do
    name="${cmd##*/}"
    case "$name" in bible | qemu-*) continue ;; esac
    if [ -x "$cmd" ] && [ ! -d "$cmd" ] && [ ! -e "$tools/bin/$name" ]; then ln -s "$cmd" "$tools/bin/$name"; fi
  done
done
for module in sentencepiece torch; do
  printf 'raise ImportError("%s is hidden by scripts/test-isolated.sh: npm test must not need it")\n' "$module" > "$tools/python/$module.py"
done

echo "test-isolated: cloning $commit into $clone"
git clone -q --no-checkout "$root" "$clone"
git -C "$clone" checkout -q --detach "$commit"
# BITLLM_ISOLATED_PREBUILDS=DIR: copy DIR (a prebuilds/ folder made by scripts/prebuild.sh) into the clone, so
# `npm ci` loads the shipped binaries instead of compiling (CI: the suite then tests what ships, and the source
# build is already proven by prebuild.sh's node-gyp run and ctest's cmake build).
if [ -n "${BITLLM_ISOLATED_PREBUILDS:-}" ]; then
  cp -r "$BITLLM_ISOLATED_PREBUILDS" "$clone/prebuilds"
  echo "test-isolated: using the prebuilds in $BITLLM_ISOLATED_PREBUILDS"
fi

keep_env=(HOME="$HOME" PATH="$tools/bin" PYTHONPATH="$tools/python" LANG="${LANG:-C.UTF-8}" TMPDIR="${TMPDIR:-/tmp}")
for v in CI LC_ALL http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY npm_config_registry npm_config_cache \
  NPM_CONFIG_REGISTRY NPM_CONFIG_CACHE NODE_EXTRA_CA_CERTS SSL_CERT_FILE; do
  if [ -n "${!v:-}" ]; then keep_env+=("$v=${!v}"); fi
done

start=$(date +%s)
set +e
(cd "$clone" && env -i "${keep_env[@]}" bash -c '
  command -v bible >/dev/null && { echo "test-isolated: bible is still on PATH" >&2; exit 1; }
  python3 -c "import sentencepiece" 2>/dev/null && { echo "test-isolated: sentencepiece is still importable" >&2; exit 1; }
  [ -e ../shared ] && { echo "test-isolated: ../shared exists beside the clone" >&2; exit 1; }
  npm ci --no-audit --no-fund && npm test || exit $?
  if [ -d prebuilds ] && [ -e build/Release/bitllm.node ]; then echo "test-isolated: npm ci compiled the addon although prebuilds were given" >&2; exit 1; fi')
status=$?
set -e
elapsed=$(( $(date +%s) - start ))

if [ $status -eq 0 ]; then
  echo "test-isolated: PASS: npm ci && npm test in a fresh clone of $commit, ${elapsed}s"
  if [ "${BITLLM_ISOLATED_KEEP:-0}" = 1 ]; then echo "test-isolated: kept $work"; else rm -rf "$work"; fi
else
  echo "test-isolated: FAIL (status $status) after ${elapsed}s; the clone is kept in $clone" >&2
fi
exit $status
