#!/usr/bin/env python3
"""PyTorch CPU scaled_dot_product_attention on the shapes of `kdr bench attention`, and our
ratio against it measured on the same machine.

Llama-3-8B attention: Hq 32, Hkv 8, D 128, scale 1/sqrt(128). Cases:
  prefill-2048   one 2048-token causal prompt (is_causal=True)
  decode-4096    one query token over 4096 cached tokens
  decode-16384   one query token over 16384 cached tokens
  decode-32seq   32 decoding sequences, kv_lens spread over 512..8192 exactly as kdr
                 spreads them; torch has no ragged batch, so each sequence is one call
                 (looped), the time is the whole loop.
torch gets contiguous KV (no paging) and GQA through enable_gqa when this torch has it
(else K/V are expanded to 32 heads before timing). Each case is timed with its tensors in
the KV dtype of the matching kdr case (bf16 for prefill-2048 and decode-32seq, f16 for the
single decodes: "same KV dtype") and in f32. The aten kernel SDPA dispatched to is named,
from torch.profiler's op names of one call (e.g. flash = aten::_scaled_dot_product_flash_
attention_for_cpu, math = aten::_scaled_dot_product_attention_math).

Usage:
  python bench/torch_sdpa.py                      # run torch, then `build/kdr bench attention --json`
  python bench/torch_sdpa.py --kdr-json FILE      # ratios against an earlier kdr --json run
  python bench/torch_sdpa.py --no-kdr             # torch alone
  python bench/torch_sdpa.py --no-kdr --json      # one JSON object per (case, dtype), for
                                                  # bench/peer/attention_peers.py

torch is not in python/requirements-dev.txt (its wheels are large): if it is missing and
this is not CI, it is installed into the running interpreter's environment with plain
`pip install torch` from PyPI.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HQ, HKV, D = 32, 8, 128


def ensure_torch(allow_install):
    try:
        import torch  # noqa: F401
    except ImportError:
        if not allow_install:
            sys.exit("torch is not installed (and installing is off: CI or --no-install)")
        print("torch not found: pip install torch (large download, once) ...", flush=True)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "torch"])
    import torch

    return torch


def decode_spread(count, lo, hi):
    """The kv lengths of kdr's decode-32seq case (src/cli/bench_attention.cc, decode_spread)."""
    lens = []
    for i in range(count):
        k = (i * 13) % count
        length = lo if count == 1 else lo + (hi - lo) * k // (count - 1)
        lens.append(max(lo, length - k % 7))
    return lens


def time_ms(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def make_cases(torch, dtype):
    sdpa = torch.nn.functional.scaled_dot_product_attention
    try:  # enable_gqa arrived in torch 2.5; sdpa is a builtin, so probe it with a call
        sdpa(torch.zeros(1, 2, 1, 8), torch.zeros(1, 1, 1, 8), torch.zeros(1, 1, 1, 8), enable_gqa=True)
        has_gqa = True
    except (TypeError, RuntimeError):
        has_gqa = False
    gen = torch.Generator().manual_seed(0)

    def tensors(q_len, kv_len):
        q = torch.randn(1, HQ, q_len, D, generator=gen).to(dtype)
        k = torch.randn(1, HKV, kv_len, D, generator=gen).to(dtype)
        v = torch.randn(1, HKV, kv_len, D, generator=gen).to(dtype)
        if not has_gqa:  # expand outside the timed region
            k = k.repeat_interleave(HQ // HKV, dim=1)
            v = v.repeat_interleave(HQ // HKV, dim=1)
        return q, k, v

    def call(q, k, v, causal):
        kwargs = {"is_causal": causal, "scale": D**-0.5}
        if has_gqa:
            kwargs["enable_gqa"] = True
        return sdpa(q, k, v, **kwargs)

    # Built on first use: only the cases timed in this dtype hold memory.
    makers = {
        "prefill-2048": lambda: (lambda t=tensors(2048, 2048): call(*t, True)),
        "decode-4096": lambda: (lambda t=tensors(1, 4096): call(*t, False)),
        "decode-16384": lambda: (lambda t=tensors(1, 16384): call(*t, False)),
        "decode-32seq": lambda: (
            lambda seqs=[tensors(1, n) for n in decode_spread(32, 512, 8192)]: [
                call(q, k, v, False) for q, k, v in seqs
            ]
        ),
    }
    return makers, has_gqa


# The kdr case (name, kv dtype) each torch case is compared with.
KDR_MATCH = {
    "prefill-2048": ("prefill-2048", "bf16"),
    "decode-4096": ("decode-4096", "f16"),
    "decode-16384": ("decode-16384", "f16"),
    "decode-32seq": ("decode-32seq", "bf16"),
}


def kernel_ops(torch, fn):
    """The aten ops of one call whose names say which SDPA kernel ran."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    names = sorted({e.name for e in prof.events() if "scaled_dot_product" in e.name or "flash" in e.name})
    # The dispatcher's entry point says nothing about the kernel: keep the ops it called.
    inner = [n for n in names if n != "aten::scaled_dot_product_attention"]
    return inner or names


def kernel_name(ops):
    for key, short in (("flash_attention", "flash"), ("efficient_attention", "efficient"),
                       ("attention_math", "math"), ("cudnn", "cudnn")):
        if any(key in op for op in ops):
            return short
    return "unknown"


def load_kdr(args):
    lines = []
    if args.kdr_json:
        with open(args.kdr_json) as f:
            lines = f.read().splitlines()
    elif not args.no_kdr:
        cmd = [args.kdr, "bench", "attention", "--json", "--threads", str(args.threads)]
        print("running:", " ".join(cmd), flush=True)
        lines = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
    results = {}
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            rec = json.loads(line)
            if "case" in rec:
                results[(rec["case"], rec["kv_dtype"])] = rec
    return results


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--kdr", default=os.path.join(root, "build", "kdr"), help="the kdr binary")
    p.add_argument("--kdr-json", help="output of `kdr bench attention --json` to compare with")
    p.add_argument("--no-kdr", action="store_true", help="time torch only")
    p.add_argument("--no-install", action="store_true", help="never pip install torch")
    p.add_argument("--json", action="store_true", help="one JSON object per line per case")
    p.add_argument("--case", action="append", help="only this case (repeatable)")
    args = p.parse_args()

    in_ci = os.environ.get("CI", "") not in ("", "0", "false")
    torch = ensure_torch(allow_install=not (args.no_install or in_ci))
    torch.set_num_threads(args.threads)

    dtypes = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
    rows = []
    for name, (_, kdr_dtype) in KDR_MATCH.items():
        if args.case and name not in args.case:
            continue
        for dtype_name in dict.fromkeys([kdr_dtype, "f32"]):
            makers, has_gqa = make_cases(torch, dtypes[dtype_name])
            fn = makers[name]()
            with torch.inference_mode():
                ms = time_ms(fn, args.reps)
                ops = kernel_ops(torch, fn)
            rows.append({"peer": "torch", "case": name, "torch_dtype": dtype_name, "torch_ms": ms,
                         "kernel": kernel_name(ops), "kernel_ops": ops, "threads": args.threads,
                         "reps": args.reps, "enable_gqa": has_gqa, "torch": torch.__version__,
                         "same_dtype_as_kdr": dtype_name == kdr_dtype})
            del fn

    kdr = load_kdr(args)
    if not args.json:
        print(f"\ntorch {torch.__version__} CPU SDPA, {args.threads} threads, "
              f"enable_gqa={rows[0]['enable_gqa'] if rows else '?'}, median of {args.reps}")
        print(f"{'case':<14} {'torch dtype':<11} {'kernel':<9} {'torch ms':>10} {'kdr kv':<7} {'kdr ms':>10} "
              f"{'torch/kdr':>9}")
    for row in rows:
        match = kdr.get(KDR_MATCH[row["case"]])
        if match:
            row.update(kdr_kv_dtype=match["kv_dtype"], kdr_ms=match["ms"], ratio=row["torch_ms"] / match["ms"])
        if args.json:
            print(json.dumps(row))
            continue
        tail = ""
        if match:
            tail = f"{row['kdr_kv_dtype']:<7} {row['kdr_ms']:>10.3f} {row['ratio']:>8.2f}x"
        print(f"{row['case']:<14} {row['torch_dtype']:<11} {row['kernel']:<9} {row['torch_ms']:>10.3f} {tail}")
    if not args.json:
        print("torch/kdr > 1: kdr is faster. kdr reads a paged KV cache of the dtype shown; torch "
              "gets contiguous K/V of its dtype. kernel: the aten op SDPA ran (torch.profiler).")


if __name__ == "__main__":
    main()
