#!/usr/bin/env bash
# Installs the peer implementation used by test/peer.test.ts (docs/peer-agreement.md):
# node-llama-cpp with its prebuilt CPU-only llama.cpp binary for linux-x64, into .peers/ at the
# repository root -- outside the package's own node_modules and never published.
# node-llama-cpp also carries llama.cpp's source (llama/gitRelease.bundle), from which
# scripts/test-data.mjs takes the tokenizer tests' vocabulary files: on every other platform the
# package is installed without the binary (there is no peer to run there, but the test data is needed).
#
#  * --omit=optional keeps npm from pulling the other 13 platform/GPU prebuilt packages;
#    @node-llama-cpp/linux-x64 (the plain CPU build) is named explicitly instead.
#  * --ignore-scripts + NODE_LLAMA_CPP_SKIP_DOWNLOAD: node-llama-cpp's postinstall must not try to
#    download or compile llama.cpp; the test loads the prebuilt binary with build: 'never'.
#  * Idempotent: does nothing when the pinned versions are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=3.22.1
PEERS=.peers

# The pinned prebuilt llama.cpp (@node-llama-cpp/linux-x64) is for Linux x86_64 only.
packages=("node-llama-cpp")
if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ]; then
  packages+=("@node-llama-cpp/linux-x64")
else
  echo "install-peers: $(uname -s)-$(uname -m): node-llama-cpp only (llama.cpp's source for the test data); its prebuilt binary is for Linux x86_64"
fi
specs=("${packages[@]/%/@$VERSION}")

installed() {
  node -e '
    const [dir, v, ...names] = process.argv.slice(1);
    const p = (n) => require(require("path").resolve(dir, "node_modules", n, "package.json")).version;
    process.exit(names.every((n) => p(n) === v) ? 0 : 1);
  ' "$PEERS" "$VERSION" "${packages[@]}" 2>/dev/null
}

if installed; then
  echo "install-peers: ${specs[*]} already in $PEERS/"
  exit 0
fi

mkdir -p "$PEERS"
# A package.json of its own so npm installs here instead of walking up to bitllm's.
cat > "$PEERS/package.json" <<JSON
{ "name": "bitllm-peers", "private": true, "description": "test-only peers, see docs/peer-agreement.md" }
JSON

echo "install-peers: installing ${specs[*]} into $PEERS/"
NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --prefix "$PEERS" --no-save --omit=optional --ignore-scripts \
  --no-audit --no-fund --no-package-lock "${specs[@]}"

installed || { echo "install-peers: install finished but ${specs[*]} are not in $PEERS/node_modules" >&2; exit 1; }
echo "install-peers: done ($(du -sh "$PEERS" | cut -f1))"
