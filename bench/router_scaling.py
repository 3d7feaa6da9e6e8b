#!/usr/bin/env python3
"""kdr replicas behind sglang-router (PyPI `sglang-router`): what scaling out buys.

Two measurements, each in one run, on the default model unless --model:

1. Throughput at --concurrency clients (default 32), distinct short prompts (no shared
   prefixes): one replica alone with all --threads, the same replica reached through the
   router (the router's own cost), and two replicas with --threads/2 each behind the router
   (cache_aware). Same cores in all three, so on one machine this measures what splitting the
   cores into replicas costs or gains; across machines each replica brings its own cores.
2. Prefix-cache hit rate with the cache_aware policy vs round_robin: --groups groups of
   prompts, each group sharing a ~400-token preamble, sent by --hit-concurrency clients so
   that the requests in flight at any moment belong to different groups; the hit rate is the
   replicas' prefix-cache hit tokens over the tokens looked up, read from their /metrics
   before and after. (The best possible here: every request but each group's first hits its
   preamble, on one replica.)

Not run in CI. Writes --out (default docs/router_scaling.json).
    .venv/bin/python bench/router_scaling.py
"""
import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_vs_llamacpp import (ROOT, ServerProcess, free_port, make_prompts,  # noqa: E402
                               run_level, sentence_words, stream_completion)

MODEL_NAME = "m"


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


class Router:
    def __init__(self, router_bin, worker_ports, policy):
        self.port = free_port()
        self.log = open(os.devnull, "w")
        self.proc = subprocess.Popen(
            [router_bin, "launch", "--worker-urls",
             *[f"http://127.0.0.1:{p}" for p in worker_ports], "--policy", policy,
             "--host", "127.0.0.1", "--port", str(self.port),
             "--prometheus-port", str(free_port()), "--log-level", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 120
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"sglang-router exited {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/models",
                                            timeout=2) as r:
                    if any(m.get("id") == MODEL_NAME for m in json.loads(r.read())["data"]):
                        return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit("sglang-router not ready after 120 s")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def start_replicas(args, count, threads):
    replicas = []
    for _ in range(count):
        port = free_port()
        argv = [args.kdr, "serve", "-m", args.model, "--model-name", MODEL_NAME,
                "--port", str(port), "-t", str(threads),
                "--max-num-seqs", str(args.concurrency)]
        replicas.append(ServerProcess("kdr serve", argv, port))
        stream_completion(port, "Warm up: say hello.", 8)
    return replicas


def grouped_prompts(groups, per_group, clients, seed):
    """groups x per_group prompts sharing a ~400-token preamble per group, laid out for
    run_level (client i sends prompts[i * per_client + k] in turn) so that client i's k-th
    request belongs to group (i + k) % groups: the requests in flight at any moment belong
    to different groups, and each group's requests arrive spread over the run."""
    rng = random.Random(f"groups-{seed}")
    preambles = [f"Notes of meeting {g}. " + sentence_words(rng, 380) + ". "
                 for g in range(groups)]
    per_client = groups * per_group // clients
    return [preambles[(i + k) % groups] + f"Question {i}.{k}: what was said about "
            + sentence_words(rng, 12) + "?" for i in range(clients) for k in range(per_client)]


def throughput(args, router_bin, prompts):
    rows = {}
    per_client = args.requests_per_client
    # One replica with every thread, reached directly, then through the router.
    (alone,) = start_replicas(args, 1, args.threads)
    try:
        rows["one replica"] = run_level(alone.port, prompts, args.concurrency, per_client,
                                        args.max_tokens, MODEL_NAME)
        router = Router(router_bin, [alone.port], "cache_aware")
        try:
            rows["one replica, via router"] = run_level(router.port, prompts, args.concurrency,
                                                        per_client, args.max_tokens, MODEL_NAME)
        finally:
            router.stop()
    finally:
        alone.stop()
    half = max(1, args.threads // 2)
    pair = start_replicas(args, 2, half)
    try:
        router = Router(router_bin, [r.port for r in pair], "cache_aware")
        try:
            rows[f"two replicas x {half} threads, via router"] = run_level(
                router.port, prompts, args.concurrency, per_client, args.max_tokens, MODEL_NAME)
        finally:
            router.stop()
    finally:
        for r in pair:
            r.stop()
    return rows


def hit_rate(args, router_bin, policy, prompts):
    pair = start_replicas(args, 2, max(1, args.threads // 2))
    try:
        router = Router(router_bin, [r.port for r in pair], policy)
        try:
            before = [metrics(r.port) for r in pair]
            row = run_level(router.port, prompts, args.hit_concurrency, len(prompts) //
                            args.hit_concurrency, args.hit_max_tokens, MODEL_NAME)
            after = [metrics(r.port) for r in pair]
        finally:
            router.stop()
    finally:
        for r in pair:
            r.stop()
    hits = [a["kdr_prefix_cache_hit_tokens_total"] - b["kdr_prefix_cache_hit_tokens_total"]
            for a, b in zip(after, before)]
    queries = [a["kdr_prefix_cache_query_tokens_total"] - b["kdr_prefix_cache_query_tokens_total"]
               for a, b in zip(after, before)]
    requests = [a["kdr_requests_finished_total"] - b["kdr_requests_finished_total"]
                for a, b in zip(after, before)]
    row.update({"hit_tokens": sum(hits), "query_tokens": sum(queries),
                "hit_rate": sum(hits) / max(1.0, sum(queries)),
                "requests_per_replica": requests})
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kdr", default=os.path.join(ROOT, "build", "kdr"))
    ap.add_argument("--model", default=None, help="default: models/default.path")
    ap.add_argument("--threads", type=int, default=2, help="cores in all, split between replicas")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests-per-client", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--per-group", type=int, default=8)
    ap.add_argument("--hit-concurrency", type=int, default=8)
    ap.add_argument("--hit-max-tokens", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "router_scaling.json"))
    args = ap.parse_args()
    if args.model is None:
        with open(os.path.join(ROOT, "models", "default.path")) as f:
            args.model = f.read().strip()
    router_bin = shutil.which("sglang-router", path=os.path.dirname(sys.executable))
    if router_bin is None:
        raise SystemExit("no sglang-router beside this Python: run scripts/setup")
    version = subprocess.run([sys.executable, "-m", "pip", "show", "sglang-router"],
                             capture_output=True, text=True).stdout
    version = next((l.split(":", 1)[1].strip() for l in version.splitlines()
                    if l.startswith("Version:")), "?")

    prompts = make_prompts("short", args.concurrency * args.requests_per_client, args.seed)
    print(f"throughput: {args.concurrency} clients x {args.requests_per_client} requests, "
          f"{args.max_tokens} tokens each, {args.threads} threads in all", flush=True)
    rows = throughput(args, router_bin, prompts)
    base = rows["one replica"]["output_tps"]
    for name, r in rows.items():
        print(f"  {name:42s} {r['output_tps']:7.1f} tok/s ({r['output_tps'] / base:4.2f}x)  "
              f"TTFT p50 {r['ttft_p50_ms']:7.0f} ms  ITL p50 {r['itl_p50_ms']:5.0f} ms  "
              f"p99 {r['itl_p99_ms']:5.0f} ms  failed {r['failed']}", flush=True)

    grouped = grouped_prompts(args.groups, args.per_group, args.hit_concurrency, args.seed)
    print(f"prefix-cache hit rate: {args.groups} groups x {args.per_group} prompts sharing a "
          f"~400-token preamble, {args.hit_concurrency} clients, two replicas", flush=True)
    policies = {}
    for policy in ("cache_aware", "round_robin"):
        r = hit_rate(args, router_bin, policy, grouped)
        policies[policy] = r
        print(f"  {policy:12s} hit rate {100 * r['hit_rate']:5.1f}% "
              f"({r['hit_tokens']:.0f}/{r['query_tokens']:.0f} tokens)  requests per replica "
              f"{r['requests_per_replica']}  {r['output_tps']:6.1f} tok/s  "
              f"TTFT p50 {r['ttft_p50_ms']:6.0f} ms  failed {r['failed']}", flush=True)

    result = {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
              "sglang_router": version, "model": os.path.basename(args.model),
              "throughput": rows, "hit_rate": policies, "args": vars(args)}
    try:
        with open("/proc/cpuinfo") as f:
            result["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
