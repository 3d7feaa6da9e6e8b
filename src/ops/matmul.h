// Y[M][N] = X[M][K] * W[N][K]^T with f32 activations and weights in any type ops supports
// (is_supported_type; not Q8_K, an activation format). A weight row is one output feature,
// K elements stored in blocks, as ggml lays them out.
//
// X stays f32 for every weight type: quantized weights are dequantized to f32 (each weight
// rounded once) and multiplied in f32 FMA, so results match a float reference to float
// rounding (llama.cpp instead rounds X to 8 bits per block and multiplies integers).
//
// Batch invariant: Y[m][n] is bitwise the same whatever M, the row's position in X, or the
// pool's thread count (one fixed reduction order over K per element; tiles never change it).
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/thread_pool.h"
#include "ops/quant.h"

namespace kdr::ops {

// A weight matrix in ggml layout: `rows` (N) rows of `cols` (K) elements, each row stored as
// row_bytes(type, cols) bytes, `row_stride` bytes apart (0 = packed).
struct WeightMatrix {
  DType type = DType::F32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t row_stride = 0;
};

// Y[m][n] = sum_k X[m][k] * W[n][k] for m < M, n < w.rows; X rows are x_stride floats apart,
// Y rows y_stride floats apart. Throws std::invalid_argument when cols is not a multiple of
// the weight type's block size or a stride is too small.
void matmul(ThreadPool& pool, const float* x, int64_t x_stride, int64_t m, const WeightMatrix& w,
            float* y, int64_t y_stride);

// Packed convenience form: X is [m][w.cols], Y is [m][w.rows].
inline void matmul(ThreadPool& pool, const float* x, int64_t m, const WeightMatrix& w, float* y) {
  matmul(pool, x, w.cols, m, w, y, w.rows);
}

// One product of matmul_same_x: W and the packed Y[m][w.rows] it writes.
struct MatmulTarget {
  WeightMatrix w;
  float* y = nullptr;
};

// Y_i = X * W_i^T for several weight matrices with the same cols (a layer's Q, K and V
// projections, or its gate and up), X packed [m][cols]: the tiles of all of them in one
// parallel_for, so the pool wakes and joins once instead of once per matrix. Each Y_i is
// bitwise what matmul(pool, x, m, W_i, Y_i) gives. Throws std::invalid_argument as matmul does,
// and when the matrices' cols differ.
void matmul_same_x(ThreadPool& pool, const float* x, int64_t m, const MatmulTarget* targets,
                   size_t count);

// Writes row `token` of an embedding table (table.rows tokens of table.cols values, any
// type) as floats. Throws std::out_of_range naming the token and the table size.
void embedding_row(const WeightMatrix& table, int64_t token, float* out);

}  // namespace kdr::ops
