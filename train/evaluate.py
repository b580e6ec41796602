"""Export tensors and the trainer's quantized evaluation.

`export_tensors(model)` turns a trained model into the inference tensors the GGUF exporter packs
(lib/convert/export.ts), named as in the GGUF; `Inference` runs exactly those tensors the way the bitllm
engine does (lib/model/transformer.ts): F16 embeddings and tied head, per-token int8 activations quantized as
lib/reference/act_quant.ts (s = 127/max(max|x|, 1e-5) in f32, round half to even, clamp), integer dots
scaled as y = (dot · w_scale) / s, K/V rounded to F16 as the engine's cache stores them, and
`bitllm perplexity` windows (BOS + ctx − 1 tokens, every token after BOS scored).

Tensors per family (M = out, K = in; I8 values are trits or signs):
  fp16            <p>.weight F16 [M, K]
  b158, a48       <p>.weight I8 [M, K] in {−1, 0, 1}, <p>.scale F32 [1] (absmean γ, an F16 value)
  bitnet          <p>.weight I8 [M, K] in {−1, 1},    <p>.scale F32 [1] (β = mean|W|, an F16 value)
  fbi             <p>.weight I8 [M, K] in {−1, 1},    <p>.alpha F32 [K], <p>.beta F32 [K]
  onebit          <p>.weight I8 [M, K] in {−1, 1},    <p>.in_scale F32 [K] (g), <p>.out_scale F32 [M] (h)
plus token_embd.weight F16 [V, d], output_norm.weight and blk.N.{attn,attn_sub,ffn,ffn_sub}_norm.weight F32; the
LLaMA block (Config.block = 'llama') has no sub-norms and an untied output.weight F16 [V, d].

The Mamba-2 families (train/mamba2.py; lib/model/mamba2.ts's layout), per layer N (F = 2 d_inner + 2 G N + H,
convDim = d_inner + 2 G N):
  blk.N.attn_norm.weight F32 [d]; blk.N.ssm_in.weight [F, d] and blk.N.ssm_out.weight [d, d_inner]: F16
  (mamba2) or I8 signs with <p>.alpha, <p>.beta F32 [K] (bimamba); blk.N.ssm_conv1d.weight F32 [convDim, d_conv];
  blk.N.ssm_conv1d.bias F32 [convDim]; blk.N.ssm_dt.bias, blk.N.ssm_a (= −exp(A_log), exp in float64, rounded
  to f32 once), blk.N.ssm_d F32 [H]; blk.N.ssm_norm.weight F32 [d_inner]
plus token_embd.weight F16 [V, d] (tied head) and output_norm.weight F32. The hybrid (`hybrid`) has bimamba's
tensors in its Mamba-2 layers and, in each attention layer N: blk.N.attn_norm.weight F32 [d];
blk.N.{attn_q [dq, d], attn_k [dkv, d], attn_v [dkv, d], attn_output [d, dq]}.weight I8 signs with .alpha, .beta
F32 [K] (dq = attn_head · hd, dkv = attn_head_kv · hd).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from data import windows
from mamba2 import AttnBlock, Mamba2LM, attention, mixer_core
from model import PROJECTIONS, SQRT7, rmsnorm, rope_neox, rope_tables, sign_pos


def f16_value(x):
    """x (a float) rounded to the nearest F16 value, as a float32."""
    return float(np.float32(np.float16(x)))


@torch.no_grad()
def export_mamba_tensors(model):
    cfg, fam = model.cfg, model.family
    f32 = lambda p: p.detach().numpy().astype(np.float32)  # noqa: E731
    t = {'token_embd.weight': model.embed.detach().numpy().astype(np.float16), 'output_norm.weight': f32(model.output_norm)}
    for l, blk in enumerate(model.blocks):
        p = f'blk.{l}.'
        t[p + 'attn_norm.weight'] = f32(blk.norm)
        if isinstance(blk, AttnBlock):  # a hybrid's attention layer: four FBI-linears
            for name, lin in (('attn_q', blk.wq), ('attn_k', blk.wk), ('attn_v', blk.wv), ('attn_output', blk.wo)):
                t[f'{p}{name}.weight'] = sign_pos(lin.weight.detach()).numpy().astype(np.int8)
                t[f'{p}{name}.alpha'] = f32(lin.alpha)
                t[f'{p}{name}.beta'] = f32(lin.beta)
            continue
        for name, lin in (('ssm_in', blk.in_proj), ('ssm_out', blk.out_proj)):
            w = lin.weight.detach()
            if fam == 'mamba2':
                t[f'{p}{name}.weight'] = w.numpy().astype(np.float16)
            else:
                t[f'{p}{name}.weight'] = sign_pos(w).numpy().astype(np.int8)
                t[f'{p}{name}.alpha'] = f32(lin.alpha)
                t[f'{p}{name}.beta'] = f32(lin.beta)
        t[p + 'ssm_conv1d.weight'] = f32(blk.conv_w)
        t[p + 'ssm_conv1d.bias'] = f32(blk.conv_b)
        t[p + 'ssm_dt.bias'] = f32(blk.dt_bias)
        # A = −exp(A_log): exp in float64, one rounding to f32 (what bitllm convert computes from A_log too)
        t[p + 'ssm_a'] = (-np.exp(blk.A_log.detach().numpy().astype(np.float64))).astype(np.float32)
        t[p + 'ssm_d'] = f32(blk.D)
        t[p + 'ssm_norm.weight'] = f32(blk.gnorm)
    return t


@torch.no_grad()
def export_tensors(model):
    if isinstance(model, Mamba2LM):
        return export_mamba_tensors(model)
    cfg, fam = model.cfg, model.family
    t = {'token_embd.weight': model.embed.detach().numpy().astype(np.float16),
         'output_norm.weight': model.output_norm.detach().numpy().astype(np.float32)}
    if cfg.block == 'llama':
        t['output.weight'] = model.output.detach().numpy().astype(np.float16)
    norms = ('attn_norm', 'attn_sub_norm', 'ffn_norm', 'ffn_sub_norm') if cfg.block == 'bitnet' else ('attn_norm', 'ffn_norm')
    for l, blk in enumerate(model.blocks):
        p = f'blk.{l}.'
        for n in norms:
            t[f'{p}{n}.weight'] = getattr(blk, n).detach().numpy().astype(np.float32)
        for n in PROJECTIONS:
            lin = blk.proj[n]
            w = lin.weight.detach()
            q = f'{p}{n}.'
            if fam == 'fp16':
                t[q + 'weight'] = w.numpy().astype(np.float16)
            elif fam in ('b158', 'a48'):
                g = w.abs().mean().clamp(min=1e-5)
                t[q + 'weight'] = (w / g).round().clamp(-1, 1).numpy().astype(np.int8)
                t[q + 'scale'] = np.array([f16_value(g.item())], dtype=np.float32)
            elif fam == 'bitnet':
                t[q + 'weight'] = sign_pos(w - w.mean()).numpy().astype(np.int8)
                t[q + 'scale'] = np.array([f16_value(w.abs().mean().item())], dtype=np.float32)
            elif fam == 'fbi':
                t[q + 'weight'] = sign_pos(w).numpy().astype(np.int8)
                t[q + 'alpha'] = lin.alpha.detach().numpy().astype(np.float32)
                t[q + 'beta'] = lin.beta.detach().numpy().astype(np.float32)
            elif fam == 'onebit':
                t[q + 'weight'] = sign_pos(w).numpy().astype(np.int8)
                t[q + 'in_scale'] = lin.g.detach().numpy().astype(np.float32)
                t[q + 'out_scale'] = lin.h.detach().numpy().astype(np.float32)
    return t


def quant_i8(x):
    """lib/reference/act_quant.ts refActQuantI8: codes (as f32) and the per-token scale s."""
    s = torch.tensor(127.0, dtype=torch.float32) / x.abs().amax(-1, keepdim=True).clamp(min=np.float32(1e-5))
    return (x * s).round().clamp(-128, 127), s


def quant_i4(x):
    """lib/reference/act_quant.ts refActQuantI4 (β = Σ|x|/K, s = √7/(β + 1e-5))."""
    beta = x.abs().sum(-1, keepdim=True) / x.shape[-1]
    s = torch.tensor(SQRT7, dtype=torch.float32) / (beta + np.float32(1e-5))
    return (x * s).round().clamp(-8, 7), s


def topk_half(x):
    k = x.shape[-1] // 2
    idx = x.abs().topk(k, dim=-1).indices
    return x * torch.zeros_like(x).scatter_(-1, idx, 1.0)


def kv_q3(x):
    """3-bit K/V (a4.8): per 32 values d = f16(amax/3), q = clamp(rne(x/d), −4, 3), value q·d."""
    shape = x.shape
    b = x.reshape(*shape[:-1], shape[-1] // 32, 32)
    d = (b.abs().amax(-1, keepdim=True) / 3.0).half().float()
    q = torch.where(d > 0, (b / d.clamp(min=1e-30)).round().clamp(-4, 3) * d, torch.zeros_like(b))
    return q.reshape(shape)


class Inference:
    """Forward pass over export tensors, as the engine computes it. `a8` (fbi/onebit only): also quantize the
    (pre-scaled) inputs of the binary projections to int8, as the engine's binary GEMM contract does."""

    def __init__(self, tensors, cfg, family, a8=False):
        self.cfg, self.family, self.a8 = cfg, family, a8
        self.t = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}
        self.E = self.t['token_embd.weight'].float()
        self.H = self.t['output.weight'].float() if 'output.weight' in self.t else self.E
        self.W = {}
        for k, v in self.t.items():
            if k.endswith('.weight') and v.dim() == 2 and not k.startswith('token_embd'):
                self.W[k] = v.float()

    def lin(self, name, x, act):
        fam = self.family
        W = self.W[name + '.weight']
        if fam == 'fp16':
            return x @ W.t()
        if fam in ('b158', 'a48', 'bitnet'):
            ws = self.t[name + '.scale'][0]
            if act == 'i4':
                q, s = quant_i4(x)
            else:
                q, s = quant_i8(topk_half(x) if act == 'topk_i8' else x)
            return ((q @ W.t()) * ws) / s
        if fam == 'fbi':
            a, b = self.t[name + '.alpha'], self.t[name + '.beta']
            bias = (x * b).sum(-1, keepdim=True)
            xa = x * a
            if self.a8:
                q, s = quant_i8(xa)
                return (q @ W.t()) / s + bias
            return xa @ W.t() + bias
        if fam == 'onebit':
            g, h = self.t[name + '.in_scale'], self.t[name + '.out_scale']
            xg = x * g
            if self.a8:
                q, s = quant_i8(xg)
                y = ((q @ W.t()) / s) * h
            else:
                y = (xg @ W.t()) * h
            return F.layer_norm(y, (y.shape[-1],), eps=1e-5)
        raise ValueError(fam)

    def act(self, n):
        if self.family == 'a48':
            return {'attn_output': 'topk_i8', 'ffn_down': 'i8'}.get(n, 'i4')
        return 'i8'

    @torch.no_grad()
    def logits(self, tokens):
        """tokens [B, T] (equal-length windows) -> logits [B, T, V] (float32)."""
        cfg, t = self.cfg, self.t
        B, T = tokens.shape
        H, G, hd = cfg.n_head, cfg.n_head_kv, cfg.head_dim
        cos, sin = rope_tables(cfg, T)
        mask = torch.full((T, T), float('-inf')).triu(1)
        x = self.E[tokens]
        for l in range(cfg.n_layer):
            p = f'blk.{l}.'
            L = lambda n, v: self.lin(p + n, v, self.act(n))  # noqa: E731
            n = rmsnorm(x, t[p + 'attn_norm.weight'], cfg.eps)
            q = L('attn_q', n).view(B, T, H, hd).transpose(1, 2)
            k = L('attn_k', n).view(B, T, G, hd).transpose(1, 2)
            v = L('attn_v', n).view(B, T, G, hd).transpose(1, 2)
            q, k = rope_neox(q, cos, sin), rope_neox(k, cos, sin)
            if self.family == 'a48':
                k, v = kv_q3(k), kv_q3(v)
            else:  # the engine's F16 KV cache
                k, v = k.half().float(), v.half().float()
            k = k.repeat_interleave(H // G, dim=1)
            v = v.repeat_interleave(H // G, dim=1)
            att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd)) + mask
            a = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, cfg.d)
            llama = cfg.block == 'llama'
            if not llama:
                a = rmsnorm(a, t[p + 'attn_sub_norm.weight'], cfg.eps)
            x = x + L('attn_output', a)
            m = rmsnorm(x, t[p + 'ffn_norm.weight'], cfg.eps)
            if llama:
                hmid = F.silu(L('ffn_gate', m)) * L('ffn_up', m)
            else:
                hmid = F.relu(L('ffn_gate', m)).square() * L('ffn_up', m)
                hmid = rmsnorm(hmid, t[p + 'ffn_sub_norm.weight'], cfg.eps)
            x = x + L('ffn_down', hmid)
        return rmsnorm(x, t['output_norm.weight'], cfg.eps) @ self.H.t()


class MambaInference:
    """Forward pass over the export tensors of a Mamba-2 family (float32): F16 embedding and tied head, the
    FBI-linears from their ±1 signs and α, β (bimamba, hybrid) or the F16 matrices (mamba2), A as the exported f32
    value; a hybrid's attention layers with K (after RoPE) and V rounded to IEEE half, as the engine's f16 KV cache
    (and lib/model/mamba2.ts's refAttention) store them."""

    def __init__(self, tensors, cfg, family):
        self.cfg, self.family = cfg, family
        self.t = {k: torch.from_numpy(np.array(v)).float() for k, v in tensors.items()}
        self.E = self.t['token_embd.weight']

    def lin(self, base, x):
        W = self.t[base + '.weight']
        if self.family == 'mamba2':
            return x @ W.t()
        a, b = self.t[base + '.alpha'], self.t[base + '.beta']
        return (x * a) @ W.t() + (x * b).sum(-1, keepdim=True)

    @torch.no_grad()
    def logits(self, tokens):
        cfg, t = self.cfg, self.t
        x = self.E[tokens]
        for l in range(cfg.n_layer):
            p = f'blk.{l}.'
            if self.family == 'hybrid' and cfg.is_attn(l):
                h = rmsnorm(x, t[p + 'attn_norm.weight'], cfg.eps)
                a = attention(cfg, self.lin(p + 'attn_q', h), self.lin(p + 'attn_k', h), self.lin(p + 'attn_v', h), kv_half=True)
                x = x + self.lin(p + 'attn_output', a)
                continue
            h = self.lin(p + 'ssm_in', rmsnorm(x, t[p + 'attn_norm.weight'], cfg.eps))
            y = mixer_core(cfg, h, t[p + 'ssm_conv1d.weight'], t[p + 'ssm_conv1d.bias'], t[p + 'ssm_dt.bias'], t[p + 'ssm_a'],
                           t[p + 'ssm_d'], t[p + 'ssm_norm.weight'])
            x = x + self.lin(p + 'ssm_out', y)
        return rmsnorm(x, t['output_norm.weight'], cfg.eps) @ self.E.t()


@torch.no_grad()
def perplexity(logits_fn, ids, ctx, batch=16, max_windows=None):
    """Mean NLL and perplexity over `bitllm perplexity --ctx ctx` windows of ids (the first `max_windows` of
    them if given). logits_fn: [B, T] -> [B, T, V]."""
    ws = windows(ids, ctx)[:max_windows]
    total, scored = 0.0, 0
    groups = {}
    for w in ws:  # equal lengths batch together (only the last window is shorter)
        groups.setdefault(len(w), []).append(w)
    for n, group in groups.items():
        for i in range(0, len(group), batch):
            toks = torch.tensor(group[i:i + batch], dtype=torch.long)
            lg = logits_fn(toks).double()
            lp = lg[:, :-1].log_softmax(-1).gather(-1, toks[:, 1:, None])[..., 0]
            total -= lp.sum().item()
            scored += lp.numel()
    mean = total / scored
    return {'nll': mean, 'ppl': math.exp(mean), 'n_scored': scored, 'n_windows': len(ws), 'ctx': ctx,
            'n_tokens': sum(len(w) for w in ws)}
