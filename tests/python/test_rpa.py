"""Tests of the Python module rpa against an independent NumPy statement of the contract.

Run: PYTHONPATH=<build>/python .venv/bin/python -m pytest tests/python
Random inputs use KDR_SEED when set (each test prints its seed).
"""

import os
import threading

import numpy as np
import pytest

rpa = pytest.importorskip(
    "rpa", reason="build with -DKDR_PYTHON=ON and put <build>/python on PYTHONPATH"
)


@pytest.fixture
def rng(request):
    seed = int(os.environ.get("KDR_SEED") or np.random.SeedSequence().entropy % (1 << 63))
    print(f"KDR_SEED={seed} ({request.node.name})")
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------
# Independent NumPy version of docs/rpa.md section 2 (float64, no pages in the attention).


def numpy_rpa(q, k, v, k_cache, v_cache, kv_lens, page_indices, cu_q_lens, *, sm_scale,
              causal=True, sliding_window=None, soft_cap=None, sinks=None):
    """Returns (out, new_k_cache, new_v_cache) for float32 caches."""
    k_cache, v_cache = k_cache.copy(), v_cache.copy()
    num_tokens, hq, d = q.shape
    hkv = k.shape[1]
    ps = k_cache.shape[2]
    out = np.zeros((num_tokens, hq, d))
    for i in range(len(kv_lens)):
        t0, t1 = cu_q_lens[i], cu_q_lens[i + 1]
        kv_len, q_len = kv_lens[i], t1 - t0
        start = kv_len - q_len
        new_pos = np.arange(start, kv_len)
        k_cache[page_indices[i, new_pos // ps], :, new_pos % ps, :] = k[t0:t1]
        v_cache[page_indices[i, new_pos // ps], :, new_pos % ps, :] = v[t0:t1]
        pos = np.arange(kv_len)
        keys = k_cache[page_indices[i, pos // ps], :, pos % ps, :].astype(np.float64)
        vals = v_cache[page_indices[i, pos // ps], :, pos % ps, :].astype(np.float64)
        keys = np.repeat(keys, hq // hkv, axis=1)  # [kv_len, Hq, D]: GQA
        vals = np.repeat(vals, hq // hkv, axis=1)
        s = np.einsum("qhd,thd->hqt", q[t0:t1].astype(np.float64), keys) * sm_scale
        if soft_cap:
            s = soft_cap * np.tanh(s / soft_cap)
        qpos = new_pos[:, None]
        visible = np.ones((q_len, kv_len), bool)
        if causal:
            visible &= pos[None, :] <= qpos
        if sliding_window:
            visible &= pos[None, :] > qpos - sliding_window
        s = np.where(visible[None], s, -np.inf)
        m = s.max(axis=2, keepdims=True)
        if sinks is not None:
            m = np.maximum(m, sinks.astype(np.float64)[:, None, None])
        w = np.exp(s - m)
        denom = w.sum(axis=2, keepdims=True)
        if sinks is not None:
            denom += np.exp(sinks.astype(np.float64)[:, None, None] - m)
        out[t0:t1] = np.einsum("hqt,thd->qhd", w / denom, vals)
    return out, k_cache, v_cache


def bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (no NaNs in these tests)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


# ---------------------------------------------------------------------------------------------
# Batches


def make_batch(rng, q_lens, kv_lens, decode_end, prefill_end, page_size=4, hq=4, hkv=2, d=16,
               cache_dtype=np.float32):
    """A ragged batch on randomly permuted pages with random cached rows."""
    q_lens, kv_lens = np.asarray(q_lens, np.int32), np.asarray(kv_lens, np.int32)
    s = len(q_lens)
    need = (kv_lens + page_size - 1) // page_size
    pages_per_seq = int(need.max())
    num_pages = int(need.sum()) + 2
    perm = rng.permutation(num_pages).astype(np.int32)
    page_indices = np.full((s, pages_per_seq), -1, np.int32)
    used = 0
    for i in range(s):
        page_indices[i, : need[i]] = perm[used : used + need[i]]
        used += need[i]
    t = int(q_lens.sum())
    b = dict(
        q=rng.uniform(-1, 1, (t, hq, d)).astype(np.float32),
        k=rng.uniform(-1, 1, (t, hkv, d)).astype(np.float32),
        v=rng.uniform(-1, 1, (t, hkv, d)).astype(np.float32),
        kv_lens=kv_lens,
        page_indices=page_indices,
        cu_q_lens=np.concatenate([[0], np.cumsum(q_lens)]).astype(np.int32),
        distribution=np.array([decode_end, prefill_end, s], np.int32),
    )
    shape = (num_pages, hkv, page_size, d)
    b["k_cache"] = rng.uniform(-1, 1, shape).astype(np.float32)
    b["v_cache"] = rng.uniform(-1, 1, shape).astype(np.float32)
    if cache_dtype == np.uint16:  # bf16 bits
        b["k_cache"] = bf16_bits(b["k_cache"])
        b["v_cache"] = bf16_bits(b["v_cache"])
    return b


def positional(b):
    return [b[n] for n in ("q", "k", "v", "k_cache", "v_cache", "kv_lens", "page_indices",
                           "cu_q_lens", "distribution")]


# decode, decode, prefill chunk, prefill chunk, mixed, mixed (one ending mid-page)
MIXED = dict(q_lens=[1, 1, 6, 6, 3, 9], kv_lens=[13, 1, 6, 21, 10, 30], decode_end=2,
             prefill_end=4)


@pytest.mark.parametrize("fn", ["ragged_paged_attention", "reference"])
@pytest.mark.parametrize(
    "opts",
    [
        dict(),
        dict(causal=False),
        dict(sliding_window=5),
        dict(soft_cap=2.0),
        dict(sinks=True, sliding_window=3, causal=False),
        dict(sinks=True, soft_cap=1.5, hq=6, hkv=3),
        dict(hq=3, hkv=1, page_size=1),
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default",
)
def test_matches_numpy_and_updates_cache_in_place(rng, fn, opts):
    opts = dict(opts)
    shape_opts = {k: opts.pop(k) for k in ("hq", "hkv", "page_size") if k in opts}
    b = make_batch(rng, **MIXED, **shape_opts)
    hq = b["q"].shape[1]
    if opts.pop("sinks", False):
        opts["sinks"] = rng.uniform(-2, 2, hq).astype(np.float32)
    want, want_k, want_v = numpy_rpa(*positional(b)[:8], sm_scale=0.4, **opts)
    out = getattr(rpa, fn)(*positional(b), sm_scale=0.4, num_threads=2, **opts)
    assert out.shape == b["q"].shape and out.dtype == np.float32
    # f32 accumulation (kernel) against float64: see tests/rpa/kernel_test.cc for the bound.
    np.testing.assert_allclose(out, want, atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(b["k_cache"], want_k)  # written in place, exact copy
    np.testing.assert_array_equal(b["v_cache"], want_v)


def test_bf16_cache_rounds_new_rows_and_attends_in_f32(rng):
    b = make_batch(rng, **MIXED, cache_dtype=np.uint16)
    k_f32 = bf16_to_f32(b["k_cache"])
    v_f32 = bf16_to_f32(b["v_cache"])
    # NumPy on the f32 view of the cache, with the new rows rounded to bf16 as the cache will.
    args = positional(b)
    args[1], args[2] = bf16_to_f32(bf16_bits(b["k"])), bf16_to_f32(bf16_bits(b["v"]))
    want, want_k, want_v = numpy_rpa(args[0], args[1], args[2], k_f32, v_f32, *args[5:8],
                                     sm_scale=0.3)
    out = rpa.ragged_paged_attention(*positional(b), sm_scale=0.3, kv_dtype="bf16")
    np.testing.assert_allclose(out, want, atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(b["k_cache"], bf16_bits(want_k))
    np.testing.assert_array_equal(b["v_cache"], bf16_bits(want_v))


def test_int8_cache_with_row_scales_matches_reference(rng):
    b = make_batch(rng, **MIXED)
    num_pages, hkv, ps, d = b["k_cache"].shape
    for side in ("k", "v"):  # a valid int8 cache: quantized rows with their scales
        x = b[f"{side}_cache"]
        scales = np.abs(x).max(axis=3) / 127
        b[f"{side}_scales"] = scales.astype(np.float32)
        b[f"{side}_cache"] = np.rint(x / scales[..., None]).astype(np.int8)
    twin = {n: a.copy() for n, a in b.items()}
    scales = dict(k_scales=b.pop("k_scales"), v_scales=b.pop("v_scales"))
    twin_scales = dict(k_scales=twin.pop("k_scales"), v_scales=twin.pop("v_scales"))
    out = rpa.ragged_paged_attention(*positional(b), sm_scale=0.25, kv_dtype="int8", **scales)
    want = rpa.reference(*positional(twin), sm_scale=0.25, kv_dtype="int8", **twin_scales)
    np.testing.assert_allclose(out, want, atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(b["k_cache"], twin["k_cache"])
    np.testing.assert_array_equal(scales["v_scales"], twin_scales["v_scales"])
    # The first new token's K row was quantized with scale max|k| / 127.
    page, slot = b["page_indices"][0, 12 // ps], 12 % ps
    np.testing.assert_allclose(scales["k_scales"][page, :, slot],
                               np.abs(b["k"][0]).max(axis=1) / 127, rtol=1e-6)


def test_fp8_cache_with_tensor_scales_matches_reference(rng):
    b = make_batch(rng, **MIXED)
    b["k_cache"] = rng.integers(0, 0x70, b["k_cache"].shape, dtype=np.uint8)  # finite e4m3
    b["v_cache"] = rng.integers(0, 0x70, b["v_cache"].shape, dtype=np.uint8)
    twin = {n: a.copy() for n, a in b.items()}
    kw = dict(sm_scale=0.25, k_scale=0.02, v_scale=0.015)
    out = rpa.ragged_paged_attention(*positional(b), **kw)  # uint8 means fp8e4m3
    want = rpa.reference(*positional(twin), kv_dtype="fp8e4m3", **kw)
    np.testing.assert_allclose(out, want, atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(b["v_cache"], twin["v_cache"])


def test_calls_from_several_threads_agree(rng):
    b = make_batch(rng, **MIXED)
    want = rpa.reference(*positional({**b, "k_cache": b["k_cache"].copy(),
                                      "v_cache": b["v_cache"].copy()}), sm_scale=0.3)
    results = [None] * 6

    def work(i):
        mine = {**b, "k_cache": b["k_cache"].copy(), "v_cache": b["v_cache"].copy()}
        results[i] = rpa.ragged_paged_attention(*positional(mine), sm_scale=0.3,
                                                num_threads=1 + i % 2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_allclose(r, want, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Errors: ValueError naming the argument or the sequence and value, cache untouched.


def expect_value_error(b, match, **kw):
    before = (b["k_cache"].copy(), b["v_cache"].copy())
    with pytest.raises(ValueError, match=match):
        rpa.ragged_paged_attention(*positional(b), **{"sm_scale": 0.3, **kw})
    np.testing.assert_array_equal(b["k_cache"], before[0])
    np.testing.assert_array_equal(b["v_cache"], before[1])


def test_wrong_dtype_ndim_and_layout_are_named(rng):
    b = make_batch(rng, **MIXED)
    expect_value_error({**b, "q": b["q"].astype(np.float64)}, "q must have dtype float32")
    expect_value_error({**b, "k": b["k"][0]}, "k must have 3 dimensions")
    expect_value_error({**b, "kv_lens": b["kv_lens"].astype(np.int64)}, "kv_lens must have dtype int32")
    wide = np.zeros(b["q"].shape[:2] + (32,), np.float32)
    wide[:, :, ::2] = b["q"]
    expect_value_error({**b, "q": wide[:, :, ::2]}, "q must be C-contiguous")
    frozen = b["k_cache"].copy()
    frozen.flags.writeable = False
    expect_value_error({**b, "k_cache": frozen}, "k_cache must be writeable")
    expect_value_error({**b, "v": np.ascontiguousarray(b["v"][:, :1])}, "v has shape")
    expect_value_error({**b, "k_cache": b["k_cache"].view(np.uint16)}, "kv_dtype must be given")
    expect_value_error(b, "unknown kv_dtype 'f64'", kv_dtype="f64")
    expect_value_error(b, "sinks must have dtype float32", sinks=np.zeros(4))


def test_int8_needs_row_scales(rng):
    b = make_batch(rng, **MIXED)
    b["k_cache"] = np.zeros(b["k_cache"].shape, np.int8)
    b["v_cache"] = np.zeros(b["v_cache"].shape, np.int8)
    expect_value_error(b, "int8 caches need k_scales and v_scales")


def test_contract_violations_name_the_sequence_and_value(rng):
    b = make_batch(rng, **MIXED)
    bad = b["page_indices"].copy()
    bad[3, 1] = 999
    expect_value_error({**b, "page_indices": bad}, r"sequence 3: page_indices\[3\]\[1\] = 999")
    bad_kv = b["kv_lens"].copy()
    bad_kv[2] = 4  # q_len 6
    expect_value_error({**b, "kv_lens": bad_kv}, "sequence 2: kv_len 4 < q_len 6")
    expect_value_error({**b, "distribution": np.array([3, 4, 6], np.int32)},
                       r"sequence 2: in the decode range \[0, 3\) but q_len is 6")
    expect_value_error({**b, "q": np.ascontiguousarray(b["q"][:, :3])},
                       "num_q_heads 3 must be a positive multiple of num_kv_heads 2")
    expect_value_error(b, "sliding_window", sliding_window=-2)
