"""The BitNet b1.58 2B-4T block at tiny scale, with one BitLinear variant per family (docs/training.md).

    h = x + Wo·subnorm_attn(Attn(RoPE(Wq·n), RoPE(Wk·n), Wv·n)),  n = RMSNorm_attn(x)
    y = h + Wdown·subnorm_ffn(relu(Wgate·m)² ⊙ Wup·m),             m = RMSNorm_ffn(h)
    logits = RMSNorm_out(y_L) · Eᵀ                                  (tied embeddings)

NEOX RoPE, GQA, no biases. `Config.block = 'llama'` builds the upstream LLaMA block instead (FBI-LLM's and
OneBit's released models, families.md §4-§5): no sub-norms, SiLU-gated FFN, an untied output head. Families (formats.md §5; straight-through estimators throughout):
  fp16    the full-precision teacher (trained in fp32, exported as F16)
  b158    absmean ternary weights (one scale per tensor), per-token absmax int8 activations
  bitnet  sign(W − mean W) weights times β = mean|W|, per-token absmax int8 activations
  fbi     α ⊙ sign(W) + β with learnable column-wise α, β; full-precision activations
  onebit  LN_noaffine(((x ⊙ g) · sign(W)ᵀ) ⊙ h); full-precision activations
  a48     b1.58 weights; int4 absmean inputs to q/k/v and gate/up, top-50 % sparsified int8 input to the
          attention output projection, int8 down-projection input, 3-bit K/V
"""
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

FAMILIES = ('fp16', 'b158', 'bitnet', 'fbi', 'onebit', 'a48')
PROJECTIONS = ('attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down')
SQRT7 = math.sqrt(7.0)


@dataclass
class Config:
    vocab: int = 4096
    d: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_head_kv: int = 2
    ff: int = 768
    ctx: int = 256
    rope_theta: float = 10000.0
    eps: float = 1e-5
    block: str = 'bitnet'  # 'bitnet': sub-norms, ReLU² GLU, tied head; 'llama': none, SiLU GLU, untied head

    @property
    def head_dim(self):
        return self.d // self.n_head

    @property
    def dkv(self):
        return self.n_head_kv * self.head_dim

    def proj_shape(self, name):
        """(out M, in K) of a projection."""
        d, dkv, ff = self.d, self.dkv, self.ff
        return {'attn_q': (d, d), 'attn_k': (dkv, d), 'attn_v': (dkv, d), 'attn_output': (d, d),
                'ffn_gate': (ff, d), 'ffn_up': (ff, d), 'ffn_down': (d, ff)}[name]

    def to_dict(self):
        return asdict(self)


# ---------------------------------------------------------------- quantizers (fake-quant + STE)

def ste(x, q):
    """Forward q, backward identity to x."""
    return x + (q - x).detach()


def act_quant_i8(x):
    """Per-token absmax int8 (lib/reference/act_quant.ts): s = 127/max(max|x|, 1e-5), q = clamp(rne(x·s), −128, 127)."""
    s = 127.0 / x.detach().abs().amax(-1, keepdim=True).clamp(min=1e-5)
    return ste(x, (x * s).round().clamp(-128, 127) / s)


def act_quant_i4(x):
    """Per-token absmean int4 (BitNet a4.8): β = mean|x|, s = √7/(β + 1e-5), q = clamp(rne(x·s), −8, 7)."""
    s = SQRT7 / (x.detach().abs().mean(-1, keepdim=True) + 1e-5)
    return ste(x, (x * s).round().clamp(-8, 7) / s)


def topk_half(x):
    """Keeps the larger-magnitude half of each token's values (a4.8's TopK 50 %), zeroes the rest."""
    k = x.shape[-1] // 2
    idx = x.detach().abs().topk(k, dim=-1).indices
    mask = torch.zeros_like(x).scatter_(-1, idx, 1.0)
    return x * mask


def kv_quant_q3(x):
    """3-bit K/V: per 32-value block, d = amax/3, q = clamp(rne(x/d), −4, 3) (7 levels used)."""
    shape = x.shape
    b = x.reshape(*shape[:-1], shape[-1] // 32, 32)
    d = b.detach().abs().amax(-1, keepdim=True) / 3.0
    q = torch.where(d > 0, (b / d.clamp(min=1e-30)).round().clamp(-4, 3) * d, torch.zeros_like(b))
    return ste(x, q.reshape(shape))


def sign_pos(w):
    """sign with sign(0) = +1 (the packed formats have no zero)."""
    return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))


def weight_ternary(w):
    """Absmean ternary (BitNet b1.58): γ = mean|W|, W_q = clamp(rne(W/γ), −1, 1)·γ."""
    g = w.detach().abs().mean().clamp(min=1e-5)
    return ste(w, (w / g).round().clamp(-1, 1) * g)


def weight_binary(w):
    """BitNet: sign(W − α)·β, α = mean W, β = mean|W|."""
    wd = w.detach()
    return ste(w, sign_pos(wd - wd.mean()) * wd.abs().mean())


# ---------------------------------------------------------------- linear layers

class BitLinear(nn.Module):
    """One projection of family `family`; `act` is the activation quantizer of its input."""

    def __init__(self, family, M, K, act='i8'):
        super().__init__()
        self.family, self.M, self.K, self.act = family, M, K, act
        self.weight = nn.Parameter(torch.empty(M, K))
        nn.init.normal_(self.weight, std=0.02)
        if family == 'fbi':
            self.alpha = nn.Parameter(torch.ones(K))
            self.beta = nn.Parameter(torch.zeros(K))
            self.init_fbi()
        elif family == 'onebit':
            self.g = nn.Parameter(torch.ones(K))
            self.h = nn.Parameter(torch.ones(M))

    @torch.no_grad()
    def init_fbi(self):
        """FBI-LLM's xnor init: β_j = mean_o W[o, j], α_j = mean_o |W[o, j] − β_j|."""
        self.beta.copy_(self.weight.mean(0))
        self.alpha.copy_((self.weight - self.beta).abs().mean(0))

    @torch.no_grad()
    def init_onebit(self, w):
        """OneBit's SVID from a full-precision W: S = sign(W), |W| ≈ h gᵀ (rank-1, first singular pair)."""
        self.weight.copy_(w)
        u, s, vh = torch.linalg.svd(w.abs(), full_matrices=False)
        a = u[:, 0].abs() * s[0].sqrt()
        b = vh[0].abs() * s[0].sqrt()
        self.h.copy_(a)
        self.g.copy_(b)

    def quant_input(self, x):
        if self.act == 'i8':
            return act_quant_i8(x)
        if self.act == 'i4':
            return act_quant_i4(x)
        if self.act == 'topk_i8':
            return act_quant_i8(topk_half(x))
        return x  # 'none'

    def forward(self, x):
        f = self.family
        if f == 'fp16':
            return F.linear(x, self.weight)
        if f in ('b158', 'a48'):
            return F.linear(self.quant_input(x), weight_ternary(self.weight))
        if f == 'bitnet':
            return F.linear(self.quant_input(x), weight_binary(self.weight))
        if f == 'fbi':
            w = self.alpha * ste(self.weight, sign_pos(self.weight.detach())) + self.beta
            return F.linear(x, w)
        if f == 'onebit':
            s = ste(self.weight, sign_pos(self.weight.detach()))
            y = F.linear(x * self.g, s) * self.h
            return F.layer_norm(y, (self.M,), eps=1e-5)
        raise ValueError(f)


def input_act(family, name):
    """Activation quantizer of a projection's input."""
    if family in ('b158', 'bitnet'):
        return 'i8'
    if family == 'a48':
        return {'attn_output': 'topk_i8', 'ffn_down': 'i8'}.get(name, 'i4')
    return 'none'


# ---------------------------------------------------------------- model

def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(cfg, T, device=None):
    """cos/sin [T, head_dim/2] as the engine forms them: inv_freq = f32(θ^(−2i/n)), angle = f32(pos)·inv_freq in f32."""
    half = cfg.head_dim // 2
    inv = torch.tensor([cfg.rope_theta ** (-2.0 * i / cfg.head_dim) for i in range(half)], dtype=torch.float32)
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    return ang.cos().to(device), ang.sin().to(device)


def rope_neox(x, cos, sin):
    """x [B, H, T, hd]: pairs (i, i + hd/2)."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Block(nn.Module):
    def __init__(self, cfg, family):
        super().__init__()
        self.cfg, self.family = cfg, family
        d, ff = cfg.d, cfg.ff
        self.attn_norm = nn.Parameter(torch.ones(d))
        self.ffn_norm = nn.Parameter(torch.ones(d))
        if cfg.block == 'bitnet':
            self.attn_sub_norm = nn.Parameter(torch.ones(d))
            self.ffn_sub_norm = nn.Parameter(torch.ones(ff))
        self.proj = nn.ModuleDict({n: BitLinear(family, *cfg.proj_shape(n), act=input_act(family, n)) for n in PROJECTIONS})

    def forward(self, x, cos, sin, mask):
        cfg = self.cfg
        B, T, _ = x.shape
        H, G, hd = cfg.n_head, cfg.n_head_kv, cfg.head_dim
        n = rmsnorm(x, self.attn_norm, cfg.eps)
        q = self.proj['attn_q'](n).view(B, T, H, hd).transpose(1, 2)
        k = self.proj['attn_k'](n).view(B, T, G, hd).transpose(1, 2)
        v = self.proj['attn_v'](n).view(B, T, G, hd).transpose(1, 2)
        q, k = rope_neox(q, cos, sin), rope_neox(k, cos, sin)
        if self.family == 'a48':
            k, v = kv_quant_q3(k), kv_quant_q3(v)
        k = k.repeat_interleave(H // G, dim=1)
        v = v.repeat_interleave(H // G, dim=1)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd)) + mask
        a = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, cfg.d)
        if cfg.block == 'bitnet':
            a = rmsnorm(a, self.attn_sub_norm, cfg.eps)
        x = x + self.proj['attn_output'](a)
        m = rmsnorm(x, self.ffn_norm, cfg.eps)
        if cfg.block == 'bitnet':
            hmid = F.relu(self.proj['ffn_gate'](m)).square() * self.proj['ffn_up'](m)
            hmid = rmsnorm(hmid, self.ffn_sub_norm, cfg.eps)
        else:
            hmid = F.silu(self.proj['ffn_gate'](m)) * self.proj['ffn_up'](m)
        return x + self.proj['ffn_down'](hmid)


class TinyLM(nn.Module):
    def __init__(self, cfg, family):
        super().__init__()
        assert family in FAMILIES, family
        self.cfg, self.family = cfg, family
        self.embed = nn.Parameter(torch.randn(cfg.vocab, cfg.d) * 0.02)
        self.blocks = nn.ModuleList([Block(cfg, family) for _ in range(cfg.n_layer)])
        self.output_norm = nn.Parameter(torch.ones(cfg.d))
        if cfg.block == 'llama':  # untied head
            self.output = nn.Parameter(torch.randn(cfg.vocab, cfg.d) * 0.02)
        self._tables = {}

    def tables(self, T, device):
        key = (T, str(device))
        if key not in self._tables:
            cos, sin = rope_tables(self.cfg, T, device)
            mask = torch.full((T, T), float('-inf'), device=device).triu(1)
            self._tables[key] = (cos, sin, mask)
        return self._tables[key]

    def forward(self, tokens):
        T = tokens.shape[1]
        cos, sin, mask = self.tables(T, tokens.device)
        x = F.embedding(tokens, self.embed)
        for blk in self.blocks:
            x = blk(x, cos, sin, mask)
        head = self.output if self.cfg.block == 'llama' else self.embed
        return rmsnorm(x, self.output_norm, self.cfg.eps) @ head.t()

    def n_params(self):
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def load_from(self, other):
        """Copies every tensor of a model of another family with the same config (FBI/OneBit/a4.8 init)."""
        src = dict(other.named_parameters())
        for name, p in self.named_parameters():
            if name in src and src[name].shape == p.shape:
                p.copy_(src[name])
        if self.cfg.block == 'llama' and 'output' not in src:  # an untied head starts as the tied one
            self.output.copy_(src['embed'])
        for blk in self.blocks:
            for lin in blk.proj.values():
                if lin.family == 'fbi':
                    lin.init_fbi()
                elif lin.family == 'onebit':
                    lin.init_onebit(lin.weight.clone())
