#!/usr/bin/env python3
"""Writes tests/data/quant/<TYPE>.bin: random blocks of every ggml type and their values as
decoded by the reference Python `gguf` package (pip install gguf numpy), for the bit-exact
dequantization test of src/ops.

File layout (little endian):
  char magic[4] = "KQF1"; u32 type id; u32 n (elements); u32 has_src
  u8  blocks[row_bytes(type, n)]
  f32 dequantized[n]
  f32 src[n]            only when has_src: the floats gguf.quantize() encoded into blocks

Types the package can quantize get real quantized data (and the source floats, so our
quantizers can be checked bit-exact too); K-quants get random bytes with finite f16 scales.
Usage: scripts/gen_quant_fixtures.py [--seed N] [--out DIR]
"""
import argparse
import os
import struct

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

N = 1024  # elements per type: 4 K-quant super-blocks, 32 legacy blocks

QUANTIZABLE = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
RANDOM_BYTES = [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
# Byte offsets of the f16 scale fields in each K-quant block (random bytes there could be NaN).
F16_FIELDS = {T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}


def source_floats(rng, qtype):
    # Blocks of differing magnitude, some all-zero blocks, an exact tie in Q8_0 rounding.
    x = rng.standard_normal(N).astype(np.float32)
    x *= np.repeat(np.exp2(rng.integers(-8, 4, N // 32)).astype(np.float32), 32)
    x[32:64] = 0
    if qtype in (T.F16, T.BF16):
        x[64:72] = [np.inf, -np.inf, -0.0, 1e-8, 6e-5, 65504.0, 70000.0, 3.0e38]
    if qtype == T.BF16:
        x[72] = np.nan
    if qtype == T.Q8_0:
        x[96:128] = np.arange(32, dtype=np.float32) - 16.5  # ties at x*127/16.5... and exact .5
        x[96] = -127.0  # makes id = 1 so the halves are real ties
    return x


def random_k_blocks(rng, qtype):
    block, size = GGML_QUANT_SIZES[qtype]
    n_blocks = N // block
    raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        scale = (rng.standard_normal(n_blocks) * 0.02).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "quant"))
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    for qtype in QUANTIZABLE + RANDOM_BYTES:
        src = None
        if qtype in QUANTIZABLE:
            src = source_floats(rng, qtype)
            blocks = np.ascontiguousarray(quants.quantize(src.reshape(1, N), qtype)).view(np.uint8).reshape(-1)
        else:
            blocks = random_k_blocks(rng, qtype)
        width = GGML_QUANT_SIZES[qtype][1] * N // GGML_QUANT_SIZES[qtype][0]
        deq = quants.dequantize(blocks.reshape(1, width), qtype).astype(np.float32).reshape(-1)
        assert deq.size == N
        path = os.path.join(args.out, f"{qtype.name}.bin")
        with open(path, "wb") as f:
            f.write(b"KQF1" + struct.pack("<III", int(qtype), N, 1 if src is not None else 0))
            f.write(blocks.tobytes())
            f.write(deq.astype("<f4").tobytes())
            if src is not None:
                f.write(src.astype("<f4").tobytes())
        print(path, os.path.getsize(path))


if __name__ == "__main__":
    main()
