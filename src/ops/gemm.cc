// f32 GEMM for encoders with Highway dynamic dispatch (this file is compiled once per SIMD
// target via foreach_target): a register-blocked kernel of 6 rows x one 16-column panel of
// packed weights. Every output element is one accumulator that adds x[i][t] * w[j][t] for
// t = 0..k-1 in order, then the bias: the same operations whatever the row's block, the
// column split or the thread count, so results are batch invariant.
#include "ops/gemm.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_AVX3 | HWY_AVX3_DL)
#endif
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/gemm.cc"
// clang-format off
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
// clang-format on

HWY_BEFORE_NAMESPACE();
namespace kdr::ops::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;
constexpr int64_t kPanel = PackedWeights::kPanel;

// Rows [0, MR) of x (rows k floats apart) times one panel; writes `cols` columns of each row.
template <int MR>
HWY_INLINE void Block(const float* x, int64_t k, const float* panel, const float* bias, float* y,
                      int64_t y_stride, int64_t cols) {
  const DF df;
  constexpr int64_t L = static_cast<int64_t>(hn::MaxLanes(DF()));
  constexpr int64_t V = kPanel / L;
  VF acc[MR][V];
  for (int r = 0; r < MR; ++r)
    for (int64_t v = 0; v < V; ++v) acc[r][v] = hn::Zero(df);
  for (int64_t t = 0; t < k; ++t) {
    VF b[V];
    for (int64_t v = 0; v < V; ++v) b[v] = hn::LoadU(df, panel + t * kPanel + v * L);
    for (int r = 0; r < MR; ++r) {
      const VF a = hn::Set(df, x[r * k + t]);
      for (int64_t v = 0; v < V; ++v) acc[r][v] = hn::MulAdd(a, b[v], acc[r][v]);
    }
  }
  HWY_ALIGN float tmp[kPanel];
  for (int r = 0; r < MR; ++r) {
    float* out = cols == kPanel ? y + r * y_stride : tmp;
    for (int64_t v = 0; v < V; ++v) {
      VF o = acc[r][v];
      if (bias) o = hn::Add(o, hn::LoadU(df, bias + v * L));
      hn::StoreU(o, df, out + v * L);
    }
    if (cols != kPanel) std::memcpy(y + r * y_stride, tmp, static_cast<size_t>(cols) * 4);
  }
}

// Rows [m0, m1) times panels [p0, p1); bias (may be null) padded to whole panels.
void GemmTile(const float* x, int64_t k, int64_t m0, int64_t m1, const float* panels, int64_t n,
              int64_t p0, int64_t p1, const float* bias, float* y) {
  for (int64_t p = p0; p < p1; ++p) {
    const float* panel = panels + p * k * kPanel;
    const float* bp = bias ? bias + p * kPanel : nullptr;
    const int64_t cols = std::min(kPanel, n - p * kPanel);
    float* yp = y + p * kPanel;
    int64_t r = m0;
    for (; r + 6 <= m1; r += 6) Block<6>(x + r * k, k, panel, bp, yp + r * n, n, cols);
    switch (m1 - r) {
      case 5:
        Block<5>(x + r * k, k, panel, bp, yp + r * n, n, cols);
        break;
      case 4:
        Block<4>(x + r * k, k, panel, bp, yp + r * n, n, cols);
        break;
      case 3:
        Block<3>(x + r * k, k, panel, bp, yp + r * n, n, cols);
        break;
      case 2:
        Block<2>(x + r * k, k, panel, bp, yp + r * n, n, cols);
        break;
      case 1:
        Block<1>(x + r * k, k, panel, bp, yp + r * n, n, cols);
        break;
      default:
        break;
    }
  }
}

}  // namespace kdr::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kdr::ops {
HWY_EXPORT(GemmTile);

namespace {
constexpr int64_t kPanel = PackedWeights::kPanel;
}  // namespace

PackedWeights::PackedWeights(const float* w, int64_t n, int64_t k) : n_(n), k_(k) {
  if (n < 0 || k < 0)
    throw std::invalid_argument("PackedWeights: bad shape " + std::to_string(n) + "x" +
                                std::to_string(k));
  const int64_t panels = (n + kPanel - 1) / kPanel;
  data_.assign(static_cast<size_t>(panels * k * kPanel), 0.0f);
  for (int64_t j = 0; j < n; ++j) {
    float* dst = &data_[static_cast<size_t>((j / kPanel) * k * kPanel + j % kPanel)];
    for (int64_t t = 0; t < k; ++t) dst[t * kPanel] = w[j * k + t];
  }
}

void gemm_f32(ThreadPool& pool, const float* x, int64_t m, const PackedWeights& w,
              const float* bias, float* y) {
  const int64_t n = w.rows(), k = w.cols();
  if (m <= 0 || n <= 0) return;
  const int64_t panels = (n + kPanel - 1) / kPanel;
  std::vector<float> padded;
  if (bias) {
    padded.assign(static_cast<size_t>(panels * kPanel), 0.0f);
    std::copy(bias, bias + n, padded.begin());
  }
  // Tasks: blocks of 48 rows (8 kernel calls share each panel while it is in cache), times
  // enough panel groups to give every thread several tasks when there are few rows.
  constexpr int64_t kRows = 48;
  const int64_t row_blocks = (m + kRows - 1) / kRows;
  const int64_t want = 4 * pool.num_threads();
  const int64_t groups = std::clamp<int64_t>((want + row_blocks - 1) / row_blocks, 1, panels);
  const int64_t per_group = (panels + groups - 1) / groups;
  const float* bp = bias ? padded.data() : nullptr;
  pool.parallel_for(row_blocks * groups, [&](int64_t task, int) {
    const int64_t rb = task / groups, g = task % groups;
    const int64_t p0 = g * per_group, p1 = std::min(panels, p0 + per_group);
    if (p0 >= p1) return;
    HWY_DYNAMIC_DISPATCH(GemmTile)
    (x, k, rb * kRows, std::min(m, (rb + 1) * kRows), w.data(), n, p0, p1, bp, y);
  });
}

}  // namespace kdr::ops
#endif  // HWY_ONCE
