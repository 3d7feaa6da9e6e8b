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
#include "ops/matmul_amx.h"

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

namespace {

// One validated product and its split into tiles of up to 64 X rows by tile_n weight rows.
struct Split {
  detail::MatmulArgs a;
  int64_t m = 0, n = 0, tile_m = 1, tile_n = 1, n_tiles = 0, tasks = 0;
  void run(int64_t task) const {
    const int64_t mt = task / n_tiles, nt = task % n_tiles;
    const int64_t m0 = mt * tile_m, n0 = nt * tile_n;
    HWY_DYNAMIC_DISPATCH(MatmulTile)(a, m0, std::min(m, m0 + tile_m), n0, std::min(n, n0 + tile_n));
  }
};

Split split(const ThreadPool& pool, const float* x, int64_t x_stride, int64_t m,
            const WeightMatrix& w, float* y, int64_t y_stride) {
  const int64_t n = w.rows, k = w.cols;
  if (w.type == DType::Q8_K) {
    throw std::invalid_argument("matmul: Q8_K is an activation format, not a weight type");
  }
  if (!is_supported_type(w.type))
    throw std::invalid_argument(std::string("matmul: no kernel for ") + dtype_name(w.type) +
                                " weights");
  const size_t rb = row_bytes(w.type, k);  // throws when k is not a multiple of the block
  const size_t w_stride = w.row_stride ? w.row_stride : rb;
  if (w_stride < rb) {
    throw std::invalid_argument("matmul: weight row stride " + std::to_string(w_stride) +
                                " is smaller than a " + dtype_name(w.type) + " row of " +
                                std::to_string(k) + " elements (" + std::to_string(rb) + " bytes)");
  }
  if (m < 0 || n < 0 || x_stride < k || y_stride < n) {
    throw std::invalid_argument("matmul: bad shape m=" + std::to_string(m) +
                                " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                                " x_stride=" + std::to_string(x_stride) +
                                " y_stride=" + std::to_string(y_stride));
  }
  Split s;
  s.a = detail::MatmulArgs{
      static_cast<const uint8_t*>(w.data), w_stride, k, w.type, x, x_stride, y, y_stride};
  s.m = m;
  s.n = n;
  if (m == 0 || n == 0) return s;  // no tasks
  // Enough weight rows per tile to give every thread several tasks; the split only changes
  // which thread computes an element, never how.
  s.tile_m = std::min<int64_t>(m, 64);
  const int64_t m_tiles = (m + s.tile_m - 1) / s.tile_m;
  const int64_t want_tasks = 8 * pool.num_threads();
  int64_t tile_n = (n * m_tiles + want_tasks - 1) / want_tasks;
  s.tile_n = std::clamp<int64_t>((tile_n + 15) / 16 * 16, 16, 4096);
  s.n_tiles = (n + s.tile_n - 1) / s.tile_n;
  s.tasks = m_tiles * s.n_tiles;
  return s;
}

}  // namespace

void matmul(ThreadPool& pool, const float* x, int64_t x_stride, int64_t m, const WeightMatrix& w,
            float* y, int64_t y_stride) {
  const Split s = split(pool, x, x_stride, m, w, y, y_stride);
  if (s.tasks == 0) return;
  if (const amx::TileMode t = amx::tile_mode(); t != amx::TileMode::kOff) {
    const amx::TileProduct p{s.a, s.n};  // every row on the tiles (matmul_amx.h)
    return amx::tile_matmul(pool, t, m, &p, 1);
  }
  pool.parallel_for(s.tasks, [&](int64_t task, int) { s.run(task); });
}

void matmul_same_x(ThreadPool& pool, const float* x, int64_t m, const MatmulTarget* targets,
                   size_t count) {
  constexpr size_t kMax = 4;
  if (count > kMax) {
    throw std::invalid_argument("matmul_same_x: " + std::to_string(count) + " matrices, at most " +
                                std::to_string(kMax));
  }
  Split splits[kMax];
  int64_t first[kMax + 1] = {0};  // task index where each matrix's tiles start
  for (size_t i = 0; i < count; ++i) {
    const WeightMatrix& w = targets[i].w;
    if (w.cols != targets[0].w.cols) {
      throw std::invalid_argument("matmul_same_x: matrix " + std::to_string(i) + " has " +
                                  std::to_string(w.cols) + " columns, matrix 0 has " +
                                  std::to_string(targets[0].w.cols));
    }
    splits[i] = split(pool, x, w.cols, m, w, targets[i].y, w.rows);
    first[i + 1] = first[i] + splits[i].tasks;
  }
  if (first[count] == 0) return;
  if (const amx::TileMode t = amx::tile_mode(); t != amx::TileMode::kOff) {
    amx::TileProduct p[kMax];
    for (size_t i = 0; i < count; ++i) p[i] = amx::TileProduct{splits[i].a, splits[i].n};
    return amx::tile_matmul(pool, t, m, p, count);
  }
  pool.parallel_for(first[count], [&](int64_t task, int) {
    size_t i = 0;
    while (task >= first[i + 1]) ++i;
    splits[i].run(task - first[i]);
  });
}

}  // namespace kdr::ops
#endif  // HWY_ONCE
