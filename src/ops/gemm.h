// Y = X W^T (+ bias) for f32 X and f32 W through OpenBLAS's sgemm: the path for encoders
// whose every matmul sees hundreds of rows (BERT over a packed batch of texts), where a
// register-blocked GEMM reaches about twice the FLOPs of matmul.h's dot-product kernels,
// which are built for decoding and for weights in any GGUF type.
//
// Rows of X are split over the pool in fixed blocks of 64, each one single-threaded sgemm
// call: results do not depend on the thread count, but they are not batch invariant as
// matmul.h's are: sgemm's edge kernels round a row differently depending on where it falls
// in its block (differences of float rounding, ~1e-7 relative).
#pragma once

#include <cstdint>

#include "base/thread_pool.h"

namespace kdr::ops {

// y[i][j] = bias[j] + sum_k x[i][k] * w[j][k] for i < m, j < n: x is [m][k], w is [n][k]
// (PyTorch's Linear layout), y is [m][n], all packed row-major. bias may be null.
void gemm_f32(ThreadPool& pool, const float* x, int64_t m, const float* w, int64_t n, int64_t k,
              const float* bias, float* y);

}  // namespace kdr::ops
