// The scalar conversions of base/dtype.h against independent references: the F16C
// instructions for f16, exact nearest-value searches in double for bf16 and fp8 e4m3, and
// round-half-even in double for int8 row quantization.
#include "base/dtype.h"

#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "seed.h"

namespace kdr {
namespace {

bool cpu_has_f16c() { return __builtin_cpu_supports("f16c"); }

__attribute__((target("f16c"))) uint16_t hw_f32_to_f16(float x) {
  const __m128i h = _mm_cvtps_ph(_mm_set1_ps(x), _MM_FROUND_TO_NEAREST_INT);
  return static_cast<uint16_t>(_mm_extract_epi16(h, 0));
}

__attribute__((target("f16c"))) float hw_f16_to_f32(uint16_t h) {
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(static_cast<int16_t>(h))));
}

// Same bits, or both NaN (NaN payloads differ between implementations and do not matter).
void expect_same_f16(float x, uint16_t got, uint16_t want) {
  const bool got_nan = (got & 0x7fffu) > 0x7c00u, want_nan = (want & 0x7fffu) > 0x7c00u;
  if (got_nan || want_nan) {
    EXPECT_TRUE(got_nan && want_nan) << "x bits " << std::hex << float_bits(x);
  } else {
    EXPECT_EQ(got, want) << "x = " << x << " (bits 0x" << std::hex << float_bits(x) << ")";
  }
}

TEST(F16, ToF32MatchesF16cForAll65536Halves) {
  if (!cpu_has_f16c()) GTEST_SKIP() << "no F16C on this CPU";
  for (uint32_t h = 0; h <= 0xffffu; ++h) {
    const float got = f16_to_f32(static_cast<uint16_t>(h));
    const float want = hw_f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << "half 0x" << std::hex << h;
    } else {
      ASSERT_EQ(float_bits(got), float_bits(want)) << "half 0x" << std::hex << h;
    }
  }
}

TEST(F16, FromF32MatchesF16cAtEveryMidpointAndNeighbour) {
  // For every pair of adjacent halves, the exact midpoint (a tie) and the floats just below
  // and above it: the places where rounding goes wrong.
  if (!cpu_has_f16c()) GTEST_SKIP() << "no F16C on this CPU";
  for (uint32_t h = 0; h < 0x7c00u; ++h) {
    const double lo = f16_to_f32(static_cast<uint16_t>(h));
    const double hi = h + 1 == 0x7c00u ? 65536.0 : f16_to_f32(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((lo + hi) / 2);  // exact: f32 has 13 more bits
    for (float x :
         {static_cast<float>(lo), mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
      expect_same_f16(x, f32_to_f16(x), hw_f32_to_f16(x));
      expect_same_f16(-x, f32_to_f16(-x), hw_f32_to_f16(-x));
    }
    if (HasFailure()) return;
  }
}

TEST(F16, FromF32MatchesF16cOnEdgesAndRandomBits) {
  if (!cpu_has_f16c()) GTEST_SKIP() << "no F16C on this CPU";
  const float inf = std::numeric_limits<float>::infinity();
  for (float x : {0.0f,
                  -0.0f,
                  inf,
                  -inf,
                  std::numeric_limits<float>::quiet_NaN(),
                  std::numeric_limits<float>::max(),
                  std::numeric_limits<float>::min(),
                  std::numeric_limits<float>::denorm_min(),
                  65504.0f,
                  65519.99f,
                  65520.0f,
                  -65520.0f,
                  5.9604645e-8f,
                  2.9802322e-8f,
                  2.9802326e-8f,
                  6.1035156e-5f,
                  6.1035152e-5f,
                  1.0f,
                  -1.0f,
                  1.00048828125f,
                  1.000732421875f})
    expect_same_f16(x, f32_to_f16(x), hw_f32_to_f16(x));

  std::mt19937_64 rng(kdr_test::test_seed());
  std::uniform_int_distribution<uint32_t> bits;
  std::uniform_real_distribution<float> half_range(-70000.0f, 70000.0f);
  for (int i = 0; i < 2000000; ++i) {
    const float x = i % 2 ? bits_float(bits(rng)) : half_range(rng) * std::ldexp(1.0f, -(i % 40));
    expect_same_f16(x, f32_to_f16(x), hw_f32_to_f16(x));
    if (HasFailure()) return;
  }
}

// bf16 reference: of the two bf16 values around x, the nearer one in exact (double)
// arithmetic, ties to the even mantissa; overflow past the largest finite goes to infinity.
uint16_t reference_bf16(float x) {
  const uint32_t u = float_bits(x);
  const uint16_t down = static_cast<uint16_t>(u >> 16);  // truncation toward zero
  if ((u & 0xffffu) == 0) return down;
  const uint16_t up = static_cast<uint16_t>(down + 1);  // next away from zero (may be inf)
  const double dx = std::fabs(static_cast<double>(x));
  const double d_down = dx - std::fabs(static_cast<double>(bf16_to_f32(down)));
  // The next value past the largest finite bf16 is infinity: compare with 2^128, where the
  // exponent range would put it.
  const double up_mag = (up & 0x7fffu) == 0x7f80u ? std::ldexp(1.0, 128)
                                                  : std::fabs(static_cast<double>(bf16_to_f32(up)));
  const double d_up = up_mag - dx;
  if (d_down < d_up) return down;
  if (d_up < d_down) return up;
  return (down & 1u) ? up : down;
}

TEST(BF16, RoundsToNearestEvenOnEdges) {
  // 1 + 2^-8 is the tie between 1 and 1 + 2^-7: even (1.0) wins; 1 + 3*2^-8 goes up.
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80u);
  EXPECT_EQ(f32_to_bf16(1.01171875f), 0x3f82u);
  EXPECT_EQ(f32_to_bf16(std::nextafter(1.00390625f, 2.0f)), 0x3f81u);
  EXPECT_EQ(f32_to_bf16(0.0f), 0x0000u);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000u);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80u);
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80u);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80u);  // rounds up to inf
  EXPECT_EQ(f32_to_bf16(bits_float(0x7f7f7fffu)), 0x7f7fu);            // just below the tie
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::denorm_min()), 0x0000u);
  EXPECT_EQ(f32_to_bf16(bits_float(0x00008000u)), 0x0000u);  // subnormal tie to even
  EXPECT_EQ(f32_to_bf16(bits_float(0x00018000u)), 0x0002u);  // subnormal tie to even (up)
  for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu}) {
    const uint16_t h = f32_to_bf16(bits_float(nan));
    EXPECT_TRUE(std::isnan(bf16_to_f32(h))) << std::hex << nan;
    EXPECT_EQ(h & 0x8000u, (nan >> 16) & 0x8000u) << "NaN keeps its sign";
  }
}

TEST(BF16, MatchesNearestValueSearchOnRandomBits) {
  std::mt19937_64 rng(kdr_test::test_seed());
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    uint32_t u = bits(rng);
    if (i % 4 == 0) u = (u & 0xffff0000u) | 0x8000u;  // exact ties
    const float x = bits_float(u);
    if (std::isnan(x)) continue;
    ASSERT_EQ(f32_to_bf16(x), reference_bf16(x)) << "bits 0x" << std::hex << u;
  }
}

TEST(BF16, RoundTripsEveryBf16Exactly) {
  for (uint32_t h = 0; h <= 0xffffu; ++h) {
    const float x = bf16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(x)) continue;
    ASSERT_EQ(f32_to_bf16(x), h) << std::hex << h;
  }
}

// fp8 e4m3fn decoded from its definition: bias 7, 3 mantissa bits, no infinities,
// S.1111.111 is NaN, exponent 0 is subnormal (m/8 * 2^-6).
double fp8_definition(uint8_t code) {
  const int e = (code >> 3) & 15, m = code & 7;
  const double sign = (code & 0x80) ? -1.0 : 1.0;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  if (e == 0) return sign * m / 8.0 * std::ldexp(1.0, -6);
  return sign * (1.0 + m / 8.0) * std::ldexp(1.0, e - 7);
}

// Nearest finite code by exhaustive search, ties to the even code; beyond 448 saturates.
uint8_t reference_fp8(float x) {
  if (std::isnan(x)) return 0x7f;
  const double a = std::fabs(static_cast<double>(x));
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  uint8_t best = 0;
  double best_d = std::numeric_limits<double>::infinity();
  for (int c = 0; c <= 0x7e; ++c) {
    const double d = std::fabs(fp8_definition(static_cast<uint8_t>(c)) - a);
    if (d < best_d || (d == best_d && (c & 1) == 0)) {
      best = static_cast<uint8_t>(c);
      best_d = d;
    }
  }
  return sign | best;
}

TEST(Fp8E4M3, DecodesAll256CodesPerDefinition) {
  for (int c = 0; c < 256; ++c) {
    const double want = fp8_definition(static_cast<uint8_t>(c));
    const float got = fp8e4m3_to_f32(static_cast<uint8_t>(c));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
    } else {
      EXPECT_EQ(static_cast<double>(got), want) << "code " << c;
      EXPECT_EQ(std::signbit(got), (c & 0x80) != 0) << "code " << c;
    }
  }
  EXPECT_EQ(fp8e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(fp8e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
}

TEST(Fp8E4M3, EveryFiniteCodeRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    EXPECT_EQ(f32_to_fp8e4m3(fp8e4m3_to_f32(static_cast<uint8_t>(c))), c) << "code " << c;
  }
  EXPECT_EQ(f32_to_fp8e4m3(std::numeric_limits<float>::quiet_NaN()) & 0x7f, 0x7f);
}

TEST(Fp8E4M3, MidpointsRoundToEvenCode) {
  for (int c = 0; c < 0x7e; ++c) {
    const double lo = fp8_definition(static_cast<uint8_t>(c));
    const double hi = fp8_definition(static_cast<uint8_t>(c + 1));
    const float mid = static_cast<float>((lo + hi) / 2);  // exact in f32
    const int even = (c & 1) ? c + 1 : c;
    EXPECT_EQ(f32_to_fp8e4m3(mid), even) << "midpoint of codes " << c << " and " << c + 1;
    EXPECT_EQ(f32_to_fp8e4m3(-mid), 0x80 | even) << "negative midpoint of " << c;
    EXPECT_EQ(f32_to_fp8e4m3(std::nextafter(mid, 0.0f)), c) << "below midpoint " << c;
    EXPECT_EQ(f32_to_fp8e4m3(std::nextafter(mid, 1e9f)), c + 1) << "above midpoint " << c;
  }
}

TEST(Fp8E4M3, SaturatesBeyond448) {
  for (float x : {448.0f, 449.0f, 464.0f, 465.0f, 1e6f, std::numeric_limits<float>::max(),
                  std::numeric_limits<float>::infinity()}) {
    EXPECT_EQ(f32_to_fp8e4m3(x), 0x7e) << x;
    EXPECT_EQ(f32_to_fp8e4m3(-x), 0xfe) << -x;
  }
}

TEST(Fp8E4M3, MatchesNearestCodeSearchOnRandomValues) {
  std::mt19937_64 rng(kdr_test::test_seed());
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exp(-14, 10);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::ldexp(mant(rng), exp(rng));
    ASSERT_EQ(f32_to_fp8e4m3(x), reference_fp8(x)) << "x = " << x;
  }
}

TEST(Int8Row, ZeroRowHasZeroScale) {
  std::vector<float> x(64, 0.0f);
  std::vector<int8_t> q(64, 5);
  EXPECT_EQ(quantize_row_int8(x.data(), 64, q.data()), 0.0f);
  for (int8_t v : q) EXPECT_EQ(v, 0);
}

TEST(Int8Row, MatchesRoundHalfEvenOfXOverScale) {
  std::mt19937_64 rng(kdr_test::test_seed());
  std::uniform_int_distribution<int> len(1, 300);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exp(-20, 20);
  for (int row = 0; row < 2000; ++row) {
    const int n = len(rng);
    const float mag = std::ldexp(1.0f, exp(rng));
    std::vector<float> x(n);
    for (float& e : x) e = unit(rng) * mag;
    if (row % 3 == 0) x[n / 2] = -x[n / 2];  // negative and positive extremes
    std::vector<int8_t> q(n);
    const float scale = quantize_row_int8(x.data(), n, q.data());

    double amax = 0;
    for (float e : x) amax = std::max(amax, std::fabs(static_cast<double>(e)));
    ASSERT_NEAR(scale, amax / 127.0, amax / 127.0 * 1e-6) << "row " << row;
    for (int i = 0; i < n; ++i) {
      const double exact = x[i] / (amax / 127.0);    // in [-127, 127]
      const double rounded = std::nearbyint(exact);  // ties to even
      // Within a hair of a tie, f32 arithmetic may legitimately land on either side.
      if (std::fabs(std::fabs(exact - std::trunc(exact)) - 0.5) < 1e-4) {
        ASSERT_LE(std::fabs(q[i] - exact), 0.5 + 1e-4) << "row " << row << " col " << i;
      } else {
        ASSERT_EQ(q[i], rounded) << "row " << row << " col " << i << " x " << x[i];
      }
      if (std::fabs(x[i]) == amax) {
        ASSERT_EQ(std::abs(q[i]), 127) << "the extreme maps to 127";
      }
    }
  }
}

}  // namespace
}  // namespace kdr
