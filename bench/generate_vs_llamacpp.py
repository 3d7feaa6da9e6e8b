#!/usr/bin/env python3
"""kdr vs llama.cpp (through llama-cpp-python) on the same GGUF, same machine, same run.

Prompt tokens/s for a 512-token prompt and generation tokens/s for 128 greedy tokens, with
the same thread count. Not run in CI (llama-cpp-python compiles llama.cpp from source):
    .venv-ref/bin/pip install llama-cpp-python
    .venv-ref/bin/python bench/generate_vs_llamacpp.py [--threads 2] [--model PATH]
"""
import argparse
import json
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARA = ("The history of computing is a story of abstraction layered on abstraction. Early machines "
        "were programmed by rewiring panels; later, stored programs let the same hardware run any "
        "algorithm. Compilers turned human-readable code into instructions, operating systems shared "
        "one processor among many tasks, and networks connected machines across continents. ")


def bench_llamacpp(model, threads, n_prompt, n_gen, reps):
    from llama_cpp import Llama
    llm = Llama(model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=n_prompt + n_gen + 8,
                n_batch=n_prompt, verbose=False)
    piece = llm.tokenize(PARA.encode(), add_bos=False)
    toks = [llm.token_bos()]
    while len(toks) < n_prompt:
        toks += piece
    toks = toks[:n_prompt]
    best_pp = best_tg = 0.0
    for _ in range(reps):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(toks)
        t1 = time.perf_counter()
        tok = llm.sample(top_k=1, temp=0.0)
        for _ in range(n_gen - 1):
            llm.eval([tok])
            tok = llm.sample(top_k=1, temp=0.0)
        t2 = time.perf_counter()
        best_pp = max(best_pp, n_prompt / (t1 - t0))
        best_tg = max(best_tg, (n_gen - 1) / (t2 - t1))
    return {"prompt_tps": best_pp, "gen_tps": best_tg}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--kdr", default=os.path.join(ROOT, "build", "kdr"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    model = args.model or open(os.path.join(ROOT, "models", "default.path")).read().strip()
    out = subprocess.run([args.kdr, "bench", "generate", "--json", "-m", model, "-t", str(args.threads),
                          "--reps", str(args.reps)], check=True, capture_output=True, text=True).stdout
    ours = json.loads(out.strip().splitlines()[-1])
    peer = bench_llamacpp(model, args.threads, ours["prompt_tokens"], ours["gen_tokens"], args.reps)
    print(f"{'':24}{'kdr':>10}{'llama.cpp':>12}{'ratio':>8}")
    for key, label in (("prompt_tps", f"prompt {ours['prompt_tokens']} tok/s"), ("gen_tps", f"generate {ours['gen_tokens']} tok/s")):
        print(f"{label:24}{ours[key]:10.1f}{peer[key]:12.1f}{ours[key] / peer[key]:8.2f}x")
    print(f"kdr peak RSS {ours['peak_rss_mb']:.0f} MB (model file {ours['model_file_mb']:.0f} MB, "
          f"KV {ours['kv_cache_mb']:.1f} MB)")


if __name__ == "__main__":
    main()
