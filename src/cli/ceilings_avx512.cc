// Fenced: AVX-512 intrinsics (F, BF16, VNNI), compiled with -mavx512f -mavx512bf16
// -mavx512vnni (src/cli/CMakeLists.txt). See ceilings_kernels.h; f32_avx512_fma only where
// the avx512 path runs, the dot products only where the avx512bf16 path runs.
#include <immintrin.h>

#include <cstdint>

#include "cli/ceilings_kernels.h"

namespace kdr::cli::ceilings {
namespace {
constexpr int kChains = 12;  // two 512-bit pipes of latency 4-6

// The lanes' sum (GCC 12's _mm512_reduce_add_ps warns of an uninitialised temporary).
float lane_sum(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float s = 0;
  for (float x : lanes) s += x;
  return s;
}
}  // namespace

double f32_avx512_fma(int64_t iterations, float* sink) {
  __m512 acc[kChains];
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-6f);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  for (int64_t i = 0; i < iterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  }
  __m512 total = acc[0];
  for (int c = 1; c < kChains; ++c) total = _mm512_add_ps(total, acc[c]);
  *sink += lane_sum(total);
  return 2.0 * 16 * kChains * static_cast<double>(iterations);
}

// vdpbf16ps: per f32 lane, two bf16 products added to the accumulator (4 FLOP a lane).
double bf16_avx512_dot(int64_t iterations, float* sink) {
  __m512 acc[kChains];
  // 0x3f80 is bf16 1.0 and 0x3c00 a small value: pairs (1.0, 2^-7) in every 32-bit lane.
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803c00);
  const __m512bh b = (__m512bh)_mm512_set1_epi32(0x3c003c00);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  for (int64_t i = 0; i < iterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
  }
  __m512 total = acc[0];
  for (int c = 1; c < kChains; ++c) total = _mm512_add_ps(total, acc[c]);
  *sink += lane_sum(total);
  return 4.0 * 16 * kChains * static_cast<double>(iterations);
}

// vpdpbusd: per int32 lane, four u8 x s8 products added to the accumulator (8 ops a lane).
double int8_avx512_vnni(int64_t iterations, float* sink) {
  __m512i acc[kChains];
  const __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(1);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_epi32(c);
  for (int64_t i = 0; i < iterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], a, b);
  }
  __m512i total = acc[0];
  for (int c = 1; c < kChains; ++c) total = _mm512_add_epi32(total, acc[c]);
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, total);
  int64_t s = 0;  // the lanes wrap in hardware; their sum must not overflow here
  for (int32_t x : lanes) s += x;
  *sink += static_cast<float>(s);
  return 8.0 * 16 * kChains * static_cast<double>(iterations);
}

}  // namespace kdr::cli::ceilings
