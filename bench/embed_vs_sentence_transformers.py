#!/usr/bin/env python3
"""Sentence embeddings: `kdr embed` vs sentence-transformers on PyTorch (CPU), same model
(all-MiniLM-L6-v2 from models/embedding.path), same batch of 64 texts, same thread count,
same run.

The batch: the sentences of examples/docs, the research questions and their paraphrases of
examples/, then the fixture sentences of tests/data/embeddings, the first 64 (8 to 60 words;
real text, varied lengths). Tokens are counted once (kdr's tokenizer gives the same ids as
sentence-transformers': tests/model/embedder_test.cc) and without padding, for both.

kdr: `kdr embed --repeat R -t THREADS`, the best of R times of tokenizing and embedding the
batch (it reports it on stderr; model loading excluded). sentence-transformers: torch.set_num_threads(THREADS),
one warm-up, then the best of R calls of model.encode(texts, batch_size=B) for its default
B=32 and for B=64 (tokenization included: it is part of encode). The two alternate,
`--rounds` times, and the best of each is kept, since the machine is shared and noise only
ever slows a run down. The vectors of both are compared (cosine) as a sanity check.

Needs sentence-transformers and torch, which are not project requirements (CI never runs
this): e.g. python3 -m venv /tmp/st-venv && /tmp/st-venv/bin/pip install torch
sentence-transformers, then
    /tmp/st-venv/bin/python bench/embed_vs_sentence_transformers.py [--threads 2] [--json]
Writes docs/embeddings.json.
"""
import argparse
import json
import os
import pathlib
import platform
import re
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def batch_texts(n=64):
    texts = []
    for f in sorted((ROOT / "examples" / "docs").glob("*.md")):
        text = re.sub(r"\s+", " ", re.sub(r"[#*|`>\[\]()_]+", " ", f.read_text()))
        texts += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 8]
    for f in ["examples/questions.json", "examples/dev/questions.json", "examples/dev/paraphrases.json"]:
        texts += [" ".join(q["question"].split()) for q in json.loads((ROOT / f).read_text())]
    fixture = json.loads((ROOT / "tests/data/embeddings/all_minilm_l6_v2.json").read_text())
    texts += [t for t in fixture["texts"] if 8 <= len(t.split()) <= 60]
    texts = [t for t in texts if 8 <= len(t.split()) <= 60]
    if len(texts) < n:
        raise SystemExit(f"only {len(texts)} texts for a batch of {n}")
    return texts[:n]


def run_kdr(kdr, model_dir, texts, threads, reps):
    p = subprocess.run([kdr, "embed", "--model", model_dir, "--format", "jsonl", "-t", str(threads),
                        "--repeat", str(reps)], input="\n".join(texts) + "\n", capture_output=True,
                       text=True, check=True)
    m = re.search(r"(\d+) texts, (\d+) tokens, ([\d.]+) ms", p.stderr)
    vectors = [json.loads(line)["embedding"] for line in p.stdout.splitlines()]
    return int(m.group(2)), float(m.group(3)) / 1e3, vectors


def run_st(model, texts, batch_size, reps):
    model.encode(texts, batch_size=batch_size)  # warm-up
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        vectors = model.encode(texts, batch_size=batch_size)
        best = min(best, time.perf_counter() - t)
    return best, vectors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--kdr", default=str(pathlib.Path(os.environ.get("KDR_BUILD", ROOT / "build")) / "kdr"))
    ap.add_argument("--model", default=None, help="default: models/embedding.path")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--out", default=str(ROOT / "docs" / "embeddings.json"))
    a = ap.parse_args()

    import numpy as np
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(a.threads)
    model_dir = a.model or (ROOT / "models" / "embedding.path").read_text().strip()
    texts = batch_texts()
    st = SentenceTransformer(model_dir, device="cpu")
    kdr_best, st_best = float("inf"), {32: float("inf"), 64: float("inf")}
    tokens = 0
    for _ in range(a.rounds):
        tokens, seconds, kdr_vectors = run_kdr(a.kdr, model_dir, texts, a.threads, a.reps)
        kdr_best = min(kdr_best, seconds)
        for bs in st_best:
            seconds, st_vectors = run_st(st, texts, bs, a.reps)
            st_best[bs] = min(st_best[bs], seconds)
    kv, sv = np.asarray(kdr_vectors, dtype=np.float64), np.asarray(st_vectors, dtype=np.float64)
    cos = (kv * sv).sum(1) / np.linalg.norm(kv, axis=1) / np.linalg.norm(sv, axis=1)
    peer = min(st_best.values())
    result = {
        "benchmark": "sentence embeddings, all-MiniLM-L6-v2, one batch",
        "command": f"bench/embed_vs_sentence_transformers.py --threads {a.threads} --rounds {a.rounds} --reps {a.reps}",
        "cpu": "AMD EPYC (Zen 3), 2 cores, AVX2",
        "machine": platform.processor() or platform.machine(),
        "threads": a.threads,
        "texts": len(texts),
        "tokens": tokens,
        "kdr_seconds": kdr_best,
        "kdr_tokens_per_s": tokens / kdr_best,
        "st_seconds_batch32": st_best[32],
        "st_seconds_batch64": st_best[64],
        "st_tokens_per_s": tokens / peer,
        "ratio_kdr_over_st": peer / kdr_best,
        "min_cosine_kdr_vs_st": float(cos.min()),
        "versions": {"sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__},
    }
    pathlib.Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    if a.json:
        print(json.dumps(result))
    else:
        print(f"{len(texts)} texts, {tokens} tokens, {a.threads} threads")
        print(f"kdr embed:             {kdr_best * 1e3:8.1f} ms  {tokens / kdr_best:8.0f} tokens/s")
        for bs, s in st_best.items():
            print(f"sentence-transformers: {s * 1e3:8.1f} ms  {tokens / s:8.0f} tokens/s  (batch_size {bs})")
        print(f"ratio kdr / sentence-transformers (its best batch size): {peer / kdr_best:.2f}x")
        print(f"min cosine kdr vs sentence-transformers: {cos.min():.6f}")


if __name__ == "__main__":
    main()
