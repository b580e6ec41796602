"""Writes a tiny model as a Hugging Face checkpoint folder in an upstream layout (families.md §2, §4, §5), plus
the trainer's own export of the very same weights, so that `bitllm convert` can be checked against the direct
export (train/check-convert.sh).

usage: /usr/bin/python3 train/export_hf.py --layout L (--run RUN_DIR | --random --seed N [--block B]) --out DIR
                                          [--container bin|safetensors]

Layouts (tensor names, dtypes and containers as upstream; hyperparameters are the tiny model's own):
  1bitllm             1bitLLM/bitnet_b1_58-*: f32 masters, `self_attn.inner_attn_ln` / `mlp.ffn_layernorm`,
                      architectures BitnetForCausalLM; model.safetensors
  bitnet-2b4t-master  microsoft/bitnet-b1.58-2B-4T-bf16: bf16 masters (the model is rounded to bf16 first, and
                      the direct export is taken from the rounded model), `attn_sub_norm` / `ffn_sub_norm`
  bitnet-2b4t-packed  microsoft/bitnet-b1.58-2B-4T: u8 [M/4, K] (row r + i·M/4 in bits 2i..2i+1, code = trit + 1)
                      + `weight_scale` = 1/γ (F32 here so that 1/weight_scale gives γ back exactly; the real files
                      store it bf16) and quantization_config linear_class "bitlinear"
  fbi-llm             LiqunMa/FBI-LLM: latent f32 `weight` + `wscale` / `wbias` [1, K]; pytorch_model.bin
                      written by torch.save (the format save_pretrained(safe_serialization=False) writes)
  onebit              OneBit: int8 [M, K/8] signs (bit k of byte j = column 8j+k, bit 1 = −1) + `input_factor`
                      [K] + `weight_scale` [M]; pytorch_model.bin
  bi-mamba            tangshengku/bi-mamba (families.md §8): mamba_ssm's MambaConfig as config.json, `backbone.*`
                      tensors, latent f32 `mixer.{in,out}_proj.weight` + `wscale` / `wbias` [1, K], conv1d.weight
                      [convDim, 1, K], A_log; pytorch_model.bin (torch.save, lm_head.weight sharing the embedding's
                      storage, as save_pretrained writes a tied model) or, with --container safetensors,
                      model.safetensors (without the tied duplicate)
The folder gets config.json and train/'s tokenizer.model; DIR/direct/export.safetensors + run.json hold the
direct export (scripts/export-model.mjs reads that folder).
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
import tokenizer as tok  # noqa: E402
from evaluate import export_tensors  # noqa: E402
from mamba2 import Mamba2Config, Mamba2LM, is_mamba_config  # noqa: E402
from model import PROJECTIONS, Config, TinyLM, sign_pos  # noqa: E402

LAYOUTS = ('1bitllm', 'bitnet-2b4t-master', 'bitnet-2b4t-packed', 'fbi-llm', 'onebit', 'bi-mamba')
FAMILY = {'1bitllm': 'b158', 'bitnet-2b4t-master': 'b158', 'bitnet-2b4t-packed': 'b158', 'fbi-llm': 'fbi', 'onebit': 'onebit',
          'bi-mamba': 'bimamba'}
HF_PROJ = {'attn_q': 'self_attn.q_proj', 'attn_k': 'self_attn.k_proj', 'attn_v': 'self_attn.v_proj',
           'attn_output': 'self_attn.o_proj', 'ffn_gate': 'mlp.gate_proj', 'ffn_up': 'mlp.up_proj', 'ffn_down': 'mlp.down_proj'}


def load_model(a):
    if a.run:
        ck = torch.load(os.path.join(a.run, 'checkpoint.pt'), map_location='cpu')
        if is_mamba_config(ck['config']):
            m = Mamba2LM(Mamba2Config(**ck['config']), ck['family'])
        else:
            m = TinyLM(Config(**ck['config']), ck['family'])
        m.load_state_dict(ck['state'])
        return m.eval()
    torch.manual_seed(a.seed)
    sp = tok.load(tok.DEFAULT_MODEL)
    if a.layout == 'bi-mamba':
        m = Mamba2LM(Mamba2Config(vocab=sp.get_piece_size(), n_layer=2), 'bimamba')
    else:
        m = TinyLM(Config(vocab=sp.get_piece_size(), n_layer=2, block=a.block), FAMILY[a.layout])
    with torch.no_grad():  # untrained norms and scales are all ones: make them differ
        for n, p in m.named_parameters():
            if p.dim() == 1:
                p.mul_(1 + 0.1 * torch.randn_like(p)) if not n.endswith('beta') else p.add_(0.01 * torch.randn_like(p))
        for blk in m.blocks:
            for lin in getattr(blk, 'proj', {}).values():
                if lin.family == 'onebit':
                    lin.init_onebit(lin.weight.clone())
    return m.eval()


def config_json(cfg, layout):
    if layout == 'bi-mamba':  # mamba_ssm's MambaConfig as BiMambaLMHeadModel.save_pretrained writes it
        return {'d_model': cfg.d_model, 'd_intermediate': 0, 'n_layer': cfg.n_layer, 'vocab_size': cfg.vocab,
                'ssm_cfg': {'layer': 'Mamba2', 'd_state': cfg.d_state, 'd_conv': cfg.d_conv, 'expand': cfg.d_inner // cfg.d_model,
                            'headdim': cfg.head_dim, 'ngroups': cfg.n_group},
                'attn_layer_idx': [], 'attn_cfg': {}, 'rms_norm': True, 'residual_in_fp32': True, 'fused_add_norm': True,
                'pad_vocab_size_multiple': 16, 'tie_embeddings': True}
    c = {'hidden_size': cfg.d, 'intermediate_size': cfg.ff, 'num_hidden_layers': cfg.n_layer, 'num_attention_heads': cfg.n_head,
         'num_key_value_heads': cfg.n_head_kv, 'vocab_size': cfg.vocab, 'max_position_embeddings': cfg.ctx,
         'rms_norm_eps': cfg.eps, 'rope_theta': cfg.rope_theta, 'hidden_act': 'relu2' if cfg.block == 'bitnet' else 'silu',
         'tie_word_embeddings': cfg.block == 'bitnet', 'bos_token_id': 1, 'eos_token_id': 2, 'torch_dtype': 'float32'}
    if layout.startswith('bitnet-2b4t'):
        c.update(model_type='bitnet', architectures=['BitNetForCausalLM'], torch_dtype='bfloat16')
        if layout == 'bitnet-2b4t-packed':
            c['quantization_config'] = {'quant_method': 'bitnet', 'linear_class': 'bitlinear', 'quantization_mode': 'offline'}
    elif layout == '1bitllm':
        c.update(model_type='llama', architectures=['BitnetForCausalLM'], weight_bits=1, input_bits=8)
    elif layout == 'onebit':
        c.update(model_type='bitllama', architectures=['BitLlamaForCausalLMInf'])
    else:
        c.update(model_type='llama', architectures=['LlamaForCausalLM'])
    return c


@torch.no_grad()
def bimamba_tensors(model):
    """BiMambaLMHeadModel's state dict (families.md §8), lm_head.weight being the embedding tensor itself."""
    fl = lambda p: p.detach().float()  # noqa: E731
    emb = fl(model.embed)
    t = {'backbone.embedding.weight': emb}
    for l, blk in enumerate(model.blocks):
        L = f'backbone.layers.{l}.'
        X = L + 'mixer.'
        t[X + 'dt_bias'] = fl(blk.dt_bias)
        t[X + 'A_log'] = fl(blk.A_log)
        t[X + 'D'] = fl(blk.D)
        for name, lin in (('in_proj', blk.in_proj), ('out_proj', blk.out_proj)):
            K = lin.K
            t[f'{X}{name}.weight'] = fl(lin.weight)
            t[f'{X}{name}.wscale'] = fl(lin.alpha).reshape(1, K)
            t[f'{X}{name}.wbias'] = fl(lin.beta).reshape(1, K)
        t[X + 'conv1d.weight'] = fl(blk.conv_w)[:, None, :]
        t[X + 'conv1d.bias'] = fl(blk.conv_b)
        t[X + 'norm.weight'] = fl(blk.gnorm)
        t[L + 'norm.weight'] = fl(blk.norm)
    t['backbone.norm_f.weight'] = fl(model.output_norm)
    t['lm_head.weight'] = emb
    return t


@torch.no_grad()
def hf_tensors(model, layout):
    if layout == 'bi-mamba':
        return bimamba_tensors(model)
    cfg = model.cfg
    bf16 = layout == 'bitnet-2b4t-master'
    fl = (lambda t: t.detach().to(torch.bfloat16)) if bf16 else (lambda t: t.detach().float())
    t = {'model.embed_tokens.weight': fl(model.embed), 'model.norm.weight': fl(model.output_norm)}
    if cfg.block == 'llama':
        t['lm_head.weight'] = fl(model.output)
    sub = ('inner_attn_ln', 'ffn_layernorm') if layout == '1bitllm' else ('attn_sub_norm', 'ffn_sub_norm')
    for l, blk in enumerate(model.blocks):
        L = f'model.layers.{l}.'
        t[L + 'input_layernorm.weight'] = fl(blk.attn_norm)
        t[L + 'post_attention_layernorm.weight'] = fl(blk.ffn_norm)
        if cfg.block == 'bitnet':
            t[L + f'self_attn.{sub[0]}.weight'] = fl(blk.attn_sub_norm)
            t[L + f'mlp.{sub[1]}.weight'] = fl(blk.ffn_sub_norm)
        for p in PROJECTIONS:
            lin = blk.proj[p]
            h = L + HF_PROJ[p] + '.'
            w = lin.weight.detach().float()
            M, K = w.shape
            if layout == 'bitnet-2b4t-packed':
                g = w.abs().mean().clamp(min=1e-5)
                trits = (w / g).round().clamp(-1, 1).to(torch.int64) + 1
                packed = torch.zeros(M // 4, K, dtype=torch.int64)
                for i in range(4):
                    packed |= trits[i * (M // 4):(i + 1) * (M // 4)] << (2 * i)
                t[h + 'weight'] = packed.to(torch.uint8)
                scale = float(np.float32(np.float16(g.item())))  # the exporter's F16 ternary scale
                t[h + 'weight_scale'] = torch.tensor([1.0 / scale], dtype=torch.float32)
            elif layout == 'fbi-llm':
                t[h + 'weight'] = w
                t[h + 'wscale'] = lin.alpha.detach().float().reshape(1, K)
                t[h + 'wbias'] = lin.beta.detach().float().reshape(1, K)
            elif layout == 'onebit':
                bits = (sign_pos(w) < 0).to(torch.int64).reshape(M, K // 8, 8)
                packed = (bits << torch.arange(8)).sum(-1)
                t[h + 'weight'] = packed.to(torch.uint8).view(torch.int8)
                t[h + 'input_factor'] = lin.g.detach().float()
                t[h + 'weight_scale'] = lin.h.detach().float()
            else:
                t[h + 'weight'] = fl(lin.weight)
    return t


def save_safetensors(path, tensors):
    # numpy has no bf16: bf16 tensors go as their raw uint16 bits, labelled BF16 by safetensors_io.save
    arrays = {k: v.contiguous().view(torch.int16).numpy().view(np.uint16) if v.dtype == torch.bfloat16 else v.numpy()
              for k, v in tensors.items()}
    bf = {k for k, v in tensors.items() if v.dtype == torch.bfloat16}
    safetensors_io.save(path, arrays, {'format': 'pt'}, bf16=bf)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--layout', required=True, choices=LAYOUTS)
    ap.add_argument('--run', help='a train/train.py run directory (checkpoint.pt)')
    ap.add_argument('--random', action='store_true', help='an untrained model (seeded): checks the layout, not quality')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--block', choices=('bitnet', 'llama'), help='--random: the block (default: bitnet for b1.58, llama otherwise)')
    ap.add_argument('--out', required=True)
    ap.add_argument('--container', choices=('bin', 'safetensors'),
                    help='bi-mamba: pytorch_model.bin (default, what save_pretrained writes) or model.safetensors')
    a = ap.parse_args()
    if bool(a.run) == bool(a.random):
        sys.exit('give --run RUN_DIR or --random')
    if a.block is None:
        a.block = 'bitnet' if FAMILY[a.layout] == 'b158' else 'llama'
    model = load_model(a)
    if model.family != FAMILY[a.layout]:
        sys.exit(f'{a.layout} needs a {FAMILY[a.layout]} model, the run is {model.family}')
    if a.layout == 'bitnet-2b4t-master':  # the checkpoint holds bf16 masters: the direct export uses the same
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, 'config.json'), 'w') as f:
        json.dump(config_json(model.cfg, a.layout), f, indent=1)
    shutil.copyfile(tok.DEFAULT_MODEL, os.path.join(a.out, 'tokenizer.model'))
    tensors = hf_tensors(model, a.layout)
    container = a.container or ('bin' if a.layout in ('fbi-llm', 'onebit', 'bi-mamba') else 'safetensors')
    for stale in ('pytorch_model.bin', 'model.safetensors'):
        if os.path.exists(os.path.join(a.out, stale)):
            os.remove(os.path.join(a.out, stale))
    if container == 'bin':
        torch.save(dict(tensors), os.path.join(a.out, 'pytorch_model.bin'))
    else:  # safetensors cannot share storage: a tied duplicate is left out (as transformers' save_pretrained does)
        save_safetensors(os.path.join(a.out, 'model.safetensors'),
                         {k: v.contiguous() for k, v in tensors.items() if not (a.layout == 'bi-mamba' and k == 'lm_head.weight')})
    direct = os.path.join(a.out, 'direct')
    os.makedirs(direct, exist_ok=True)
    safetensors_io.save(os.path.join(direct, 'export.safetensors'), export_tensors(model),
                        {'family': model.family, 'config': json.dumps(model.cfg.to_dict())})
    with open(os.path.join(direct, 'run.json'), 'w') as f:
        json.dump({'family': model.family, 'config': model.cfg.to_dict(), 'layout': a.layout}, f, indent=1)
    print(f'{a.layout}: {len(tensors)} tensors -> {a.out}')


if __name__ == '__main__':
    main()
