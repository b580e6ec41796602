"""Trains one tiny model of one family from scratch (docs/training.md) and evaluates it as bitllm would.

usage: /usr/bin/python3 train/train.py --family b158 [--seed 1] [--steps N] [--out DIR]

Writes DIR (default .cache/train/<family>-s<seed>): checkpoint.pt (fp32 master weights), export.safetensors
(the inference tensors, evaluate.py), run.json (config, data, wall time, perplexities).
FBI-LLM and OneBit distil from the FP teacher of the same seed (train `--family fp16` first); BitNet a4.8 is
stage 2 of the b1.58 model of the same seed (train `--family b158` first). The Mamba-2 families (mamba2.py):
`mamba2` is the FP Mamba-2 teacher, `bimamba` (Bi-Mamba) distils from it from scratch (train `--family mamba2`
first); `hybrid` (Bi-Mamba with attention in layers 1 and 5 of 8) distils from the same teacher.
"""
import os

# Threads sleep instead of spinning while they wait: the machine is shared (2 cores), and spinning OpenMP
# barriers collapse under contention. Must be set before libgomp starts (the torch import).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import argparse  # noqa: E402
import json
import math  # noqa: E402
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
import tokenizer as tok  # noqa: E402
from data import CACHE, Batches, token_ids  # noqa: E402
from evaluate import Inference, MambaInference, export_tensors, perplexity  # noqa: E402
from mamba2 import MAMBA_FAMILIES, HybridConfig, Mamba2Config, Mamba2LM, is_mamba_config, mamba_config  # noqa: E402
from model import FAMILIES, Config, TinyLM  # noqa: E402

# Full-training recipe per family: steps of BATCH x 256 tokens, peak learning rate.
RECIPES = {
    'fp16': {'steps': 300, 'lr': 2e-3},
    'b158': {'steps': 400, 'lr': 4e-3},
    'bitnet': {'steps': 250, 'lr': 4e-3},
    'fbi': {'steps': 200, 'lr': 4e-3},
    'onebit': {'steps': 150, 'lr': 1e-3},
    'a48': {'steps': 60, 'lr': 1e-3},
    'mamba2': {'steps': 300, 'lr': 3e-3},
    'bimamba': {'steps': 200, 'lr': 4e-3},
    'hybrid': {'steps': 200, 'lr': 4e-3},
}
# Families that distil from a teacher, and the teacher's family.
TEACHER = {'fbi': 'fp16', 'onebit': 'fp16', 'bimamba': 'mamba2', 'hybrid': 'mamba2'}
ALL_FAMILIES = FAMILIES + MAMBA_FAMILIES
# The windows train/check-mamba.mjs re-scores with the float64 reference (lib/model/mamba2.ts).
CHECK_WINDOWS = 4
BATCH = 16
WARMUP = 0.05
EVAL_CTX = 256


def run_dir(family, seed, tag=''):
    return os.path.join(CACHE, 'train', f'{family}-s{seed}' + (f'-{tag}' if tag else ''))


def load_checkpoint(path, family):
    if not os.path.exists(path):
        hint = {'fp16': 'the FP teacher', 'b158': 'the b1.58 model', 'mamba2': 'the FP Mamba-2 teacher'}[family]
        sys.exit(f'{path} is missing: train {hint} of this seed first (npm run train -- --family {family} --seed N)')
    ck = torch.load(path, map_location='cpu')
    if ck['family'] != family:
        sys.exit(f'{path} is a {ck["family"]} model, expected {family}')
    return build_model(ck['family'], ck['config'], ck['state'])


def build_model(family, config, state=None):
    """A model of `family` from its config dict (checkpoint.pt / run.json), with `state` loaded if given."""
    m = Mamba2LM(mamba_config(config), family) if is_mamba_config(config) else TinyLM(Config(**config), family)
    if state is not None:
        m.load_state_dict(state)
    return m


def lr_at(step, steps, peak):
    """Linear warm-up over 5 % of the steps, then cosine decay to 10 % of the peak."""
    w = max(1, int(WARMUP * steps))
    if step < w:
        return peak * (step + 1) / w
    p = (step - w) / max(1, steps - w)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--family', required=True, choices=ALL_FAMILIES)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--steps', type=int, help='training steps (default: the family recipe)')
    ap.add_argument('--lr', type=float, help='peak learning rate (default: the family recipe)')
    ap.add_argument('--batch', type=int, default=BATCH)
    ap.add_argument('--tag', default='', help='run directory suffix: .cache/train/<family>-s<seed>-<tag> (e.g. smoke)')
    ap.add_argument('--out', help='run directory (default .cache/train/<family>-s<seed>[-<tag>])')
    ap.add_argument('--teacher', help='FP teacher checkpoint for fbi/onebit (default: the fp16 run of this seed and tag) '
                    'or bimamba/hybrid (default: the mamba2 run)')
    ap.add_argument('--init', help='b1.58 checkpoint a48 starts from (default: the b158 run of this seed and tag)')
    ap.add_argument('--block', choices=('bitnet', 'llama'), default='bitnet',
                    help="bitnet: the b1.58 block (sub-norms, ReLU² GLU, tied head); llama: upstream FBI-LLM/OneBit's (none, SiLU, untied)")
    ap.add_argument('--tokenizer', default=tok.DEFAULT_MODEL)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--log-every', type=int, default=10)
    ap.add_argument('--eval', choices=('full', 'val'), default='full',
                    help='full: val and ood (+ the training forward and the A8 variants); val: the quantized val only (smoke)')
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    recipe = RECIPES[a.family]
    steps = a.steps if a.steps is not None else recipe['steps']
    peak = a.lr if a.lr is not None else recipe['lr']
    out = a.out or run_dir(a.family, a.seed, a.tag)
    os.makedirs(out, exist_ok=True)

    sp = tok.load(a.tokenizer)
    mamba = a.family in MAMBA_FAMILIES
    if mamba:
        cfg = (HybridConfig if a.family == 'hybrid' else Mamba2Config)(vocab=sp.get_piece_size())
    else:
        cfg = Config(vocab=sp.get_piece_size(), block=a.block)
    train_ids = token_ids(sp, a.tokenizer, 'train')
    val_ids = token_ids(sp, a.tokenizer, 'val')
    ood_ids = token_ids(sp, a.tokenizer, 'ood')

    model = Mamba2LM(cfg, a.family) if mamba else TinyLM(cfg, a.family)
    teacher = None
    init_from = None
    if a.family in TEACHER:
        tfam = TEACHER[a.family]
        tpath = a.teacher or os.path.join(run_dir(tfam, a.seed, a.tag), 'checkpoint.pt')
        teacher = load_checkpoint(tpath, tfam).eval()
        if a.family == 'bimamba' and teacher.cfg.to_dict() != cfg.to_dict():
            sys.exit(f'{tpath}: the teacher\'s config {teacher.cfg.to_dict()} differs from the student\'s {cfg.to_dict()}')
        if a.family == 'hybrid' and (teacher.cfg.vocab, teacher.cfg.ctx) != (cfg.vocab, cfg.ctx):  # only the outputs must match
            sys.exit(f'{tpath}: the teacher\'s vocabulary / context {teacher.cfg.vocab} / {teacher.cfg.ctx} differ from the student\'s')
        for p in teacher.parameters():
            p.requires_grad_(False)
        if a.family == 'onebit':  # OneBit starts from the FP model (SVID); FBI-LLM trains from scratch
            model.load_from(teacher)
            init_from = os.path.relpath(tpath, out)
    if a.family == 'a48':
        ipath = a.init or os.path.join(run_dir('b158', a.seed, a.tag), 'checkpoint.pt')
        model.load_from(load_checkpoint(ipath, 'b158'))
        init_from = os.path.relpath(ipath, out)

    matrices = [p for n, p in model.named_parameters() if n.endswith('weight') and p.dim() == 2]
    ids = {id(p) for p in matrices}
    others = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW([{'params': matrices, 'weight_decay': 0.1}, {'params': others, 'weight_decay': 0.0}],
                            lr=peak, betas=(0.9, 0.95), eps=1e-8)
    batches = Batches(train_ids, cfg.ctx, a.batch, a.seed)

    print(f'{a.family} seed {a.seed}: {model.n_params()} parameters, {steps} steps x {a.batch} x {cfg.ctx} tokens, '
          f'lr {peak}, {a.threads} threads -> {out}', flush=True)
    log = []
    t0 = time.time()
    for step in range(steps):
        lr = lr_at(step, steps, peak)
        for g in opt.param_groups:
            g['lr'] = lr
        inp, tgt = batches.next()
        logits = model(inp)
        if teacher is not None:  # autoregressive distillation: the teacher's next-token distribution as target
            with torch.no_grad():
                pt = teacher(inp).softmax(-1)
            loss = -(pt * logits.log_softmax(-1)).sum(-1).mean()
        else:
            loss = F.cross_entropy(logits.reshape(-1, cfg.vocab), tgt.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % a.log_every == 0 or step + 1 == steps:
            el = time.time() - t0
            rec = {'step': step + 1, 'loss': round(loss.item(), 4), 'lr': lr, 'seconds': round(el, 1)}
            log.append(rec)
            print(f"step {step + 1:5d}  loss {rec['loss']:.4f}  lr {lr:.2e}  {el:7.1f}s  "
                  f'{(step + 1) * a.batch * cfg.ctx / el:6.0f} tok/s', flush=True)
    wall = time.time() - t0

    model.eval()
    torch.save({'family': a.family, 'config': cfg.to_dict(), 'state': model.state_dict()}, os.path.join(out, 'checkpoint.pt'))
    tensors = export_tensors(model)
    safetensors_io.save(os.path.join(out, 'export.safetensors'), tensors,
                        {'family': a.family, 'config': json.dumps(cfg.to_dict())})

    t1 = time.time()
    inf = MambaInference(tensors, cfg, a.family) if mamba else Inference(tensors, cfg, a.family)
    ev = {'val': perplexity(inf.logits, val_ids, EVAL_CTX)}
    if mamba:  # the first windows of each split, for train/check-mamba.mjs (float64 reference of the GGUF)
        ev['val_check'] = perplexity(inf.logits, val_ids, EVAL_CTX, max_windows=CHECK_WINDOWS)
        ev['ood_check'] = perplexity(inf.logits, ood_ids, EVAL_CTX, max_windows=CHECK_WINDOWS)
    if a.eval == 'full':
        ev['ood'] = perplexity(inf.logits, ood_ids, EVAL_CTX)
        with torch.no_grad():
            ev['val_train_forward'] = perplexity(model, val_ids, EVAL_CTX)
        if a.family in ('fbi', 'onebit'):
            inf8 = Inference(tensors, cfg, a.family, a8=True)
            ev['val_a8'] = perplexity(inf8.logits, val_ids, EVAL_CTX)
            ev['ood_a8'] = perplexity(inf8.logits, ood_ids, EVAL_CTX)
    eval_seconds = time.time() - t1

    info = {
        'family': a.family, 'seed': a.seed, 'config': cfg.to_dict(), 'parameters': model.n_params(),
        'steps': steps, 'batch': a.batch, 'seq': cfg.ctx, 'training_tokens': steps * a.batch * cfg.ctx,
        'lr': peak, 'schedule': f'warmup {WARMUP:.0%} linear, cosine to 10%', 'optimizer': 'AdamW(0.9, 0.95), wd 0.1 on matrices',
        'loss': 'distillation from the FP teacher' if teacher is not None else 'next-token cross-entropy',
        'init': init_from, 'threads': a.threads, 'wall_seconds': round(wall, 1), 'eval_seconds': round(eval_seconds, 1),
        'torch': torch.__version__, 'machine': platform.machine(),
        'tokenizer': os.path.relpath(a.tokenizer, os.path.dirname(CACHE)), 'eval': ev, 'log': log,
    }
    with open(os.path.join(out, 'run.json'), 'w') as f:
        json.dump(info, f, indent=1)
    print(f"done in {wall:.0f}s: val ppl {ev['val']['ppl']:.3f}"
          + (f" (training forward {ev['val_train_forward']['ppl']:.3f}), ood ppl {ev['ood']['ppl']:.3f}" if 'ood' in ev else '')
          + (f", A8 val {ev['val_a8']['ppl']:.3f}" if 'val_a8' in ev else ''), flush=True)

if __name__ == '__main__':
    main()
