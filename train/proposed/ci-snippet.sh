# Proposed edits to .ci/run (issue #5). Two parts.

# 1) In the apt block at the top (before `npm ci`), next to the existing need_apt checks: the corpus needs
#    Debian's bible-kjv, test/train-models.test.ts needs python3-sentencepiece, train/smoke.sh needs torch
#    (libopenblas0-openmp: Debian's torch otherwise runs on the reference BLAS, ~30x slower).
command -v bible >/dev/null 2>&1 || need_apt+=(bible-kjv)
/usr/bin/python3 -c 'import torch, numpy, sentencepiece' >/dev/null 2>&1 \
  || need_apt+=(python3-torch python3-numpy python3-sentencepiece libopenblas0-openmp)

# 2) After `npm test` (which already builds dist/ and runs test/convert.test.ts and test/train-models.test.ts):
echo "== trainer smoke: 20 steps of every family, GGUF export, bitllm perplexity parity on b1.58"
bash train/smoke.sh
