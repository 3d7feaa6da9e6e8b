// Matmul driver: validates, splits the output into tiles for the pool and runs the per-target
// kernels of matmul-inl.h.
#include "ops/matmul.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

// SSE4 and AVX2 (plus the scalar baseline) only: AVX-512 machines run the AVX2 code, which
// keeps compile time down and results identical across the x86 servers we run on.
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_AVX3 | HWY_AVX3_DL)
#endif
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/matmul.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "ops/matmul-inl.h"

#if HWY_ONCE
#include "hwy/highway.h"

namespace kdr::ops {
HWY_EXPORT(MatmulTile);

void embedding_row(const WeightMatrix& table, int64_t token, float* out) {
  if (token < 0 || token >= table.rows) {
    throw std::out_of_range("embedding: token id " + std::to_string(token) +
                            " is outside the table of " + std::to_string(table.rows) + " rows");
  }
  const size_t rb = row_bytes(table.type, table.cols);
  const size_t stride = table.row_stride ? table.row_stride : rb;
  dequantize_row(table.type,
                 static_cast<const uint8_t*>(table.data) + static_cast<size_t>(token) * stride, out,
                 table.cols);
}

void matmul(ThreadPool& pool, const float* x, int64_t x_stride, int64_t m, const WeightMatrix& w,
            float* y, int64_t y_stride) {
  const int64_t n = w.rows, k = w.cols;
  if (w.type == GgmlType::Q8_K) {
    throw std::invalid_argument("matmul: Q8_K is an activation format, not a weight type");
  }
  const size_t rb = row_bytes(w.type, k);  // throws when k is not a multiple of the block
  const size_t w_stride = w.row_stride ? w.row_stride : rb;
  if (w_stride < rb) {
    throw std::invalid_argument("matmul: weight row stride " + std::to_string(w_stride) +
                                " is smaller than a " + type_name(w.type) + " row of " +
                                std::to_string(k) + " elements (" + std::to_string(rb) + " bytes)");
  }
  if (m < 0 || n < 0 || x_stride < k || y_stride < n) {
    throw std::invalid_argument("matmul: bad shape m=" + std::to_string(m) +
                                " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                                " x_stride=" + std::to_string(x_stride) +
                                " y_stride=" + std::to_string(y_stride));
  }
  if (m == 0 || n == 0) return;

  const detail::MatmulArgs a{
      static_cast<const uint8_t*>(w.data), w_stride, k, w.type, x, x_stride, y, y_stride};
  // Tiles of up to 64 X rows by enough weight rows to give every thread several tasks; the
  // split only changes which thread computes an element, never how.
  const int64_t tile_m = std::min<int64_t>(m, 64);
  const int64_t m_tiles = (m + tile_m - 1) / tile_m;
  const int64_t want_tasks = 8 * pool.num_threads();
  int64_t tile_n = (n * m_tiles + want_tasks - 1) / want_tasks;
  tile_n = std::clamp<int64_t>((tile_n + 15) / 16 * 16, 16, 4096);
  const int64_t n_tiles = (n + tile_n - 1) / tile_n;
  pool.parallel_for(m_tiles * n_tiles, [&](int64_t task, int) {
    const int64_t mt = task / n_tiles, nt = task % n_tiles;
    const int64_t m0 = mt * tile_m, n0 = nt * tile_n;
    HWY_DYNAMIC_DISPATCH(MatmulTile)(a, m0, std::min(m, m0 + tile_m), n0, std::min(n, n0 + tile_n));
  });
}

}  // namespace kdr::ops
#endif  // HWY_ONCE
