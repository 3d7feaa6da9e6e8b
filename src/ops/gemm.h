// Y = X W^T (+ bias) for f32 X and f32 W with many rows of X: the matmul of encoders (BERT
// over a packed batch of texts), where a register-blocked kernel (6 rows x 16 columns of
// accumulators) reaches about twice the FLOPs of matmul.h's dot-product kernels, which are
// built for decoding and for weights in any GGUF type.
//
// Batch invariant like matmul.h: y[i][j] is one accumulator that adds x[i][t] * w[j][t] for
// t = 0..k-1 in order, then bias[j], whatever m, the row's position or the thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "base/thread_pool.h"

namespace kdr::ops {

// A weight matrix [n][k] (PyTorch's Linear layout) rearranged for gemm_f32: panels of 16
// output features, each stored k-major (the 16 weights of one input next to each other).
class PackedWeights {
 public:
  static constexpr int64_t kPanel = 16;
  PackedWeights() = default;
  PackedWeights(const float* w, int64_t n, int64_t k);
  int64_t rows() const { return n_; }  // n, output features
  int64_t cols() const { return k_; }  // k, inputs
  const float* data() const { return data_.data(); }

 private:
  int64_t n_ = 0, k_ = 0;
  std::vector<float> data_;  // [ceil(n / 16)][k][16], the last panel zero-padded
};

// y[i][j] = sum_t x[i][t] * w[j][t] + bias[j] for i < m, j < w.rows(): x is [m][w.cols()],
// y is [m][w.rows()], packed row-major; bias may be null.
void gemm_f32(ThreadPool& pool, const float* x, int64_t m, const PackedWeights& w,
              const float* bias, float* y);

}  // namespace kdr::ops
