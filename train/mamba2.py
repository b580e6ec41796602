"""The Mamba-2 block at tiny scale: the FP teacher (`mamba2`), Bi-Mamba (`bimamba`, families.md §8) and the
Bi-Mamba hybrid (`hybrid`: attention layers between Bi-Mamba layers).

    residual += mixer(RMSNorm(residual))                                        (per layer, eps 1e-5)
    mixer:  z | xBC | dt = in_proj(h)              z [d_inner], xBC [d_inner + 2 G N], dt [heads]
            xBC = SiLU(causal depthwise conv1d(xBC) + bias)                      kernel d_conv, zero left padding
            x | B | C = xBC                                                      x as heads x head_dim, B/C as G x N
            per head: dt = softplus(dt + dt_bias), A = −exp(A_log),
                      h_t = exp(dt A) h_{t−1} + dt x_t ⊗ B_t,  y_t = h_t C_t + D x_t
            y = RMSNorm_groups(y ⊙ SiLU(z)) ⊙ w                                  norm_before_gate = False, eps 1e-5
            out = out_proj(y)
    logits = RMSNorm(residual) · Eᵀ                                              (tied embedding)

lib/reference/mamba2.ts is the contract (same order of operations). Bi-Mamba makes in_proj and out_proj
FBI-linears (train/model.py's `fbi` BitLinear: α ⊙ sign(W) + β per input column); everything else stays full
precision. Training runs the SSM in its quadratic ("masked matrix") SSD form over the whole window:
    y = ((C Bᵀ) ⊙ L) (dt ⊙ x) + D x,   L[t, s] = exp(cum_t − cum_s) for s ≤ t, 0 above,  cum = cumsum(dt A)
which equals the recurrence (`python3 train/mamba2.py --check` verifies it against a token-by-token scan).

The hybrid (`HybridConfig`, lib/model/mamba2.ts's 'bi-mamba-hybrid'): the layers in `attn_layers` are attention
mixers instead, every other layer a Bi-Mamba one:
    residual += wo(attention(h)),  h = RMSNorm(residual)                        (weight attn_norm, eps 1e-5)
    q = Wq h (attn_head heads of d_model / attn_head), k = Wk h, v = Wv h (attn_head_kv heads, GQA: query head j
    reads KV head j // (attn_head / attn_head_kv)); NEOX RoPE over the whole head (pairs (i, i + hd/2), angle
    pos · θ^(−2i/hd), positions from 0 = BOS) on q and k; causal softmax(q·k / √hd)·v; wo back to d_model.
No MLP, no biases; Wq, Wk, Wv, Wo are FBI-linears like in_proj / out_proj.
"""
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from model import BitLinear, rmsnorm, rope_neox

MAMBA_FAMILIES = ('mamba2', 'bimamba', 'hybrid')
# The families whose projections are FBI-linears.
BINARY_MAMBA_FAMILIES = ('bimamba', 'hybrid')


@dataclass
class Mamba2Config:
    vocab: int = 4096
    d_model: int = 256
    n_layer: int = 7
    d_inner: int = 512     # expand 2
    d_state: int = 64
    n_head: int = 8        # head_dim 64
    n_group: int = 1
    d_conv: int = 4
    ctx: int = 256
    eps: float = 1e-5      # block and final RMSNorms
    norm_eps: float = 1e-5  # the gated RMSNorm
    block: str = 'mamba2'

    @property
    def head_dim(self):
        return self.d_inner // self.n_head

    @property
    def conv_dim(self):
        return self.d_inner + 2 * self.n_group * self.d_state

    @property
    def in_dim(self):
        return 2 * self.d_inner + 2 * self.n_group * self.d_state + self.n_head

    def to_dict(self):
        return asdict(self)


@dataclass
class HybridConfig(Mamba2Config):
    """Bi-Mamba's shape with attention in the layers `attn_layers` (one in four)."""
    n_layer: int = 8
    attn_layers: tuple = (1, 5)
    attn_head: int = 4
    attn_head_kv: int = 2
    rope_theta: float = 10000.0

    @property
    def attn_head_dim(self):
        return self.d_model // self.attn_head

    def is_attn(self, layer):
        return layer in self.attn_layers


def is_mamba_config(d):
    return d.get('block') == 'mamba2'


def mamba_config(d):
    """The config of a Mamba-2 family from its dict (checkpoint.pt / run.json): a hybrid has `attn_layers`."""
    if 'attn_layers' in d:
        return HybridConfig(**{**d, 'attn_layers': tuple(d['attn_layers'])})
    return Mamba2Config(**d)


def inv_softplus(y):
    """x with softplus(x) = y (y > 0)."""
    return y + torch.log(-torch.expm1(-y))


def causal_conv(xbc, w, b):
    """Depthwise causal conv over [B, T, C] with weight [C, K] (tap K−1 multiplies the current row), bias [C]."""
    T, K = xbc.shape[1], w.shape[1]
    xp = F.pad(xbc, (0, 0, K - 1, 0))  # K − 1 zero rows before the first
    out = b + xp[:, K - 1:] * w[:, K - 1]
    for k in range(K - 1):
        out = out + xp[:, k:k + T] * w[:, k]
    return out


def ssd_quadratic(x, dt, A, Bm, Cm, D, n_group):
    """The SSM over a whole window in its quadratic form. x [B, T, H, P], dt [B, T, H] (after softplus),
    A [H] (negative), Bm/Cm [B, T, G, N], D [H] -> y [B, T, H, P] (D x included; zero initial state)."""
    Bsz, T, H, P = x.shape
    cum = torch.cumsum(dt * A, dim=1)                                       # [B, T, H]
    seg = cum[:, :, None, :] - cum[:, None, :, :]                           # [B, t, s, H] = cum_t − cum_s
    causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    L = torch.exp(seg.masked_fill(~causal[None, :, :, None], float('-inf')))
    cb = torch.einsum('btgn,bsgn->bgts', Cm, Bm)                            # [B, G, t, s]
    cb = cb.repeat_interleave(H // n_group, dim=1)                          # [B, H, t, s]
    M = cb * L.permute(0, 3, 1, 2)
    y = torch.einsum('bhts,bshp->bthp', M, x * dt[..., None])
    return y + D[None, None, :, None] * x


def ssd_chunked(x, dt, A, Bm, Cm, D, n_group, chunk=64):
    """The same SSM in the SSD chunked form (what training runs): the quadratic form within chunks of `chunk`
    rows, a state [H, P, N] carried between them. Same arguments as ssd_quadratic."""
    Bsz, T, H, P = x.shape
    G, N, R = n_group, Bm.shape[-1], H // n_group
    Q = min(chunk, T)
    pad = -T % Q
    if pad:  # zero rows at the end: dt = 0 there (no decay, no input), sliced off below
        x, dt = F.pad(x, (0, 0, 0, 0, 0, pad)), F.pad(dt, (0, 0, 0, pad))
        Bm, Cm = F.pad(Bm, (0, 0, 0, 0, 0, pad)), F.pad(Cm, (0, 0, 0, 0, 0, pad))
    c = (T + pad) // Q
    # heads h = g R + r (head h reads group h // R)
    cum = torch.cumsum((dt * A).reshape(Bsz, c, Q, G, R).permute(0, 3, 4, 1, 2), dim=-1)  # [B, G, R, c, l]
    xdt = (x * dt[..., None]).reshape(Bsz, c, Q, G, R, P)
    Bc, Cc = Bm.reshape(Bsz, c, Q, G, N), Cm.reshape(Bsz, c, Q, G, N)
    causal = torch.ones(Q, Q, dtype=torch.bool, device=x.device).tril()
    L = torch.exp((cum[..., :, None] - cum[..., None, :]).masked_fill(~causal, float('-inf')))  # [B, G, R, c, l, s]
    cb = torch.einsum('bclgn,bcsgn->bgcls', Cc, Bc)
    y = torch.einsum('bgrcls,bcsgrp->bclgrp', L * cb[:, :, None], xdt)
    # the state each chunk adds, and the states entering each chunk
    states = torch.einsum('bclgn,bclgrp->bcgrpn', Bc, xdt * torch.exp(cum[..., -1:] - cum).permute(0, 3, 4, 1, 2)[..., None])
    decay = torch.exp(cum[..., -1])  # [B, G, R, c]
    run = torch.zeros_like(states[:, 0])
    entering = []
    for k in range(c):
        entering.append(run)
        run = decay[..., k, None, None] * run + states[:, k]
    S = torch.stack(entering, dim=1)  # [B, c, G, R, P, N]
    y = y + torch.einsum('bclgn,bcgrpn->bclgrp', Cc, S) * torch.exp(cum).permute(0, 3, 4, 1, 2)[..., None]
    y = y.reshape(Bsz, c * Q, H, P)[:, :T]
    return y + D[None, None, :, None] * x[:, :T]


def ssd_scan(x, dt, A, Bm, Cm, D, n_group):
    """The same SSM token by token (the recurrence; for checks)."""
    Bsz, T, H, P = x.shape
    N = Bm.shape[-1]
    rep = H // n_group
    Bh = Bm.repeat_interleave(rep, dim=2)  # [B, T, H, N]
    Ch = Cm.repeat_interleave(rep, dim=2)
    h = torch.zeros(Bsz, H, P, N, dtype=x.dtype)
    ys = []
    for t in range(T):
        dA = torch.exp(dt[:, t] * A)                                        # [B, H]
        h = dA[..., None, None] * h + (dt[:, t, :, None] * x[:, t])[..., None] * Bh[:, t, :, None, :]
        ys.append((h * Ch[:, t, :, None, :]).sum(-1) + D[None, :, None] * x[:, t])
    return torch.stack(ys, dim=1)


def gated_rmsnorm(y, z, w, n_group, eps):
    """norm_before_gate = False: t = y ⊙ SiLU(z), RMSNorm over each group's d_inner / G channels, ⊙ w."""
    t = y * F.silu(z)
    shp = t.shape
    g = t.reshape(*shp[:-1], n_group, shp[-1] // n_group)
    g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + eps)
    return g.reshape(shp) * w


def mixer_core(cfg, zxbcdt, conv_w, conv_b, dt_bias, A, D, gnorm, ssd=None):
    """Everything of the mixer between in_proj and out_proj; A is −exp(A_log) (given, so that the quantized
    evaluation can use the exported value)."""
    ssd = ssd or ssd_chunked
    Bsz, T, _ = zxbcdt.shape
    di, G, N, H = cfg.d_inner, cfg.n_group, cfg.d_state, cfg.n_head
    z, xbc, dt = torch.split(zxbcdt, [di, cfg.conv_dim, H], dim=-1)
    xbc = F.silu(causal_conv(xbc, conv_w, conv_b))
    x, Bm, Cm = torch.split(xbc, [di, G * N, G * N], dim=-1)
    dt = F.softplus(dt + dt_bias)
    y = ssd(x.reshape(Bsz, T, H, cfg.head_dim), dt, A, Bm.reshape(Bsz, T, G, N), Cm.reshape(Bsz, T, G, N), D, G)
    return gated_rmsnorm(y.reshape(Bsz, T, di), z, gnorm, G, cfg.norm_eps)


class Mamba2Block(nn.Module):
    def __init__(self, cfg, family):
        super().__init__()
        self.cfg = cfg
        lin = 'fbi' if family in BINARY_MAMBA_FAMILIES else 'fp16'
        self.norm = nn.Parameter(torch.ones(cfg.d_model))
        self.in_proj = BitLinear(lin, cfg.in_dim, cfg.d_model, act='none')
        # nn.Conv1d's default init (kaiming-uniform a = √5 and its bias rule): U(±1/√fan_in), fan_in = d_conv.
        bound = 1.0 / math.sqrt(cfg.d_conv)
        self.conv_w = nn.Parameter(torch.empty(cfg.conv_dim, cfg.d_conv).uniform_(-bound, bound))
        self.conv_b = nn.Parameter(torch.empty(cfg.conv_dim).uniform_(-bound, bound))
        # Mamba-2: dt ~ log-uniform [0.001, 0.1] (floored at 1e-4), dt_bias = softplus⁻¹(dt); A ~ U[1, 16]; D = 1.
        dt = torch.exp(torch.rand(cfg.n_head) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(inv_softplus(dt))
        self.A_log = nn.Parameter(torch.log(torch.empty(cfg.n_head).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(cfg.n_head))
        self.gnorm = nn.Parameter(torch.ones(cfg.d_inner))
        self.out_proj = BitLinear(lin, cfg.d_model, cfg.d_inner, act='none')

    def forward(self, x, ssd=None):
        cfg = self.cfg
        h = self.in_proj(rmsnorm(x, self.norm, cfg.eps))
        y = mixer_core(cfg, h, self.conv_w, self.conv_b, self.dt_bias, -torch.exp(self.A_log), self.D, self.gnorm, ssd)
        return x + self.out_proj(y)


def rope_cos_sin(head_dim, theta, T, device=None):
    """NEOX RoPE tables [T, head_dim/2] as the engine forms them (train/model.py rope_tables): inv_freq =
    f32(θ^(−2i/hd)), angle = f32(pos) · inv_freq in f32."""
    inv = torch.tensor([theta ** (-2.0 * i / head_dim) for i in range(head_dim // 2)], dtype=torch.float32)
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    return ang.cos().to(device), ang.sin().to(device)


def attention(cfg, q, k, v, kv_half=False):
    """The hybrid's attention core over [B, T, ·] q (attn_head heads), k, v (attn_head_kv heads): NEOX RoPE on q
    and k, K and V rounded to IEEE half if `kv_half` (the engine's f16 KV cache), causal GQA softmax(q·k/√hd)·v.
    Returns [B, T, attn_head · hd]."""
    B, T, _ = q.shape
    H, G, hd = cfg.attn_head, cfg.attn_head_kv, cfg.attn_head_dim
    cos, sin = rope_cos_sin(hd, cfg.rope_theta, T, q.device)
    cos, sin = cos.to(q.dtype), sin.to(q.dtype)
    q = rope_neox(q.view(B, T, H, hd).transpose(1, 2), cos, sin)
    k = rope_neox(k.view(B, T, G, hd).transpose(1, 2), cos, sin)
    v = v.view(B, T, G, hd).transpose(1, 2)
    if kv_half:
        k, v = k.half().to(q.dtype), v.half().to(q.dtype)
    k = k.repeat_interleave(H // G, dim=1)  # query head j reads KV head j // (H / G)
    v = v.repeat_interleave(H // G, dim=1)
    mask = torch.full((T, T), float('-inf'), dtype=q.dtype, device=q.device).triu(1)
    att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd)) + mask
    return (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H * hd)


class AttnBlock(nn.Module):
    """A hybrid's attention layer: residual += wo(attention(RMSNorm(residual))), FBI-linear q/k/v/o, no MLP."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        dq, dkv = cfg.attn_head * cfg.attn_head_dim, cfg.attn_head_kv * cfg.attn_head_dim
        self.norm = nn.Parameter(torch.ones(cfg.d_model))
        self.wq = BitLinear('fbi', dq, cfg.d_model, act='none')
        self.wk = BitLinear('fbi', dkv, cfg.d_model, act='none')
        self.wv = BitLinear('fbi', dkv, cfg.d_model, act='none')
        self.wo = BitLinear('fbi', cfg.d_model, dq, act='none')

    def forward(self, x, ssd=None):
        h = rmsnorm(x, self.norm, self.cfg.eps)
        return x + self.wo(attention(self.cfg, self.wq(h), self.wk(h), self.wv(h)))


class Mamba2LM(nn.Module):
    def __init__(self, cfg, family):
        super().__init__()
        assert family in MAMBA_FAMILIES, family
        assert (family == 'hybrid') == isinstance(cfg, HybridConfig), (family, type(cfg).__name__)
        self.cfg, self.family = cfg, family
        self.embed = nn.Parameter(torch.randn(cfg.vocab, cfg.d_model) * 0.02)
        attn = cfg.is_attn if family == 'hybrid' else (lambda l: False)
        self.blocks = nn.ModuleList([AttnBlock(cfg) if attn(l) else Mamba2Block(cfg, family) for l in range(cfg.n_layer)])
        self.output_norm = nn.Parameter(torch.ones(cfg.d_model))

    def forward(self, tokens, ssd=None):
        x = F.embedding(tokens, self.embed)
        for blk in self.blocks:
            x = blk(x, ssd)
        return rmsnorm(x, self.output_norm, self.cfg.eps) @ self.embed.t()

    def n_params(self):
        return sum(p.numel() for p in self.parameters())


def _check():
    """The quadratic SSD equals the token-by-token recurrence (float64), for one and several groups; the whole
    model likewise."""
    torch.manual_seed(0)
    for G in (1, 2):
        Bsz, T, H, P, N = 2, 37, 4, 8, 5
        x = torch.randn(Bsz, T, H, P, dtype=torch.float64)
        dt = F.softplus(torch.randn(Bsz, T, H, dtype=torch.float64))
        A = -torch.exp(torch.rand(H, dtype=torch.float64) * 2.7)
        Bm, Cm = torch.randn(Bsz, T, G, N, dtype=torch.float64), torch.randn(Bsz, T, G, N, dtype=torch.float64)
        D = torch.randn(H, dtype=torch.float64)
        b = ssd_scan(x, dt, A, Bm, Cm, D, G)
        for name, a in (('quadratic', ssd_quadratic(x, dt, A, Bm, Cm, D, G)),
                        ('chunked 8', ssd_chunked(x, dt, A, Bm, Cm, D, G, chunk=8)),
                        ('chunked 64', ssd_chunked(x, dt, A, Bm, Cm, D, G, chunk=64))):
            err = ((a - b).abs().max() / b.abs().max()).item()
            print(f'ssd {name} vs scan, {G} group(s): max relative difference {err:.2e}')
            assert err < 1e-12, err
    xbc, w, b = torch.randn(2, 11, 6, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    ref = F.conv1d(xbc.transpose(1, 2), w[:, None, :], b, padding=3, groups=6)[..., :11].transpose(1, 2)
    err = (causal_conv(xbc, w, b) - ref).abs().max().item()
    print(f'causal conv vs torch conv1d: max difference {err:.2e}')
    assert err < 1e-12, err
    cfg = Mamba2Config(vocab=64, d_model=32, n_layer=2, d_inner=64, d_state=8, n_head=4, n_group=2)
    hcfg = HybridConfig(vocab=64, d_model=32, n_layer=3, d_inner=64, d_state=8, n_head=4, n_group=2, attn_layers=(1,),
                        attn_head=4, attn_head_kv=2)
    for fam in MAMBA_FAMILIES:
        m = Mamba2LM(hcfg if fam == 'hybrid' else cfg, fam).double()
        toks = torch.randint(0, 64, (2, 40))
        a, b = m(toks), m(toks, ssd=ssd_scan)
        err = ((a - b).abs().max() / b.abs().max()).item()
        print(f'{fam} model, chunked vs scan: max relative difference {err:.2e}')
        assert err < 1e-10, err
    # the hybrid is causal (its attention layers included): a prefix's logits do not see what follows it
    m = Mamba2LM(hcfg, 'hybrid').double()
    toks = torch.randint(0, 64, (2, 40))
    a, b = m(toks[:, :23]), m(toks)[:, :23]
    err = ((a - b).abs().max() / b.abs().max()).item()
    print(f'hybrid model, prefix vs whole window: max relative difference {err:.2e}')
    assert err < 1e-12, err
    print('ok')


if __name__ == '__main__':
    import sys
    if '--check' in sys.argv[1:]:
        _check()
    else:
        print(__doc__)
