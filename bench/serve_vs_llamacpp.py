#!/usr/bin/env python3
"""kdr serve vs llama.cpp's llama-server: the same GGUF, prompts, lengths and thread count.

At each concurrency C (default 1, 8, 32), C clients each send --requests-per-client streamed
/v1/completions requests, one after the other, with the same max_tokens and ignore_eos, so
both servers generate exactly the same number of tokens. Reported per server: output
tokens/s over the level's wall time, time to first token (TTFT) p50/p99 and inter-token
latency (ITL, gaps between streamed chunks) p50/p99, then kdr/llama.cpp ratios. The servers
run one after the other, never at once; each level starts a fresh server (llama-server needs
-np C) and warms it up with one request.

llama-server: --llama-server PATH or $KDR_LLAMA_SERVER (run with -m MODEL -np C
-c CTX*C -t THREADS). Not run in CI.
    .venv/bin/python bench/serve_vs_llamacpp.py --llama-server PATH [--json]
"""
import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Prompts of a few dozen tokens, different from the first word so that prefix caching does
# not turn the benchmark into a cache test.
TOPICS = ["the sea", "a mountain village", "an old clock", "the first computer", "a red kite",
          "winter in the city", "a library at night", "the moon landing", "a lost key",
          "a long train journey", "bread baking", "a chess game", "the northern lights",
          "a garden in spring", "a lighthouse keeper", "a thunderstorm"]
PROMPTS = [f"{t.capitalize()} is the subject of this short essay. Describe it in plain words, "
           "with its history, the people it touches and why it matters today." for t in TOPICS]


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


def stream_completion(port, prompt, max_tokens):
    """One streamed request: (send time, [arrival time of each chunk with text], tokens)."""
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                       "ignore_eos": True, "stream": True,
                       "stream_options": {"include_usage": True}})
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


def run_level(port, concurrency, per_client, max_tokens):
    results, errors = [], []
    lock = threading.Lock()

    def client(i):
        for k in range(per_client):
            prompt = PROMPTS[(i * per_client + k) % len(PROMPTS)]
            try:
                r = stream_completion(port, prompt, max_tokens)
            except Exception as e:  # reported below; one failure spoils the level
                with lock:
                    errors.append(repr(e))
                return
            with lock:
                results.append(r)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, first: {errors[0]}")
    ttft = [a[0] - t0 for t0, a, _ in results if a]
    itl = [b - a for _, arr, _ in results for a, b in zip(arr, arr[1:])]
    tokens = sum(n for _, _, n in results)
    return {"requests": len(results), "output_tokens": tokens, "wall_s": wall,
            "output_tps": tokens / wall,
            "ttft_p50_ms": 1e3 * percentile(ttft, 50), "ttft_p99_ms": 1e3 * percentile(ttft, 99),
            "itl_p50_ms": 1e3 * percentile(itl, 50), "itl_p99_ms": 1e3 * percentile(itl, 99)}


def measure(name, argv_for, concurrency, args):
    port = free_port()
    server = ServerProcess(name, argv_for(port, concurrency), port)
    try:
        stream_completion(port, PROMPTS[0], 8)  # warm-up
        return run_level(port, concurrency, args.requests_per_client, args.max_tokens)
    finally:
        server.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="GGUF file (default: models/default.path)")
    build = os.environ.get("KDR_BUILD", os.path.join(ROOT, "build"))
    ap.add_argument("--kdr", default=os.path.join(build, "kdr"))
    ap.add_argument("--llama-server", default=os.environ.get("KDR_LLAMA_SERVER"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests-per-client", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=512, help="context per sequence for llama-server")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()
    if not args.llama_server or not os.path.exists(args.llama_server):
        raise SystemExit("pass --llama-server PATH (or set KDR_LLAMA_SERVER) to llama.cpp's "
                         "llama-server binary")
    if not os.path.exists(args.kdr):
        raise SystemExit(f"no kdr at {args.kdr}: build it or pass --kdr PATH")
    model = args.model or open(os.path.join(ROOT, "models", "default.path")).read().strip()

    def kdr_argv(port, c):
        return [args.kdr, "serve", "-m", model, "--port", str(port), "-t", str(args.threads),
                "--max-num-seqs", str(max(c, 1))]

    def llama_argv(port, c):
        return [args.llama_server, "-m", model, "--host", "127.0.0.1", "--port", str(port),
                "-np", str(c), "-c", str(args.ctx * c), "-t", str(args.threads)]

    levels = []
    for c in args.concurrency:
        print(f"concurrency {c}: kdr ...", file=sys.stderr, flush=True)
        ours = measure("kdr serve", kdr_argv, c, args)
        print(f"concurrency {c}: llama-server ...", file=sys.stderr, flush=True)
        peer = measure("llama-server", llama_argv, c, args)
        ratio = {k: ours[k] / peer[k] if peer[k] else float("nan")
                 for k in ("output_tps", "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms")}
        levels.append({"concurrency": c, "kdr": ours, "llama_cpp": peer, "ratio": ratio})

    result = {"model": os.path.basename(model), "threads": args.threads,
              "max_tokens": args.max_tokens, "requests_per_client": args.requests_per_client,
              "levels": levels}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['model']}, {args.threads} threads, {args.max_tokens} tokens per request "
          f"(ignore_eos), {args.requests_per_client} requests per client")
    print("ratios are kdr/llama.cpp: above 1 is better for tok/s, below 1 for latencies")
    cols = [("output_tps", "tok/s", "{:.1f}"), ("ttft_p50_ms", "TTFT p50 ms", "{:.0f}"),
            ("ttft_p99_ms", "TTFT p99 ms", "{:.0f}"), ("itl_p50_ms", "ITL p50 ms", "{:.1f}"),
            ("itl_p99_ms", "ITL p99 ms", "{:.1f}")]
    print(f"{'conc':>4}  {'metric':<12}{'kdr':>10}{'llama.cpp':>12}{'ratio':>8}")
    for lv in levels:
        for key, label, fmt in cols:
            print(f"{lv['concurrency']:>4}  {label:<12}{fmt.format(lv['kdr'][key]):>10}"
                  f"{fmt.format(lv['llama_cpp'][key]):>12}{lv['ratio'][key]:>7.2f}x")


if __name__ == "__main__":
    main()
