#include "ops/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>

namespace kdr::ops {

void gemm_f32(ThreadPool& pool, const float* x, int64_t m, const float* w, int64_t n, int64_t k,
              const float* bias, float* y) {
  if (m <= 0 || n <= 0) return;
  constexpr int64_t kRows = 64;
  // Our pool supplies the threads; OpenBLAS's own would compete with it for the cores.
  openblas_set_num_threads(1);
  pool.parallel_for((m + kRows - 1) / kRows, [&](int64_t task, int) {
    const int64_t r0 = task * kRows, rows = std::min(kRows, m - r0);
    float* out = y + r0 * n;
    if (bias) {
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(out + r * n, bias, static_cast<size_t>(n) * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
                static_cast<int>(n), static_cast<int>(k), 1.0f, x + r0 * k, static_cast<int>(k), w,
                static_cast<int>(k), bias ? 1.0f : 0.0f, out, static_cast<int>(n));
  });
}

}  // namespace kdr::ops
