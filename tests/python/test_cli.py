"""The `kdr` command line options shared between commands, run as a user would.

The binary is $KDR_BUILD/kdr (default build/kdr); the model is the tiny Qwen3 fixture.

Run: .venv/bin/python -m pytest tests/python/test_cli.py
"""

import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
KDR = pathlib.Path(os.environ.get("KDR_BUILD", ROOT / "build")) / "kdr"
TINY = ROOT / "tests" / "data" / "models" / "qwen3.gguf"

if not KDR.exists():
    pytest.skip(f"no kdr binary at {KDR} (build it, or set KDR_BUILD)", allow_module_level=True)


def bench_generate(*args):
    cmd = [str(KDR), "bench", "generate", "-m", str(TINY), "--prompt-tokens", "16"]
    cmd += ["--gen-tokens", "8", "-t", "2", "--reps", "1", "--json", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_bench_generate_sizes_the_kv_cache_by_its_type():
    sizes = {}
    for dtype in ["f32", "bf16", "f16", "int8", "fp8"]:
        r = bench_generate("--kv-dtype", dtype)
        assert r.returncode == 0, r.stderr
        j = json.loads(r.stdout.strip().splitlines()[-1])
        assert j["kv_dtype"] == dtype
        assert j["gen_tokens"] == 8 and j["gen_tps"] > 0
        sizes[dtype] = j["kv_cache_mb"]
    assert sizes["bf16"] == pytest.approx(sizes["f32"] / 2)
    assert sizes["f16"] == pytest.approx(sizes["f32"] / 2)
    assert sizes["fp8"] == pytest.approx(sizes["f32"] / 4)  # one byte, per-tensor scales
    # int8 keeps one f32 scale per (token, head) beside each head_dim-byte row.
    assert sizes["f32"] / 4 < sizes["int8"] < sizes["f32"] / 2


@pytest.mark.parametrize(
    "cmd",
    [
        ["bench", "generate", "-m", str(TINY), "--kv-dtype", "q4"],
        ["generate", "-m", str(TINY), "-p", "hi", "-n", "2", "--kv-dtype", "q4"],
        ["serve", "-m", str(TINY), "--port", "0", "--kv-dtype", "q4"],
        ["perplexity", "-m", str(TINY), "-f", __file__, "--kv-dtype", "q4"],
    ],
)
def test_an_unknown_kv_dtype_is_refused_by_name(cmd):
    r = subprocess.run([str(KDR), *cmd], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "kv-dtype" in r.stderr and "q4" in r.stderr


def test_the_default_kv_cache_is_bf16():
    default = bench_generate()
    bf16 = bench_generate("--kv-dtype", "bf16")
    assert default.returncode == 0 and bf16.returncode == 0, default.stderr + bf16.stderr
    d, b = (json.loads(r.stdout.strip().splitlines()[-1]) for r in (default, bf16))
    assert d["kv_dtype"] == "bf16"
    assert d["kv_cache_mb"] == b["kv_cache_mb"]


def perplexity(*args):
    cmd = [str(KDR), "perplexity", "-m", str(TINY), "-f", __file__, "-w", "64", "--max-tokens", "256"]
    r = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return float(r.stdout.strip().rsplit("perplexity:", 1)[1])


def test_perplexity_takes_the_kv_dtype_and_bf16_stays_close_to_f32():
    f32, bf16, int8 = perplexity("--kv-dtype", "f32"), perplexity(), perplexity("--kv-dtype", "int8")
    fp8 = perplexity("--kv-dtype", "fp8")
    assert f32 > 1
    # The KV cache's rounding moves the result, a little: bf16 keeps 8 significant bits.
    assert bf16 != f32 and abs(bf16 / f32 - 1) < 0.02
    assert abs(int8 / f32 - 1) < 0.05
    # fp8 e4m3 keeps 4 significant bits (scales of 1); its decode converts rows to f16.
    assert fp8 != f32 and abs(fp8 / f32 - 1) < 0.05


def test_bench_attention_mixed_reports_validated_numbers_and_both_ratios():
    # 16 query heads over 8 KV heads: the decodes run the 2-row (GQA 2) kernels
    cmd = [str(KDR), "bench", "attention", "--json", "--case", "mixed", "--reps", "1",
           "--q-heads", "16"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    # the first line describes the machine (CPU, path, ceilings); one line per case follows
    assert "cpu" in rows[0]["machine"], rows[0]
    rows = rows[1:]
    assert [row["case"] for row in rows] == ["mixed", "mixed-decode-part", "mixed-prefill-part"]
    for row in rows:
        assert row["q_heads"] == 16 and "peer" not in row, row
        for key in ("kv_dtype", "ms", "gbps", "gflops", "mbu", "mfu", "peak_gbps", "peak_gflops",
                    "streaming_gbps", "page_run_gbps"):
            assert row[key] > 0 if key != "kv_dtype" else row[key] == "bf16", (row["case"], key)
        # MBU is taken against the faster of the two read probes, never the slower
        assert row["peak_gbps"] == max(row["streaming_gbps"], row["page_run_gbps"]), row
        assert abs(row["mbu"] - row["gbps"] / row["peak_gbps"]) < 1e-9, row
        # every number comes from a kernel checked against the scalar reference in the run
        assert row["max_abs_err"] < 1e-4, row
    last = rows[-1]
    for key in ("mixed_over_parts", "mixed_over_parts_interleaved"):
        assert 0.3 < last[key] < 3.0, (key, last[key])
