"""Corpus files, their token ids (cached), training batches and perplexity windows."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, '.cache')
CORPUS = os.path.join(CACHE, 'corpus')
BOS = 1


def corpus_path(split):
    """Path of train/val/ood text; assembles the corpus (scripts/corpus.mjs) when it is missing."""
    p = os.path.join(CORPUS, f'{split}.txt')
    if not os.path.exists(p):
        r = subprocess.run(['node', os.path.join(ROOT, 'scripts', 'corpus.mjs')], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f'corpus assembly failed:\n{r.stderr}')
    return p


def read_text(split):
    with open(corpus_path(split), encoding='utf-8') as f:
        return f.read()


def token_ids(sp, tokenizer_path, split):
    """sentencepiece ids of a split (no BOS), cached in .cache/tokens as uint16."""
    text = read_text(split)
    with open(tokenizer_path, 'rb') as f:
        key = hashlib.sha256(f.read() + text.encode('utf-8')).hexdigest()[:16]
    os.makedirs(os.path.join(CACHE, 'tokens'), exist_ok=True)
    path = os.path.join(CACHE, 'tokens', f'{split}-{key}.npy')
    if os.path.exists(path):
        return np.load(path)
    ids = np.asarray(sp.encode(text), dtype=np.uint16)
    np.save(path, ids)
    return ids


class Batches:
    """Random training windows: [BOS] + ids[s : s + T − 1] as input, ids[s : s + T] as targets."""

    def __init__(self, ids, T, B, seed):
        self.ids = torch.from_numpy(ids.astype(np.int64))
        self.T, self.B = T, B
        self.gen = torch.Generator().manual_seed(seed)

    def next(self):
        T = self.T
        starts = torch.randint(0, len(self.ids) - T, (self.B,), generator=self.gen)
        idx = starts[:, None] + torch.arange(T)[None, :]
        tgt = self.ids[idx]
        inp = torch.cat([torch.full((self.B, 1), BOS, dtype=torch.long), tgt[:, :-1]], dim=1)
        return inp, tgt


def windows(ids, ctx, bos=BOS):
    """`bitllm perplexity --ctx ctx` windows (lib/cli/perplexity.ts): consecutive runs of ctx − 1 tokens,
    each opened by BOS; a window scores every token after its first. Returns a list of int lists."""
    per = ctx - 1
    out = []
    for i in range(0, len(ids), per):
        w = [bos] + [int(t) for t in ids[i:i + per]]
        if len(w) >= 2:
            out.append(w)
    return out
