#!/usr/bin/env python3
"""kdr's attention against its peers, all timed in one run on this machine (scripts/bench peers).

One after the other, with the same thread count:
  1. `kdr bench attention --json`: every case, with this machine's ceilings (read bandwidth,
     sgemm, the compute unit of each path) measured in the same process;
  2. build-peer/bin/ggml_attention --json: ggml's CPU flash attention (ggml_flash_attn_ext) on
     decode-4096, decode-16384, prefill-2048 (causal mask) and decode-32seq, K/V in f16 and bf16
     (scripts/build_llamacpp builds it);
  3. bench/torch_sdpa.py --json: PyTorch SDPA on the same cases at kdr's KV dtype and f32,
     with the aten kernel that ran.
Then, per case, kdr's time against each peer's at the same KV dtype (ratio = peer ms / kdr ms:
above 1, kdr is faster), and the peer's best configuration where another dtype ran faster.
Every record (kdr's machine line and cases, the peers', the comparisons) goes to --out as one
JSON object a line.

  python bench/peer/attention_peers.py --kdr build/kdr --threads 2 --reps 5 --out run.jsonl
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The kdr cases the peers run, with the KV dtype kdr's case uses.
CASES = [("decode-4096", "f16"), ("decode-16384", "f16"), ("prefill-2048", "bf16"), ("decode-32seq", "bf16")]


def json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def run(cmd, what):
    print(f"running {what}: {' '.join(cmd)}", flush=True)
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        sys.exit(f"{what} failed (exit {proc.returncode})")
    print(f"  {what}: {time.time() - start:.0f} s", flush=True)
    return json_lines(proc.stdout)


def compare(case, kv, kdr_rec, ggml_recs, torch_recs):
    """One comparison record: kdr against each peer at the same KV dtype, and its best."""
    rec = {"comparison": case, "kv_dtype": kv, "kdr_ms": kdr_rec["ms"], "kdr_unit": kdr_rec.get("unit"),
           "kdr_path": kdr_rec.get("path"), "threads": kdr_rec.get("threads")}
    ggml = {r["kv_dtype"]: r for r in ggml_recs if r["case"] == case and r.get("supported")}
    if ggml:
        same = ggml.get(kv)
        if same is None:
            rec["ggml_note"] = f"ggml's CPU flash attention does not take {kv} K/V here; compared with f16"
            same = ggml.get("f16")
        if same is not None:
            rec.update(ggml_kv_dtype=same["kv_dtype"], ggml_ms=same["ms"], ggml_mask=same["mask"],
                       kdr_vs_ggml=same["ms"] / kdr_rec["ms"])
        best = min(ggml.values(), key=lambda r: r["ms"])
        rec.update(ggml_best_kv_dtype=best["kv_dtype"], ggml_best_ms=best["ms"],
                   kdr_vs_ggml_best=best["ms"] / kdr_rec["ms"])
    torch = {r["torch_dtype"]: r for r in torch_recs if r["case"] == case}
    if torch:
        same = torch.get(kv)
        if same is not None:
            rec.update(torch_dtype=kv, torch_ms=same["torch_ms"], torch_kernel=same["kernel"],
                       torch_kernel_ops=same["kernel_ops"], kdr_vs_torch=same["torch_ms"] / kdr_rec["ms"])
        best = min(torch.values(), key=lambda r: r["torch_ms"])
        rec.update(torch_best_dtype=best["torch_dtype"], torch_best_ms=best["torch_ms"],
                   torch_best_kernel=best["kernel"], kdr_vs_torch_best=best["torch_ms"] / kdr_rec["ms"])
    return rec


def fmt_peer(rec, peer, dtype_key, kernel_key=None):
    if f"{peer}_ms" not in rec:
        return "-"
    s = f"{rec[f'{peer}_ms']:.2f} ms {rec[dtype_key]}"
    if kernel_key and kernel_key in rec:
        s += f" {rec[kernel_key]}"
    s += f": {rec[f'kdr_vs_{peer}']:.2f}x"
    best_dtype = rec.get(f"{peer}_best_kv_dtype", rec.get(f"{peer}_best_dtype"))
    if best_dtype and best_dtype != rec[dtype_key]:
        s += f" (best {best_dtype} {rec[f'{peer}_best_ms']:.2f} ms: {rec[f'kdr_vs_{peer}_best']:.2f}x)"
    return s


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kdr", default=os.path.join(ROOT, "build", "kdr"))
    p.add_argument("--ggml", default=os.path.join(ROOT, "build-peer", "bin", "ggml_attention"))
    p.add_argument("--python", default=sys.executable, help="the interpreter with torch")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--no-ggml", action="store_true")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out", help="write every JSON record here, one a line")
    # Any other option goes to `kdr bench attention` (e.g. --q-heads, --decode-kv-block).
    args, kdr_args = p.parse_known_args()

    threads, reps = str(args.threads), str(args.reps)
    kdr_recs = run([args.kdr, "bench", "attention", "--json", "--threads", threads, "--reps", reps] + kdr_args,
                   "kdr bench attention")
    ggml_recs, torch_recs = [], []
    if not args.no_ggml:
        if not os.access(args.ggml, os.X_OK):
            sys.exit(f"{args.ggml} missing: run scripts/build_llamacpp")
        ggml_recs = run([args.ggml, "--json", "--threads", threads, "--reps", reps], "ggml flash attention")
    if not args.no_torch:
        torch_recs = run([args.python, os.path.join(ROOT, "bench", "torch_sdpa.py"), "--no-kdr", "--json",
                          "--threads", threads, "--reps", reps], "torch SDPA")

    machine = next((r["machine"] for r in kdr_recs if "machine" in r), {})
    by_case = {(r["case"], r["kv_dtype"]): r for r in kdr_recs if "case" in r}
    comparisons = []
    for case, kv in CASES:
        if (case, kv) in by_case:
            comparisons.append(compare(case, kv, by_case[(case, kv)], ggml_recs, torch_recs))

    print(f"\ncpu: {machine.get('cpu', '?')}")
    print(f"threads {threads}, median of {reps}; read {machine.get('peak_gbps', 0):.1f} GB/s, "
          f"sgemm {machine.get('peak_gflops', 0):.1f} GFLOP/s")
    for unit, gops in machine.get("compute_ceilings_gops", {}).items():
        print(f"  {unit:<15} " + (f"{gops:9.1f} G(FL)OP/s" if gops is not None else "not on this CPU"))
    print(f"\n{'case':<14} {'kv':<5} {'kdr ms':>9} {'unit':<13} {'MFU':>5} {'roof':>5}  ggml (same kv)  |  torch (same kv)")
    for c in comparisons:
        k = by_case[(c["comparison"], c["kv_dtype"])]
        print(f"{c['comparison']:<14} {c['kv_dtype']:<5} {c['kdr_ms']:>9.3f} {k.get('unit', '?'):<13} "
              f"{100 * k.get('mfu', 0):4.1f}% {100 * k.get('roofline_fraction', 0):4.0f}%  "
              f"{fmt_peer(c, 'ggml', 'ggml_kv_dtype')}  |  {fmt_peer(c, 'torch', 'torch_dtype', 'torch_kernel')}")
        if "ggml_note" in c:
            print(f"{'':<14} note: {c['ggml_note']}")
    print("ratio = peer ms / kdr ms: above 1, kdr is faster. Same threads for all three; ggml's "
          "prefill has a causal mask, its decodes none; torch decode-32seq loops over the sequences.")
    for c in comparisons:
        print(json.dumps(c))
    if args.out:
        with open(args.out, "w") as f:
            for rec in kdr_recs + ggml_recs + torch_recs + comparisons:
                f.write(json.dumps(rec) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
