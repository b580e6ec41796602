#!/usr/bin/env bash
# CI smoke test of the trainer: 20 steps of every family (FP teacher first: FBI-LLM and OneBit distil from it;
# b1.58 before a4.8, its stage 2; the Mamba-2 teacher before Bi-Mamba and the hybrid), plus FBI-LLM and OneBit in the upstream
# LLaMA block (no sub-norms, SiLU, untied head: the layout of their released checkpoints), export of each to GGUF,
# and `bitllm perplexity` of every export against the trainer's quantized evaluation (within 1 %; the Mamba-2
# families also against lib/model/mamba2.ts's float64 reference, train/check-mamba.mjs). (`bitllm convert` of the smoke models in
# each upstream HF layout: `RUN_ROOT=.cache/train bash train/check-convert.sh` after this; npm run test:convert
# trains its own.) Outputs in .cache/train/*-s1-smoke*
# and .cache/smoke.
# Needs: /usr/bin/python3 with python3-torch, python3-numpy, python3-sentencepiece (Debian), bible-kjv, the npm
# registry (corpus), and the compiled library (npm run build:ts).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${BITLLM_PYTHON:-/usr/bin/python3}
STEPS=${SMOKE_STEPS:-20}
"$PY" -c 'import torch, numpy, sentencepiece' 2>/dev/null || {
  echo "smoke: $PY cannot import torch, numpy and sentencepiece: apt-get install -y python3-torch python3-numpy python3-sentencepiece libopenblas0-openmp" >&2
  exit 1
}
[ -f dist/convert/export.js ] || npx tsc -p tsconfig.json
node scripts/corpus.mjs >/dev/null
mkdir -p .cache/smoke
echo "== smoke: Mamba-2 SSD forms vs the recurrence"
"$PY" train/mamba2.py --check
for family in fp16 b158 bitnet fbi onebit a48 mamba2 bimamba hybrid; do
  echo "== smoke: $family ($STEPS steps)"
  "$PY" train/train.py --family "$family" --seed 1 --steps "$STEPS" --batch 4 --tag smoke --eval val --log-every 10
  for type in $(node -e "import('./dist/convert/export.js').then(m => console.log(m.FAMILY_TYPES['$family'].join(' ')))"); do
    node scripts/export-model.mjs ".cache/train/$family-s1-smoke" --type "$type" -o ".cache/smoke/$family-$type.gguf" --no-manifest
  done
done
for family in fbi onebit; do
  echo "== smoke: $family, LLaMA block ($STEPS steps)"
  "$PY" train/train.py --family "$family" --block llama --seed 1 --steps "$STEPS" --batch 4 --tag smoke-llama --eval val --log-every 10 \
    --teacher .cache/train/fp16-s1-smoke/checkpoint.pt
  node scripts/export-model.mjs ".cache/train/$family-s1-smoke-llama" --type q1_0 -o ".cache/smoke/$family-llama-q1_0.gguf" --no-manifest
done
for family in fp16 b158 bitnet fbi onebit a48 mamba2 bimamba hybrid; do
  for type in $(node -e "import('./dist/convert/export.js').then(m => console.log(m.FAMILY_TYPES['$family'].join(' ')))"); do
    node train/check-parity.mjs ".cache/train/$family-s1-smoke" ".cache/smoke/$family-$type.gguf"
  done
done
for family in mamba2 bimamba hybrid; do  # the float64 reference of lib/model/mamba2.ts on the GGUF vs the trainer
  node train/check-mamba.mjs ".cache/train/$family-s1-smoke" ".cache/smoke/$family-$(node -e "import('./dist/convert/export.js').then(m => console.log(m.FAMILY_TYPES['$family'][0]))").gguf"
done
for family in fbi onebit; do
  node train/check-parity.mjs ".cache/train/$family-s1-smoke-llama" ".cache/smoke/$family-llama-q1_0.gguf"
done
echo "== smoke: ok"
