// Arguments of the per-target matmul kernels (matmul-inl.h). Private to src/ops.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ops/quant.h"

namespace kdr::ops::detail {

// Y[m][n] = sum_k X[m][k] * W[n][k] over a tile of rows m and weight rows n.
struct MatmulArgs {
  const uint8_t* w;  // weight rows
  size_t w_stride;   // bytes between weight rows
  int64_t k;
  DType type;
  const float* x;
  int64_t x_stride;
  float* y;
  int64_t y_stride;
};

}  // namespace kdr::ops::detail
