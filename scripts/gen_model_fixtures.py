#!/usr/bin/env python3
"""Builds tiny random models of each architecture with transformers, saves them as a
Hugging Face directory (safetensors + config.json) and as GGUF (f32, written here with the
`gguf` package using llama.cpp's tensor names and conventions), and records reference
logits and greedy continuations from transformers.

Not run in CI (needs torch + transformers: `scripts/setup-reference`); its outputs are
committed under tests/data/models/. Usage:
    .venv-ref/bin/python scripts/gen_model_fixtures.py [--out tests/data/models]
"""
import argparse
import json
import os
import struct

import numpy as np
import torch
import gguf
from safetensors.torch import save_file
import transformers
from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

VOCAB = 384
PROMPTS = [
    [1, 17, 250, 3, 99, 128, 7, 300, 45, 12, 201, 64],
    [1, 5, 5, 5, 380, 2, 77, 150, 151, 152, 9, 33, 260, 18, 19, 4, 111, 222, 333, 44],
]
N_GREEDY = 32


def common(hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, ffn=128):
    return dict(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=ffn,
                num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=kv_heads, head_dim=head_dim, max_position_embeddings=256,
                rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def make_models():
    llama = LlamaForCausalLM(LlamaConfig(**common(), rope_theta=10000.0, tie_word_embeddings=False))
    llama31 = LlamaForCausalLM(LlamaConfig(
        **common(), rope_theta=500000.0, tie_word_embeddings=False,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=32)))
    qwen2 = Qwen2ForCausalLM(Qwen2Config(**common(), rope_theta=1000000.0,
                                         tie_word_embeddings=True, use_sliding_window=False))
    qwen3 = Qwen3ForCausalLM(Qwen3Config(**common(), rope_theta=1000000.0,
                                         tie_word_embeddings=True))
    gcfg = common(layers=6, heads=4, kv_heads=1, head_dim=32, hidden=64)
    gemma = Gemma3ForCausalLM(Gemma3TextConfig(
        **gcfg, rope_theta=1000000.0, rope_local_base_freq=10000.0, sliding_window=8,
        query_pre_attn_scalar=32, hidden_activation="gelu_pytorch_tanh",
        layer_types=["sliding_attention"] * 5 + ["full_attention"],
        final_logit_softcapping=None, attn_logit_softcapping=None))
    return {"llama": llama, "llama31": llama31, "qwen2": qwen2, "qwen3": qwen3, "gemma3": gemma}


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (0.0 if "gemma" in type(model).__name__.lower() else 1.0))
            elif "bias" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / np.sqrt(p.shape[-1])) * 1.5)


def llama_permute(w, n_head):
    # llama.cpp's converter reorders Q/K rows so ggml's interleaved-pair RoPE matches HF's
    # half-split form.
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


SPECIALS = ["<pad>", "<s>", "</s>"]
CORPUS = ("the quick brown fox jumps over the lazy dog. the cat sat on the mat. "
          "hello world, this is a test of the tiny tokenizer; numbers 123 and 456. " * 4)


def tiny_bpe_vocab():
    """A real byte-level BPE vocabulary of VOCAB tokens: 3 specials, 256 bytes, then merges
    learned greedily from a small corpus, so the tiny models can tokenize any text."""
    b2u = bytes_to_unicode()
    tokens = SPECIALS + [b2u[b] for b in range(256)]
    words = [[b2u[b] for b in (" " + w if i else w).encode()] for i, w in enumerate(CORPUS.split(" ")) if w]
    merges = []
    while len(tokens) < VOCAB:
        counts = {}
        for w in words:
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        if not counts:
            break
        (a, b), _ = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append(f"{a} {b}")
        tokens.append(a + b)
        for w in words:
            i = 0
            while i < len(w) - 1:
                if w[i] == a and w[i + 1] == b:
                    w[i:i + 2] = [a + b]
                else:
                    i += 1
    while len(tokens) < VOCAB:
        tokens.append(f"<unused{len(tokens)}>")
    return tokens, merges


def save_hf_tokenizer(d, tokens, merges):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, AddedToken
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True) for s in SPECIALS])
    tok.save(os.path.join(d, "tokenizer.json"))


def rope_params(cfg, kind="full_attention"):
    """transformers 5 keeps RoPE settings in rope_parameters (per layer type for Gemma-3);
    older versions in rope_theta / rope_scaling."""
    rp = getattr(cfg, "rope_parameters", None)
    if rp:
        return dict(rp.get(kind, rp))
    out = dict(getattr(cfg, "rope_scaling", None) or {})
    out["rope_theta"] = cfg.rope_theta
    return out


def write_gguf(path, key, model):
    cfg = model.config
    arch = {"llama": "llama", "llama31": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
            "gemma3": "gemma3"}[key]
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"tiny-{key}")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(rope_params(cfg)["rope_theta"])
    w.add_vocab_size(cfg.vocab_size)
    if arch == "gemma3":
        w.add_sliding_window(cfg.sliding_window)
    # A small real byte-level BPE vocabulary (the same one as the folder's tokenizer.json).
    toks, merges = tiny_bpe_vocab()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(toks)
    w.add_token_types([gguf.TokenType.CONTROL] * len(SPECIALS) +
                      [gguf.TokenType.NORMAL] * (cfg.vocab_size - len(SPECIALS)))
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)

    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    is_gemma = arch == "gemma3"

    def put(name, arr):
        w.add_tensor(name, np.ascontiguousarray(arr.astype(np.float32)))

    put("token_embd.weight", sd["model.embed_tokens.weight"])
    norm_off = 1.0 if is_gemma else 0.0  # llama.cpp stores Gemma's (1 + w) norms pre-added
    put("output_norm.weight", sd["model.norm.weight"] + norm_off)
    if "lm_head.weight" in sd and not cfg.tie_word_embeddings:
        put("output.weight", sd["lm_head.weight"])
    if key == "llama31":
        rs = rope_params(cfg)
        dim = cfg.head_dim
        freqs = 1.0 / (rs["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
        lo_wl = rs["original_max_position_embeddings"] / rs["low_freq_factor"]
        hi_wl = rs["original_max_position_embeddings"] / rs["high_freq_factor"]
        factors = []
        for f in freqs:
            wl = 2 * np.pi / f
            if wl < hi_wl:
                factors.append(1.0)
            elif wl > lo_wl:
                factors.append(rs["factor"])
            else:
                smooth = (rs["original_max_position_embeddings"] / wl - rs["low_freq_factor"]) / (
                    rs["high_freq_factor"] - rs["low_freq_factor"])
                factors.append(1.0 / ((1 - smooth) / rs["factor"] + smooth))
        put("rope_freqs.weight", np.array(factors, dtype=np.float32))
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        b = f"blk.{i}."
        q = sd[p + "self_attn.q_proj.weight"]
        k = sd[p + "self_attn.k_proj.weight"]
        if arch == "llama":
            q = llama_permute(q, cfg.num_attention_heads)
            k = llama_permute(k, cfg.num_key_value_heads)
        put(b + "attn_q.weight", q)
        put(b + "attn_k.weight", k)
        put(b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        put(b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        for proj in ("q", "k", "v"):
            if p + f"self_attn.{proj}_proj.bias" in sd:
                put(b + f"attn_{proj}.bias", sd[p + f"self_attn.{proj}_proj.bias"])
        if p + "self_attn.q_norm.weight" in sd:
            put(b + "attn_q_norm.weight", sd[p + "self_attn.q_norm.weight"] + norm_off)
            put(b + "attn_k_norm.weight", sd[p + "self_attn.k_norm.weight"] + norm_off)
        put(b + "attn_norm.weight", sd[p + "input_layernorm.weight"] + norm_off)
        if is_gemma:
            put(b + "post_attention_norm.weight", sd[p + "post_attention_layernorm.weight"] + 1.0)
            put(b + "ffn_norm.weight", sd[p + "pre_feedforward_layernorm.weight"] + 1.0)
            put(b + "post_ffw_norm.weight", sd[p + "post_feedforward_layernorm.weight"] + 1.0)
        else:
            put(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        put(b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        put(b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        put(b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def reference(model):
    out = {"prompts": []}
    model.eval()
    with torch.no_grad():
        for ids in PROMPTS:
            x = torch.tensor([ids])
            logits = model(x).logits[0].float().numpy()
            gen = model.generate(x, max_new_tokens=N_GREEDY, do_sample=False, min_new_tokens=N_GREEDY,
                                 eos_token_id=None, pad_token_id=0)
            cont = gen[0, len(ids):].tolist()
            # Smallest top-1 vs top-2 logit gap along the greedy path: a near tie would make
            # the continuation test fragile, so the fixture records it.
            full = model(gen[:, :-1]).logits[0, len(ids) - 1:].float().numpy()
            srt = np.sort(full, axis=-1)
            gap = float(np.min(srt[:, -1] - srt[:, -2]))
            out["prompts"].append({"ids": ids, "logits": logits, "greedy": cont, "min_gap": gap})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "models"))
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    manifest = {"transformers": transformers.__version__, "torch": torch.__version__, "models": {}}
    for n, (key, model) in enumerate(make_models().items()):
        randomize(model, args.seed + n)
        model = model.float().eval()
        d = os.path.join(args.out, key)
        os.makedirs(d, exist_ok=True)
        model.config.save_pretrained(d)
        sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        if model.config.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
        save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        save_hf_tokenizer(d, *tiny_bpe_vocab())
        write_gguf(os.path.join(args.out, f"{key}.gguf"), key, model)
        ref = reference(model)
        entries = []
        with open(os.path.join(args.out, f"{key}.logits.bin"), "wb") as f:
            for p in ref["prompts"]:
                f.write(p["logits"].astype("<f4").tobytes())
                entries.append({"ids": p["ids"], "greedy": p["greedy"], "min_gap": p["min_gap"]})
        manifest["models"][key] = {"vocab": VOCAB, "prompts": entries}
        print(key, "min top-2 gaps", [round(e["min_gap"], 5) for e in entries])
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
