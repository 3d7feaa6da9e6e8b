// Fenced: SSE2 intrinsics only (the x86-64 baseline). See ceilings_kernels.h.
#include <immintrin.h>

#include <cstdint>

#include "cli/ceilings_kernels.h"

namespace kdr::cli::ceilings {

// Highway's scalar (EMU128) target has no FMA: a multiply and an add per lane, 128 bits wide.
double f32_sse_mul_add(int64_t iterations, float* sink) {
  constexpr int kChains = 12;  // a mul + add chain has 6-8 cycles of latency
  __m128 acc[kChains];
  const __m128 a = _mm_set1_ps(0.999f), b = _mm_set1_ps(1e-6f);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm_set1_ps(static_cast<float>(c));
  for (int64_t i = 0; i < iterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm_add_ps(_mm_mul_ps(acc[c], a), b);
  }
  __m128 total = acc[0];
  for (int c = 1; c < kChains; ++c) total = _mm_add_ps(total, acc[c]);
  *sink += _mm_cvtss_f32(total);
  return 2.0 * 4 * kChains * static_cast<double>(iterations);
}

}  // namespace kdr::cli::ceilings
