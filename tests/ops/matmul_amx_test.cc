// The AMX matmul (src/ops/matmul_amx.h) on the emulated tiles (any CPU) and, where the amx
// path runs, on the instructions: the emulated instructions against their definition, every
// weight type against exact references with a derived bf16 bound, bitwise batch invariance,
// matmul_same_x, edge shapes, and the instructions against the emulation.
//
// The bound. The tile path rounds x and the dequantized weight w to bf16 (8 significant bits:
// relative error at most u = 2^-8 each), multiplies exactly (8 x 8 bits fit in f32's 24) and
// adds the K products into an f32 accumulator one at a time, in some order (K additions with
// unit roundoff 2^-24, whatever the order). So, with S = sum_k |x_k w_k|,
//   |y - sum_k x_k w_k| <= ((1 + u)^2 - 1) S + gamma_K (1 + u)^2 S
//                       <= 1.01 (2^-7 + K 2^-24) S        (K 2^-24 << 1),
// c = 2 in units of 2^-8. Against the product of the bf16-rounded operands only the additions
// remain:
//   |y - sum_k bf16(x_k) bf16(w_k)| <= 1.01 K 2^-24 sum_k |bf16(x_k) bf16(w_k)|,
// which any misplaced weight or X element breaks by orders of magnitude.
#include "ops/matmul_amx.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "base/cpu_features.h"
#include "base/dtype.h"
#include "matmul_test_util.h"
#include "ops/matmul.h"
#include "ops/matmul_amx_kernel.h"
#include "ops/quant.h"
#include "ops/tile_isa.h"
#include "test_seed.h"

namespace kdr::ops {
namespace amx {
// Test names and ctest's list read "Emulated" / "Amx" instead of the enum's bytes.
void PrintTo(TileMode mode, std::ostream* os) {
  *os << (mode == TileMode::kAmx ? "Amx" : mode == TileMode::kEmulated ? "Emulated" : "Off");
}
}  // namespace amx
namespace {

using amx::TileMode;
using testing::is_float;
using testing::random_weights;
using testing::random_x;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;  // the emulation is ~10x slower instrumented: fewer cases
#else
constexpr bool kSanitized = false;
#endif

float round_bf16(float v) { return bf16_to_f32(f32_to_bf16(v)); }

// Asserts Y (packed [m][n]) against both references of the header comment.
void expect_within_bf16_bounds(const std::vector<float>& y, const std::vector<float>& x, int64_t m,
                               int64_t k, DType type, const std::vector<uint8_t>& w, int64_t n,
                               const std::string& what) {
  std::vector<float> wf(k);
  const double kGamma = 1.01 * static_cast<double>(k) * std::ldexp(1.0, -24);
  const double kBf16 = 1.01 * std::ldexp(1.0, -7) + kGamma;
  for (int64_t j = 0; j < n; ++j) {
    if (k > 0) dequantize_row(type, w.data() + j * row_bytes(type, k), wf.data(), k);
    for (int64_t i = 0; i < m; ++i) {
      const float* xi = x.data() + i * k;
      double exact = 0, mag = 0, rounded = 0, rmag = 0;
      for (int64_t t = 0; t < k; ++t) {
        const double p = static_cast<double>(wf[t]) * xi[t];
        const double pr = static_cast<double>(round_bf16(wf[t])) * round_bf16(xi[t]);
        exact += p;
        mag += std::fabs(p);
        rounded += pr;
        rmag += std::fabs(pr);
      }
      const double got = y[i * n + j];
      ASSERT_NEAR(got, rounded, kGamma * rmag + 1e-30)
          << what << ": bf16 operands, row " << i << " col " << j << " (k=" << k << ")";
      ASSERT_NEAR(got, exact, kBf16 * mag + 1e-30)
          << what << ": exact reference, row " << i << " col " << j << " (k=" << k << ")";
    }
  }
}

// ---------------------------------------------------------------------------------------
// The emulated instructions against their definitions.

TEST(EmulatedTiles, Bf16DotProductAddsEachProductRoundedInOrder) {
  auto rng = testing::seeded_rng();
  std::normal_distribution<float> normal;
  alignas(64) uint16_t a[16][32], b[16][32];
  alignas(64) float c[16][16], c0[16][16];
  for (auto& r : a)
    for (auto& v : r) v = f32_to_bf16(normal(rng));
  for (auto& r : b)
    for (auto& v : r) v = f32_to_bf16(normal(rng));
  for (auto& r : c0)
    for (auto& v : r) v = normal(rng);
  tile::EmulatedTiles::configure(tile::full_config());
  tile::EmulatedTiles::load<0>(c0, 64);
  tile::EmulatedTiles::load<4>(a, 64);
  tile::EmulatedTiles::load<6>(b, 64);
  tile::EmulatedTiles::dpbf16ps<0, 4, 6>();
  tile::EmulatedTiles::store<0>(c, 64);
  tile::EmulatedTiles::release();
  for (int m = 0; m < 16; ++m) {
    for (int n = 0; n < 16; ++n) {
      volatile float acc = c0[m][n];  // one rounding per add, as the SDM's pseudocode
      for (int k = 0; k < 16; ++k) {
        acc = acc + bf16_to_f32(a[m][2 * k]) * bf16_to_f32(b[k][2 * n]);
        acc = acc + bf16_to_f32(a[m][2 * k + 1]) * bf16_to_f32(b[k][2 * n + 1]);
      }
      ASSERT_EQ(float_bits(acc), float_bits(c[m][n])) << "m=" << m << " n=" << n;
    }
  }
}

TEST(EmulatedTiles, Bf16DenormalsAreZeroAndTiesRoundToEven) {
  alignas(64) uint16_t a[16][32] = {}, b[16][32] = {};
  alignas(64) float c[16][16] = {};
  // Row 0: a bf16 denormal input reads as zero (else 2^-133 * 2^100 = 2^-33).
  a[0][0] = 0x0001;
  b[0][0] = f32_to_bf16(std::ldexp(1.0f, 100));
  // Row 1: 2^-70 * 2^-70 is an f32 denormal: flushed to zero.
  a[1][2] = f32_to_bf16(std::ldexp(1.0f, -70));
  b[1][0] = f32_to_bf16(std::ldexp(1.0f, -70));
  // Row 2: from 1, two products of 2^-24 each: 1 + 2^-24 is a tie between 1 and 1 + 2^-23
  // and rounds to 1 (even), twice; a pair summed before its add would give 1 + 2^-23.
  c[2][1] = 1.0f;
  a[2][0] = a[2][1] = f32_to_bf16(std::ldexp(1.0f, -12));
  b[0][2] = b[0][3] = f32_to_bf16(std::ldexp(1.0f, -12));
  // Row 3: an ordinary pair, 1 * 2 + 3 * 0.5 into 0.25.
  c[3][0] = 0.25f;
  a[3][4] = f32_to_bf16(1.0f);
  a[3][5] = f32_to_bf16(3.0f);
  b[2][0] = f32_to_bf16(2.0f);
  b[2][1] = f32_to_bf16(0.5f);
  tile::EmulatedTiles::configure(tile::full_config());
  tile::EmulatedTiles::load<0>(c, 64);
  tile::EmulatedTiles::load<4>(a, 64);
  tile::EmulatedTiles::load<6>(b, 64);
  tile::EmulatedTiles::dpbf16ps<0, 4, 6>();
  tile::EmulatedTiles::store<0>(c, 64);
  tile::EmulatedTiles::release();
  EXPECT_EQ(float_bits(c[0][0]), float_bits(0.0f));
  EXPECT_EQ(float_bits(c[1][0]), float_bits(0.0f));
  EXPECT_EQ(c[2][1], 1.0f);
  EXPECT_EQ(c[3][0], 3.75f);
}

TEST(EmulatedTiles, Int8DotProductSumsQuadsIntoInt32) {
  auto rng = testing::seeded_rng();
  alignas(64) int8_t a[16][64], b[16][64];
  alignas(64) int32_t c[16][16], c0[16][16];
  for (auto& r : a)
    for (auto& v : r) v = static_cast<int8_t>(rng());
  for (auto& r : b)
    for (auto& v : r) v = static_cast<int8_t>(rng());
  for (auto& r : c0)
    for (auto& v : r) v = static_cast<int32_t>(rng() % 100000) - 50000;
  tile::EmulatedTiles::configure(tile::full_config());
  tile::EmulatedTiles::load<1>(c0, 64);
  tile::EmulatedTiles::load<5>(a, 64);
  tile::EmulatedTiles::load<7>(b, 64);
  tile::EmulatedTiles::dpbssd<1, 5, 7>();
  tile::EmulatedTiles::store<1>(c, 64);
  tile::EmulatedTiles::release();
  for (int m = 0; m < 16; ++m) {
    for (int n = 0; n < 16; ++n) {
      int64_t want = c0[m][n];
      for (int k = 0; k < 16; ++k)
        for (int i = 0; i < 4; ++i) want += int64_t{a[m][4 * k + i]} * b[k][4 * n + i];
      ASSERT_EQ(want, c[m][n]) << "m=" << m << " n=" << n;
    }
  }
}

TEST(EmulatedTiles, ConfigurationsOutsidePalette1AreRefused) {
  tile::Config c = tile::full_config();
  EXPECT_EQ("", tile::check_config(c));
  c.rows[3] = 17;
  EXPECT_NE(std::string::npos, tile::check_config(c).find("tile 3 has 17 rows"));
  c = tile::full_config();
  c.colsb[0] = 65;
  EXPECT_NE(std::string::npos, tile::check_config(c).find("65 bytes"));
  c = tile::full_config();
  c.rows[9] = 1;
  EXPECT_NE(std::string::npos, tile::check_config(c).find("tile 9 does not exist"));
  c = tile::full_config();
  c.palette = 2;
  EXPECT_NE("", tile::check_config(c));
}

void dot_with_a_short_b_tile() {
  tile::Config c = tile::full_config();
  c.rows[6] = 8;  // B must have A's 16 dword columns as rows
  tile::EmulatedTiles::configure(c);
  tile::EmulatedTiles::dpbf16ps<0, 4, 6>();
}

TEST(EmulatedTilesDeathTest, MismatchedShapesAbortWithTheReason) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(dot_with_a_short_b_tile(), "A's dword columns differ from B's rows");
  EXPECT_DEATH(tile::EmulatedTiles::zero<0>(), "without ldtilecfg");
}

// ---------------------------------------------------------------------------------------
// The matmul on the tiles, once per tile implementation.

class MatmulTiles : public ::testing::TestWithParam<TileMode> {
 protected:
  void SetUp() override {
    if (GetParam() == TileMode::kAmx && !cpu::path_available(cpu::Path::kAmx)) {
      GTEST_SKIP() << "AMX cannot run here: " << cpu::unavailable_reason(cpu::Path::kAmx);
    }
    amx::set_tile_mode_for_testing(GetParam());
  }
  void TearDown() override { amx::reset_tile_mode_for_testing(); }
};

TEST_P(MatmulTiles, EveryWeightTypeIsWithinTheBf16BoundForEdgeShapes) {
  auto rng = testing::seeded_rng();
  const DType types[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0, DType::Q4_0,
                         DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q2_K, DType::Q3_K,
                         DType::Q4_K, DType::Q5_K, DType::Q6_K};
  const std::vector<int64_t> ms =
      kSanitized ? std::vector<int64_t>{1, 17, 65} : std::vector<int64_t>{1, 15, 16, 17, 64, 65};
  ThreadPool pool(2);
  for (DType type : types) {
    const int block = dtype_traits(type).block_elems;
    for (int64_t m : ms) {
      // K: whole blocks, and for the float types any length (K % 32 != 0 pads the tiles).
      int64_t k = block >= 256 ? 256 * (1 + static_cast<int64_t>(rng() % 2))
                               : 32 * (1 + static_cast<int64_t>(rng() % 6));
      if (is_float(type)) k += static_cast<int64_t>(rng() % 32);
      const int64_t n = 1 + static_cast<int64_t>(rng() % 50);  // rarely a multiple of 16
      const auto w = random_weights(type, n, k, rng);
      const auto x = random_x(m, k, rng);
      std::vector<float> y(m * n, NAN);
      matmul(pool, x.data(), m, WeightMatrix{type, w.data(), n, k, 0}, y.data());
      expect_within_bf16_bounds(
          y, x, m, k, type, w, n,
          std::string(dtype_name(type)) + " m=" + std::to_string(m) + " n=" + std::to_string(n));
      if (HasFatalFailure()) return;
    }
  }
}

TEST_P(MatmulTiles, NarrowOddShapesAndZeroK) {
  auto rng = testing::seeded_rng();
  ThreadPool pool(3);
  for (int64_t k : {1, 31, 33, 0}) {
    for (int64_t n : {1, 16, 17, 33}) {
      const int64_t m = 1 + static_cast<int64_t>(rng() % 20);
      const auto w = random_weights(DType::F32, n, k, rng);
      const auto x = random_x(m, k, rng);
      std::vector<float> y(m * n, NAN);
      matmul(pool, x.data(), m, WeightMatrix{DType::F32, w.data(), n, k, 0}, y.data());
      expect_within_bf16_bounds(y, x, m, k, DType::F32, w, n,
                                "F32 k=" + std::to_string(k) + " n=" + std::to_string(n));
      if (HasFatalFailure()) return;
    }
  }
}

// Alone vs in batches of 1..70 rows at every offset class, 1 vs 2 threads, strided X and Y:
// bitwise, and the padding of Y untouched.
TEST_P(MatmulTiles, RowIsBitwiseTheSameAloneOrInAnyBatch) {
  auto rng = testing::seeded_rng();
  for (DType type : {DType::Q4_K, DType::F16}) {
    const int64_t k = type == DType::Q4_K ? 512 : 200;  // 200: padded to 224 in the tiles
    const int64_t n = 45, rows = 80;
    const auto w = random_weights(type, n, k, rng);
    const WeightMatrix wm{type, w.data(), n, k, 0};
    const int64_t xs = k + 3, ys = n + 5;
    std::vector<float> x(rows * xs);
    std::normal_distribution<float> normal;
    for (auto& v : x) v = normal(rng);
    ThreadPool pool1(1), pool2(2);
    std::vector<float> alone(rows * n, NAN);
    for (int64_t r = 0; r < rows; ++r) {
      matmul(pool1, x.data() + r * xs, xs, 1, wm, alone.data() + r * n, n);
    }
    std::vector<int64_t> sizes;
    for (int64_t b = 1; b <= 70; ++b) {
      if (!kSanitized || b <= 3 || b % 16 <= 1 || b == 70) sizes.push_back(b);
    }
    for (int64_t b : sizes) {
      const int64_t start = static_cast<int64_t>(rng() % (rows - b + 1));
      ThreadPool& pool = b % 2 ? pool1 : pool2;
      std::vector<float> batch(b * ys, NAN);
      matmul(pool, x.data() + start * xs, xs, b, wm, batch.data(), ys);
      for (int64_t i = 0; i < b; ++i) {
        ASSERT_EQ(0, std::memcmp(alone.data() + (start + i) * n, batch.data() + i * ys,
                                 n * sizeof(float)))
            << dtype_name(type) << ": row " << start + i << " alone differs from row " << i
            << " of a batch of " << b << " (threads " << pool.num_threads() << ")";
        for (int64_t c = n; c < ys; ++c) ASSERT_TRUE(std::isnan(batch[i * ys + c]));
      }
    }
  }
}

TEST_P(MatmulTiles, SameXEqualsSeparateMatmuls) {
  auto rng = testing::seeded_rng();
  const int64_t k = 256;
  const DType types[] = {DType::Q5_0, DType::Q4_K, DType::Q8_0, DType::BF16};
  const int64_t rows[] = {48, 16, 37, 150};
  std::vector<std::vector<uint8_t>> w;
  MatmulTarget targets[4];
  for (int i = 0; i < 4; ++i) w.push_back(random_weights(types[i], rows[i], k, rng));
  ThreadPool pool(2);
  for (int64_t m : {1, 5, 70}) {
    const auto x = random_x(m, k, rng);
    std::vector<std::vector<float>> fused(4), alone(4);
    for (int i = 0; i < 4; ++i) {
      const WeightMatrix wm{types[i], w[i].data(), rows[i], k, 0};
      fused[i].assign(m * rows[i], NAN);
      alone[i].assign(m * rows[i], NAN);
      targets[i] = MatmulTarget{wm, fused[i].data()};
      matmul(pool, x.data(), m, wm, alone[i].data());
    }
    matmul_same_x(pool, x.data(), m, targets, 4);
    for (int i = 0; i < 4; ++i) {
      ASSERT_FALSE(std::isnan(alone[i][0]));
      ASSERT_EQ(0, std::memcmp(fused[i].data(), alone[i].data(), fused[i].size() * sizeof(float)))
          << dtype_name(types[i]) << " matrix " << i << ", m=" << m;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tiles, MatmulTiles, ::testing::Values(TileMode::kEmulated, TileMode::kAmx),
                         [](const auto& info) {
                           return std::string(info.param == TileMode::kAmx ? "Amx" : "Emulated");
                         });

// The instructions against the emulation on random panels (runs only where amx does): within
// the accumulation bound, and how often bit for bit (the SDM leaves the hardware's order of
// the pair's two adds open; the emulation follows its pseudocode).
TEST(AmxInstructions, AgreeWithTheEmulation) {
  if (!cpu::path_available(cpu::Path::kAmx)) {
    GTEST_SKIP() << "AMX cannot run here: " << cpu::unavailable_reason(cpu::Path::kAmx);
  }
  auto rng = testing::seeded_rng();
  std::normal_distribution<float> normal;
  const int64_t m = 40, k32 = 256, blocks = 3, n = 45;
  std::vector<uint16_t> x(48 * k32), w(blocks * k32 * 16);
  for (auto& v : x) v = f32_to_bf16(normal(rng));
  for (auto& v : w) v = f32_to_bf16(normal(rng));
  std::vector<float> y_amx(m * n, NAN), y_emu(m * n, NAN);
  amx::Bf16Panel p;
  p.x = x.data();
  p.x_rows = 48;
  p.k32 = k32;
  p.w = w.data();
  p.w_blocks = blocks;
  p.y_stride = n;
  p.m = m;
  p.n = n;
  p.y = y_amx.data();
  amx::bf16_panel_amx(p);
  p.y = y_emu.data();
  amx::bf16_panel_emulated(p);
  int64_t bitwise = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      // Both add the same exact products: each within the accumulation bound of the sum.
      double mag = 0;
      for (int64_t t = 0; t < k32; ++t) {
        const uint16_t wv =
            w[(j / 16 * (k32 / 32) + t / 32) * 512 + (t % 32) / 2 * 32 + 2 * (j % 16) + t % 2];
        mag += std::fabs(static_cast<double>(bf16_to_f32(x[i * k32 + t])) * bf16_to_f32(wv));
      }
      const int64_t e = i * n + j;
      ASSERT_NEAR(y_amx[e], y_emu[e], 2.02 * k32 * std::ldexp(1.0, -24) * mag)
          << "row " << i << " col " << j;
      bitwise += float_bits(y_amx[e]) == float_bits(y_emu[e]);
    }
  }
  std::printf("AMX vs emulation: %lld of %lld elements bitwise equal\n",
              static_cast<long long>(bitwise), static_cast<long long>(m * n));
}

}  // namespace
}  // namespace kdr::ops
