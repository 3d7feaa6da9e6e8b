#!/usr/bin/env python3
"""kdr serve vs llama.cpp's llama-server: the same GGUF, prompts, lengths and thread count.

Workloads (--workloads), each at every concurrency C (--concurrency, default 1 8 32 64):
  short   distinct prompts of about 30 tokens (no two share a first word: no cache hits)
  mixed   distinct prompts of 64 to 1024 tokens (log-uniform)
  shared  one ~400-token preamble, then a distinct ~30-token question: both servers may reuse
          the preamble's KV (kdr's prefix cache; llama-server's per-slot prompt cache)
C clients each send --requests-per-client streamed /v1/completions requests one after the
other, with the same max_tokens and ignore_eos, so both servers generate exactly the same
number of tokens. Reported per server: output tokens/s over the level's wall time, time to
first token (TTFT) and inter-token latency (ITL, gaps between streamed chunks) at p50, p90,
p99, and failed requests (connection resets, errors: counted, never retried), then
kdr/llama.cpp ratios. The servers run one after the other, never at once; each level starts
a fresh server (llama-server needs -np C) and warms it up with one request. Prompts are drawn
from a seeded generator (--seed), the same for both servers.

llama-server: --llama-server PATH or $KDR_LLAMA_SERVER, run as
  llama-server -m MODEL -np C -c CTX*C -t THREADS -tb THREADS
(CTX: --ctx, per sequence; continuous batching and prompt caching are its defaults).
kdr: kdr serve -m MODEL -t THREADS --max-num-seqs C --kv-memory (the same tokens as
llama-server's context) [--kdr-args ...]. Not run in CI.
    .venv/bin/python bench/serve_vs_llamacpp.py --llama-server build-peer/bin/llama-server
"""
import argparse
import http.client
import json
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORDS = ("time year people way day man thing woman life child world school state family "
         "student group country problem hand part place case week company system program "
         "question work government number night point home water room mother area money "
         "story fact month lot right study book eye job word business issue side kind head "
         "house service friend father power hour game line end member law car city name "
         "team minute idea kid body information back parent face others level office door "
         "health person art war history party result change morning reason research girl "
         "guy moment air teacher force education river garden market letter bridge winter "
         "summer harbour village engine kitchen forest island mountain window machine").split()


def sentence_words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_prompts(kind, count, seed):
    """`count` distinct prompts of a workload; about one token per word for this vocabulary (Gemma 3)."""
    rng = random.Random(f"{kind}-{seed}")
    out = []
    preamble = ("You are a careful assistant. Here are the notes of a long meeting. "
                + sentence_words(random.Random(f"pre-{seed}"), 360) + ". ")
    for i in range(count):
        head = f"Request {i}: "  # distinct from the first tokens on
        if kind == "short":
            out.append(head + "write about " + sentence_words(rng, 22) + ".")
        elif kind == "mixed":
            tokens = math.exp(rng.uniform(math.log(64), math.log(1024)))
            out.append(head + "summarise: " + sentence_words(rng, max(8, int(tokens / 1.05))) + ".")
        elif kind == "shared":
            out.append(preamble + head + "what was said about " + sentence_words(rng, 18) + "?")
        else:
            raise ValueError(kind)
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server process on a free port, ready once GET /health answers 200."""

    def __init__(self, name, argv, port, timeout=300):
        self.name, self.port = name, port
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                self.log.seek(0)
                tail = self.log.read()[-3000:]
                raise SystemExit(f"{name} exited {self.proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"{name} not ready after {timeout} s")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def stream_completion(port, prompt, max_tokens, model=None):
    """One streamed request: (send time, [arrival time of each chunk with text], tokens).
    `model` is sent when given (a router needs it to pick workers serving that model)."""
    request = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
               "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    if model is not None:
        request["model"] = model
    body = json.dumps(request)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:500]!r}")
    arrivals, tokens = [], None
    for raw in resp:
        line = raw.strip()
        if not line.startswith(b"data: "):
            continue  # blank separators and SSE comments
        data = line[6:]
        if data == b"[DONE]":
            break
        chunk = json.loads(data)
        now = time.perf_counter()
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        for choice in chunk.get("choices") or []:
            if choice.get("text"):
                arrivals.append(now)
    conn.close()
    return t0, arrivals, tokens if tokens is not None else max_tokens


def percentile(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q / 100 * len(xs) + 0.5)) - 1))]


def run_level(port, prompts, concurrency, per_client, max_tokens, model=None):
    results, errors = [], []
    lock = threading.Lock()

    def client(i):
        for k in range(per_client):
            prompt = prompts[i * per_client + k]
            try:
                r = stream_completion(port, prompt, max_tokens, model)
            except Exception as e:  # counted and reported; the client goes on
                with lock:
                    errors.append(repr(e))
                continue
            with lock:
                results.append(r)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ttft = [a[0] - t0 for t0, a, _ in results if a]
    itl = [b - a for _, arr, _ in results for a, b in zip(arr, arr[1:])]
    tokens = sum(n for _, _, n in results)
    out = {"requests": len(results), "failed": len(errors), "output_tokens": tokens,
           "wall_s": wall, "output_tps": tokens / wall}
    for q in (50, 90, 99):
        out[f"ttft_p{q}_ms"] = 1e3 * percentile(ttft, q)
        out[f"itl_p{q}_ms"] = 1e3 * percentile(itl, q)
    if errors:
        out["first_error"] = errors[0][:300]
    return out


def measure(name, argv, prompts, concurrency, args):
    port = free_port()
    server = ServerProcess(name, argv(port), port)
    try:
        stream_completion(port, "Warm up: say hello.", 8)
        return run_level(port, prompts, concurrency, args.requests_per_client, args.max_tokens)
    finally:
        server.stop()


KEYS = ["output_tps", "ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p90_ms",
        "itl_p99_ms", "failed"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="GGUF file (default: models/default.path)")
    build = os.environ.get("KDR_BUILD", os.path.join(ROOT, "build"))
    ap.add_argument("--kdr", default=os.path.join(build, "kdr"))
    ap.add_argument("--kdr-args", default="", help="extra kdr serve arguments")
    ap.add_argument("--llama-server", default=os.environ.get("KDR_LLAMA_SERVER"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workloads", nargs="+", default=["short", "mixed", "shared"],
                    choices=["short", "mixed", "shared"])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    ap.add_argument("--requests-per-client", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=1280, help="context per sequence for llama-server")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", choices=["kdr", "llama"], help="run one server only")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()
    if args.only != "kdr" and (not args.llama_server or not os.path.exists(args.llama_server)):
        raise SystemExit("pass --llama-server PATH (or set KDR_LLAMA_SERVER) to llama.cpp's "
                         "llama-server binary (scripts/build_llamacpp builds it)")
    if not os.path.exists(args.kdr):
        raise SystemExit(f"no kdr at {args.kdr}: build it or pass --kdr PATH")
    model = args.model or open(os.path.join(ROOT, "models", "default.path")).read().strip()

    def kdr_argv(c):
        # As many KV tokens as llama-server's context (18 KiB per token for the default).
        return lambda port: [args.kdr, "serve", "-m", model, "--port", str(port),
                             "-t", str(args.threads), "--max-num-seqs", str(max(c, 1)),
                             "--kv-memory", str(max(512 * 1024, args.ctx * c * 20)) + "K",
                             *args.kdr_args.split()]

    def llama_argv(c):
        return lambda port: [args.llama_server, "-m", model, "--host", "127.0.0.1",
                             "--port", str(port), "-np", str(c), "-c", str(args.ctx * c),
                             "-t", str(args.threads), "-tb", str(args.threads)]

    levels = []
    for w in args.workloads:
        for c in args.concurrency:
            prompts = make_prompts(w, c * args.requests_per_client, args.seed)
            lv = {"workload": w, "concurrency": c}
            if args.only != "llama":
                print(f"{w} x {c}: kdr ...", file=sys.stderr, flush=True)
                lv["kdr"] = measure("kdr serve", kdr_argv(c), prompts, c, args)
            if args.only != "kdr":
                print(f"{w} x {c}: llama-server ...", file=sys.stderr, flush=True)
                lv["llama_cpp"] = measure("llama-server", llama_argv(c), prompts, c, args)
            if "kdr" in lv and "llama_cpp" in lv:
                lv["ratio"] = {k: lv["kdr"][k] / lv["llama_cpp"][k] if lv["llama_cpp"][k]
                               else float("nan") for k in KEYS if k != "failed"}
            levels.append(lv)
            print(json.dumps(lv), file=sys.stderr, flush=True)

    result = {"model": os.path.basename(model), "threads": args.threads,
              "max_tokens": args.max_tokens, "requests_per_client": args.requests_per_client,
              "seed": args.seed, "kdr_args": args.kdr_args, "levels": levels}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['model']}, {args.threads} threads, {args.max_tokens} tokens per request "
          f"(ignore_eos), {args.requests_per_client} requests per client")
    print("ratios are kdr/llama.cpp: above 1 is better for tok/s, below 1 for latencies")
    print(f"{'workload':<8}{'conc':>5}  {'metric':<12}{'kdr':>10}{'llama.cpp':>12}{'ratio':>8}")
    for lv in levels:
        for key in KEYS:
            a = lv.get("kdr", {}).get(key, float("nan"))
            b = lv.get("llama_cpp", {}).get(key, float("nan"))
            r = lv.get("ratio", {}).get(key, float("nan"))
            print(f"{lv['workload']:<8}{lv['concurrency']:>5}  {key:<12}{a:>10.1f}{b:>12.1f}"
                  f"{r:>7.2f}x")


if __name__ == "__main__":
    main()
