#!/usr/bin/env bash
# `bitllm convert` against the trainer: train/export_hf.py writes a tiny model in each upstream layout (and the
# direct export of the same weights), train/check-convert.mjs converts it and requires identical tensors and
# logits. Default: seeded untrained models (no corpus needed). With RUN_ROOT=.cache/train (after
# train/smoke.sh), the smoke-trained models: b158-s1-smoke for the b1.58 layouts, fbi/onebit-s1-smoke-llama,
# bimamba-s1-smoke for bi-mamba (written both as torch.save's pytorch_model.bin and as model.safetensors).
# When the shipped Bi-Mamba's run is there (.cache/train/bimamba-s1, npm run train -- --family bimamba), its
# upstream-layout checkpoint must also convert to exactly the tensors of models/tiny-bimamba-q1_0.gguf.
# Needs /usr/bin/python3 with python3-torch, python3-numpy, python3-sentencepiece and the compiled library.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${BITLLM_PYTHON:-/usr/bin/python3}
OUT=.cache/convert
[ -f dist/convert/hf.js ] || npx tsc -p tsconfig.json
rm -rf "$OUT"
mkdir -p "$OUT"
run_of() { case "$1" in fbi-llm) echo fbi-s1-smoke-llama ;; onebit) echo onebit-s1-smoke-llama ;; bi-mamba*) echo bimamba-s1-smoke ;; *) echo b158-s1-smoke ;; esac; }
for layout in 1bitllm bitnet-2b4t-master bitnet-2b4t-packed fbi-llm onebit bi-mamba bi-mamba-safetensors; do
  if [ -n "${RUN_ROOT:-}" ]; then src=(--run "$RUN_ROOT/$(run_of "$layout")"); else src=(--random --seed 1); fi
  case "$layout" in bi-mamba-safetensors) args=(--layout bi-mamba --container safetensors) ;; *) args=(--layout "$layout") ;; esac
  "$PY" train/export_hf.py "${args[@]}" "${src[@]}" --out "$OUT/$layout"
  types=q1_0
  case "$layout" in 1bitllm|bitnet-2b4t-*) types="i2_s tq2_0 tq1_0" ;; esac
  for type in $types; do node train/check-convert.mjs "$OUT/$layout" --type "$type"; done
done
if [ -f .cache/train/bimamba-s1/checkpoint.pt ] && [ -f models/tiny-bimamba-q1_0.gguf ]; then
  "$PY" train/export_hf.py --layout bi-mamba --run .cache/train/bimamba-s1 --out "$OUT/bi-mamba-shipped"
  node train/check-convert.mjs "$OUT/bi-mamba-shipped" --against models/tiny-bimamba-q1_0.gguf
fi
echo "== check-convert: ok"
