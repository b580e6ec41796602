#!/usr/bin/env bash
# npm run train -- --family FAMILY|all [--seed N] [train/train.py options]
# Re-creates a tiny reference model: corpus (scripts/corpus.mjs), tokenizer (train/tokenizer.model, trained
# if missing), training (train/train.py), GGUF export. With seed 1 and the family's recipe (no --steps, --lr or
# --batch) the GGUFs replace the shipped ones in models/ and models/manifest.json; otherwise they are written
# next to the run (.cache/train/<family>-s<seed>[-tag]/<family>-<type>.gguf). FAMILY: fp16 b158 bitnet fbi
# onebit a48 mamba2 bimamba hybrid (fbi/onebit need the fp16 run of the seed, a48 the b158 run, bimamba and hybrid
# the mamba2 run);
# all = every family in that order.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${BITLLM_PYTHON:-/usr/bin/python3}
"$PY" -c 'import torch, numpy, sentencepiece' 2>/dev/null || {
  echo "train: $PY cannot import torch, numpy and sentencepiece. On Debian/Ubuntu:" >&2
  echo "  apt-get install -y python3-torch python3-numpy python3-sentencepiece libopenblas0-openmp bible-kjv" >&2
  exit 1
}
family=""; seed=1; tag=""; custom=0; pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --family) family="$2"; shift 2 ;;
    --seed) seed="$2"; pass+=(--seed "$2"); shift 2 ;;
    --tag) tag="-$2"; pass+=(--tag "$2"); shift 2 ;;
    --steps|--lr|--batch) custom=1; pass+=("$1" "$2"); shift 2 ;;
    *) pass+=("$1"); shift ;;
  esac
done
[ -n "$family" ] || { echo "train: --family is required (fp16 b158 bitnet fbi onebit a48 mamba2 bimamba hybrid, or all)" >&2; exit 2; }
[ "$family" = all ] && families=(fp16 b158 bitnet fbi onebit a48 mamba2 bimamba hybrid) || families=("$family")

node scripts/corpus.mjs
[ -f train/tokenizer.model ] || "$PY" train/tokenizer.py
[ -f dist/convert/export.js ] || npx tsc -p tsconfig.json

ship=0
[ "$seed" = 1 ] && [ "$custom" = 0 ] && [ -z "$tag" ] && ship=1
for f in "${families[@]}"; do
  "$PY" train/train.py --family "$f" "${pass[@]}"
  run=".cache/train/$f-s$seed$tag"
  for type in $(node -e "import('./dist/convert/export.js').then(m => console.log(m.FAMILY_TYPES['$f'].slice(0, '$f' === 'b158' ? 2 : 1).join(' ')))"); do
    if [ "$ship" = 1 ]; then out="models/tiny-$f-$type.gguf"; node scripts/export-model.mjs "$run" --type "$type" -o "$out"
    else out="$run/$f-$type.gguf"; node scripts/export-model.mjs "$run" --type "$type" -o "$out" --no-manifest; fi
    case "$f" in
      b158) node train/check-parity.mjs "$run" "$out" ;;
      # the GGUF through lib/model/mamba2.ts's float64 reference vs the trainer, then bitllm perplexity vs the trainer
      mamba2|bimamba|hybrid) node train/check-mamba.mjs "$run" "$out"; node train/check-parity.mjs "$run" "$out" ;;
    esac
  done
done
