#!/usr/bin/env python3
"""n parallel samples vs one sample through `kdr serve`: the prompt is prefilled once and
forked, so n = 4 should cost little more than n = 1.

One server (the default model unless --model), one client, requests one after the other:
  n=1  a --prompt-tokens prompt (distinct each time: no prefix-cache hits), --max-tokens
       generated at temperature 1 with ignore_eos
  n=4  the same shape with n = 4 (4 x --max-tokens tokens generated)
The two alternate --reps times after a warm-up; reported: the median wall time of each and
their ratio (the target is <= 1.5), then from one streamed request of each, /metrics read
mid-decode: KV blocks in use, blocks shared, and the prompt tokens computed for the request
(the n = 4 request computes its prompt once); then, for comparison, n separate n = 1
requests with one same prompt sent at once: their wall time and the same metrics. Not run
in CI.
    .venv/bin/python bench/parallel_samples.py [--kdr build/kdr] [--threads 2]
"""
import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_vs_llamacpp import ROOT, WORDS, ServerProcess, free_port  # noqa: E402


def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        out = {}
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#") and line.startswith("kdr_"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


def prompt_ids(port, rng, n):
    """Exactly n token ids of random words (tokenized by the server, bos first)."""
    text = " ".join(rng.choice(WORDS) for _ in range(2 * n))
    ids = post(port, "/tokenize", {"content": text, "add_special": True})["tokens"]
    return ids[:n]


def request(port, prompt, n, max_tokens, seed):
    body = {"prompt": prompt, "n": n, "max_tokens": max_tokens, "temperature": 1.0,
            "seed": seed, "ignore_eos": True}
    t0 = time.perf_counter()
    r = post(port, "/v1/completions", body)
    dt = time.perf_counter() - t0
    assert len(r["choices"]) == n and r["usage"]["completion_tokens"] == n * max_tokens, r
    return dt, r


def streamed_with_metrics(port, prompt, n, max_tokens, seed):
    """Streams one request; reads /metrics once every sample has produced 8 chunks."""
    body = json.dumps({"prompt": prompt, "n": n, "max_tokens": max_tokens, "temperature": 1.0,
                       "seed": seed, "ignore_eos": True, "stream": True}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body,
                                 {"Content-Type": "application/json"})
    seen, mid = {}, None
    with urllib.request.urlopen(req, timeout=600) as r:
        for raw in r:
            line = raw.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            for ch in json.loads(line[6:])["choices"]:
                seen[ch["index"]] = seen.get(ch["index"], 0) + 1
            if mid is None and len(seen) == n and min(seen.values()) >= 8:
                mid = metrics(port)
    return mid


def separate_requests(port, prompt, n, max_tokens):
    """n requests of n = 1 with the same prompt at once: (wall s, metrics mid-decode)."""
    before = metrics(port)
    times = []

    def one(i):
        times.append(request(port, prompt, 1, max_tokens, 100 + i)[0])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    mid = None
    while mid is None and any(t.is_alive() for t in threads):
        m = metrics(port)
        if m["kdr_generation_tokens_total"] - before["kdr_generation_tokens_total"] >= 8 * n:
            mid = m
        time.sleep(0.1)
    for t in threads:
        t.join()
    return time.perf_counter() - t0, mid


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kdr", default=os.path.join(ROOT, "build", "kdr"))
    ap.add_argument("--model", default=None, help="GGUF (default: models/default.path)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    model = args.model or open(os.path.join(ROOT, "models", "default.path")).read().strip()
    port = free_port()
    server = ServerProcess("kdr", [args.kdr, "serve", "-m", model, "--port", str(port),
                                   "-t", str(args.threads)], port)
    rng = random.Random(args.seed)
    try:
        request(port, prompt_ids(port, rng, args.prompt_tokens), 1, 8, 0)  # warm-up
        times = {1: [], args.n: []}
        for rep in range(args.reps):
            for n in (1, args.n):
                times[n].append(request(port, prompt_ids(port, rng, args.prompt_tokens), n,
                                        args.max_tokens, rep)[0])
        one, many = statistics.median(times[1]), statistics.median(times[args.n])
        print(f"model {os.path.basename(model)}, threads {args.threads}, prompt "
              f"{args.prompt_tokens} tokens, {args.max_tokens} tokens per sample, "
              f"{args.reps} reps each")
        for n in (1, args.n):
            print(f"n={n}: wall s " + " ".join(f"{t:.3f}" for t in times[n]))
        print(f"median n=1 {one:.3f} s, n={args.n} {many:.3f} s, ratio n={args.n}/n=1 "
              f"{many / one:.2f} (target <= 1.5); tokens/s n=1 {args.max_tokens / one:.1f}, "
              f"n={args.n} {args.n * args.max_tokens / many:.1f}")
        for n in (1, args.n):
            before = metrics(port)
            mid = streamed_with_metrics(port, prompt_ids(port, rng, args.prompt_tokens), n,
                                        args.max_tokens, 7)
            after = metrics(port)
            keys = ("kdr_kv_blocks_used", "kdr_kv_blocks_shared", "kdr_requests_running")
            print(f"n={n} mid-decode: " + ", ".join(f"{k[4:]} {mid[k]:.0f}" for k in keys) +
                  f"; prompt tokens computed "
                  f"{after['kdr_prompt_tokens_total'] - before['kdr_prompt_tokens_total']:.0f}"
                  f", samples forked "
                  f"{after['kdr_samples_forked_total'] - before['kdr_samples_forked_total']:.0f}")
        before = metrics(port)
        wall, mid = separate_requests(port, prompt_ids(port, rng, args.prompt_tokens), args.n,
                                      args.max_tokens)
        after = metrics(port)
        print(f"{args.n} separate n=1 requests at once (same prompt): wall {wall:.3f} s "
              f"({wall / one:.2f}x n=1); mid-decode: " +
              ", ".join(f"{k[4:]} {mid[k]:.0f}" for k in keys) + "; prompt tokens computed "
              f"{after['kdr_prompt_tokens_total'] - before['kdr_prompt_tokens_total']:.0f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
