#!/usr/bin/env python3
"""PyTorch on the same card and shapes as rpa_cuda_bench: the peer of issue 24.

Prefill: torch.nn.functional.scaled_dot_product_attention (causal, GQA). Decode and mixed:
torch.nn.attention.varlen.varlen_attn (PyTorch's Flash Attention varlen kernel) reading a
paged cache through block_table where this torch has it; otherwise the same kernel over a
contiguous copy of the KV (the copy is not timed). Each JSON line names the kernel that ran,
the page size it used and the KV dtype (torch's kernels take bf16/f16 caches only).
"""
import inspect
import itertools
import json
import math
import sys

Q_HEADS, KV_HEADS, HEAD_DIM, PAGE_SIZE = 32, 8, 128, 16


def decode_spread(count, lo, hi):
    """kv lengths as decode_spread in src/cli/bench_attention.cc."""
    seqs = []
    for i in range(count):
        k = (i * 13) % count
        length = lo if count == 1 else lo + ((hi - lo) * k) // (count - 1)
        seqs.append((1, max(lo, length - k % 7)))
    return seqs


def cases():
    spread = decode_spread(32, 512, 8192)
    decodes = decode_spread(24, 512, 8192)
    chunks = [(512, 1024 + 512), (512, 4096 + 512)]
    return [
        ("decode-32seq", "bf16", spread),
        ("decode-32seq", "f16", spread),
        ("decode-4096", "f16", [(1, 4096)]),
        ("decode-16384", "f16", [(1, 16384)]),
        ("prefill-2048", "bf16", [(2048, 2048)]),
        ("mixed", "bf16", decodes + chunks),
        ("mixed-decode-part", "bf16", decodes),
        ("mixed-prefill-part", "bf16", chunks),
    ]


def useful_flops(seqs):
    attended = sum(kv - q + j + 1 for q, kv in seqs for j in range(q))
    return attended * Q_HEADS * 4.0 * HEAD_DIM


def bytes_moved(seqs, elem):
    kv_positions = sum(kv for _, kv in seqs)
    tokens = sum(q for q, _ in seqs)
    return kv_positions * 2.0 * KV_HEADS * HEAD_DIM * elem + tokens * 4.0 * (
        2.0 * Q_HEADS + 2.0 * KV_HEADS) * HEAD_DIM


def time_ms(torch, fn, reps):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def sdpa_prefill(torch, seqs, dtype):
    import torch.nn.functional as F
    (q_len, kv_len), = seqs
    q = torch.randn(1, Q_HEADS, q_len, HEAD_DIM, device="cuda", dtype=dtype)
    k = torch.randn(1, KV_HEADS, kv_len, HEAD_DIM, device="cuda", dtype=dtype)
    v = torch.randn_like(k)
    try:
        gqa = "enable_gqa" in inspect.signature(F.scaled_dot_product_attention).parameters
    except (TypeError, ValueError):  # a builtin without a signature: try the argument
        try:
            F.scaled_dot_product_attention(q[:, :, :8], k[:, :, :8], v[:, :, :8],
                                           is_causal=True, enable_gqa=True)
            gqa = True
        except TypeError:
            gqa = False
    if gqa:
        def fn():
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return fn, "sdpa(enable_gqa)", None
    rep = Q_HEADS // KV_HEADS
    k2, v2 = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)

    def fn():
        return F.scaled_dot_product_attention(q, k2, v2, is_causal=True)
    return fn, "sdpa(kv heads repeated, untimed)", None


def varlen(torch, seqs, dtype):
    from torch.nn.attention import varlen as V
    params = inspect.signature(V.varlen_attn).parameters
    n = len(seqs)
    q_lens = [q for q, _ in seqs]
    kv_lens = [kv for _, kv in seqs]
    cu_q = torch.tensor([0] + list(itertools.accumulate(q_lens)),
                        device="cuda", dtype=torch.int32)
    cu_k = torch.tensor([0] + list(itertools.accumulate(kv_lens)),
                        device="cuda", dtype=torch.int32)
    q = torch.randn(sum(q_lens), Q_HEADS, HEAD_DIM, device="cuda", dtype=dtype)
    scale = 1.0 / math.sqrt(HEAD_DIM)
    kw = {}
    if "scale" in params:
        kw["scale"] = scale
    if "enable_gqa" in params:
        kw["enable_gqa"] = True
    causal = {}
    if "window_size" in params:
        causal["window_size"] = (-1, 0)
    elif "is_causal" in params:
        causal["is_causal"] = True
    if "block_table" in params:
        errors = []
        for page in (PAGE_SIZE, 256):  # Flash Attention 2 wants pages of a multiple of 256
            pages = [(kv + page - 1) // page for kv in kv_lens]
            total = sum(pages)
            k = torch.randn(total, page, KV_HEADS, HEAD_DIM, device="cuda", dtype=dtype)
            v = torch.randn_like(k)
            perm = torch.randperm(total, device="cuda", dtype=torch.int32)
            table = torch.zeros(n, max(pages), device="cuda", dtype=torch.int32)
            at = 0
            for i, p in enumerate(pages):
                table[i, :p] = perm[at:at + p]
                at += p
            seqused = torch.tensor(kv_lens, device="cuda", dtype=torch.int32)

            def fn(k=k, v=v, table=table, seqused=seqused):
                return V.varlen_attn(q, k, v, cu_q, cu_k, max(q_lens), max(kv_lens),
                                     block_table=table, seqused_k=seqused, **kw, **causal)
            try:
                fn()
                torch.cuda.synchronize()
                return fn, "varlen_attn(block_table)", page
            except Exception as e:  # noqa: BLE001 - report and try the next page size
                errors.append(f"page {page}: {e}")
        raise RuntimeError("; ".join(errors))
    k = torch.randn(sum(kv_lens), KV_HEADS, HEAD_DIM, device="cuda", dtype=dtype)
    v = torch.randn_like(k)
    if "enable_gqa" not in params:
        k = k.repeat_interleave(Q_HEADS // KV_HEADS, 1)
        v = v.repeat_interleave(Q_HEADS // KV_HEADS, 1)

    def fn():
        return V.varlen_attn(q, k, v, cu_q, cu_k, max(q_lens), max(kv_lens), **kw, **causal)
    return fn, "varlen_attn(contiguous KV: this torch has no block_table)", None


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    try:
        import torch
    except ImportError as e:
        print(json.dumps({"kind": "peer_error", "error": f"no torch: {e}"}))
        return 2
    if not torch.cuda.is_available():
        print(json.dumps({"kind": "peer_error", "error": "torch sees no CUDA device"}))
        return 2
    device = torch.cuda.get_device_name()
    print(json.dumps({"kind": "peer_info", "torch": torch.__version__, "device": device}),
          flush=True)
    failures = 0
    for name, dt, seqs in cases():
        dtype = torch.bfloat16 if dt == "bf16" else torch.float16
        try:
            if name == "prefill-2048":
                fn, kernel, page = sdpa_prefill(torch, seqs, dtype)
                ms = time_ms(torch, fn, reps)  # SDPA picks flash/cuDNN/efficient itself
            else:
                fn, kernel, page = varlen(torch, seqs, dtype)
                ms = time_ms(torch, fn, reps)
            flops, nbytes = useful_flops(seqs), bytes_moved(seqs, 2)
            print(json.dumps({
                "kind": "peer", "case": name, "dtype": dt, "device": device,
                "kernel": kernel, "page_size": page, "ms": round(ms, 4),
                "GB_per_s": round(nbytes / (ms * 1e-3) / 1e9, 1),
                "tflops": round(flops / (ms * 1e-3) / 1e12, 2)}), flush=True)
        except Exception as e:  # noqa: BLE001 - one case failing must not hide the others
            failures += 1
            print(json.dumps({"kind": "peer_error", "case": name, "dtype": dt,
                              "error": str(e)[:500]}), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
