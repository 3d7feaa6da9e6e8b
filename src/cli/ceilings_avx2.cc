// Fenced: AVX2 + FMA intrinsics, compiled with -mavx2 -mfma (src/cli/CMakeLists.txt). See
// ceilings_kernels.h; call only where the avx2 path runs.
#include <immintrin.h>

#include <cstdint>

#include "cli/ceilings_kernels.h"

namespace kdr::cli::ceilings {

// Twelve independent chains cover two FMA pipes of latency 4-5 on Zen 3 and Intel cores.
double f32_avx2_fma(int64_t iterations, float* sink) {
  constexpr int kChains = 12;
  __m256 acc[kChains];
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-6f);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(static_cast<float>(c));
  for (int64_t i = 0; i < iterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  }
  __m256 total = acc[0];
  for (int c = 1; c < kChains; ++c) total = _mm256_add_ps(total, acc[c]);
  *sink += _mm256_cvtss_f32(total);
  return 2.0 * 8 * kChains * static_cast<double>(iterations);
}

}  // namespace kdr::cli::ceilings
