"""Two `kdr serve` replicas behind sglang-router (PyPI `sglang-router`, cache_aware policy).

The router discovers each worker through /server_info and /model_info and registers the
served model's name; requests with and without "model" go through; prompts that share a
long prefix land on one replica (its prefix-cache hits rise, the other's stay put); and a
replica stopped mid-run loses no request (the router retries on the other).

Run: .venv/bin/python -m pytest tests/python/test_router.py
"""

import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_server import TINY, Served  # noqa: E402

ROUTER = shutil.which("sglang-router", path=os.path.dirname(sys.executable))
if ROUTER is None:
    pytest.fail("no sglang-router in the venv: run scripts/setup (python/requirements-dev.txt)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout=60):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read())


class Router:
    def __init__(self, workers):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="sglang-router-", suffix=".log")
        self.proc = subprocess.Popen(
            [ROUTER, "launch", "--worker-urls", *workers, "--policy", "cache_aware",
             "--host", "127.0.0.1", "--port", str(self.port),
             "--prometheus-port", str(free_port()), "--log-level", "warn",
             "--health-check-interval-secs", "1"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        end = time.monotonic() + 60
        while time.monotonic() < end:
            assert self.proc.poll() is None, self.output()
            try:
                with urllib.request.urlopen(self.url + "/v1/models", timeout=2) as r:
                    models = json.loads(r.read())
                    if any(m.get("id") == "tiny" for m in models.get("data", [])):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("router not ready: " + self.output())

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def cluster():
    replicas = [Served("-m", str(TINY), "--model-name", "tiny", "--kv-memory", "8M")
                for _ in range(2)]
    router = Router([r.url for r in replicas])
    yield router, replicas
    router.stop()
    for r in replicas:
        if r.proc.poll() is None:
            r.stop()


def hits(replica):
    return replica.metrics()["kdr_prefix_cache_hit_tokens_total"]


def test_requests_with_and_without_model_go_through_the_router(cluster):
    router, _ = cluster
    # (sglang-router 0.3.2 itself refuses a completion without "model", as OpenAI's API
    # does: 422; a chat request without one it forwards as model "unknown".)
    status, out = post(router.url + "/v1/completions",
                       {"model": "tiny", "prompt": "hello", "max_tokens": 4, "temperature": 0})
    assert status == 200 and out["choices"][0]["text"], out
    for body in ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                  "max_tokens": 4},
                 {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}):
        status, out = post(router.url + "/v1/chat/completions", body)
        assert status == 200 and out["choices"][0]["message"]["content"] is not None, out


def test_prompts_sharing_a_long_prefix_land_on_one_replica(cluster):
    router, replicas = cluster
    prefix = "The committee met to review the annual budget and its many line items. " * 2
    before = [hits(r) for r in replicas]
    for i in range(8):
        status, _ = post(router.url + "/v1/completions",
                         {"model": "tiny", "prompt": prefix + f"Question {i}: what changed?",
                          "max_tokens": 2, "temperature": 0})
        assert status == 200
    gained = sorted(hits(r) - b for r, b in zip(replicas, before))
    # Seven of the eight find the prefix cached, all on the same replica.
    assert gained[1] >= 7 * 80, gained
    assert gained[0] == 0, gained


def test_a_replica_stopped_mid_run_loses_no_request(cluster):
    router, replicas = cluster
    n = 40

    def one(i):
        status, out = post(router.url + "/v1/completions",
                           {"model": "tiny", "prompt": f"request {i} " * (i % 5 + 1),
                            "max_tokens": 8, "temperature": 0})
        return status, out["choices"][0]["finish_reason"]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        time.sleep(0.3)
        replicas[1].proc.terminate()  # SIGTERM: it stops accepting and cancels what it holds
        results = [f.result() for f in futures]
    assert all(status == 200 for status, _ in results), results
    assert all(reason in ("stop", "length") for _, reason in results), results
