// matmul against a double-precision dot product over the scalar dequantized weights, and
// its batch invariance (a row's result does not depend on M, its position or the threads).
#include "ops/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "matmul_test_util.h"
#include "ops/matmul_amx.h"
#include "test_seed.h"

namespace kdr::ops {
namespace {

using testing::is_float;
using testing::random_weights;
using testing::random_x;

struct Reference {
  std::vector<double> y;      // exact dot products of X with the dequantized weights
  std::vector<double> bound;  // allowed |error|: f32 rounding of the weights and the sums
};

// matmul keeps X in f32 and rounds each dequantized weight once, so it differs from the exact
// dot product only by float rounding: any wrong quant, scale or offset shows up far above it.
Reference reference(const std::vector<float>& x, int64_t m, int64_t k, DType type,
                    const std::vector<uint8_t>& w, int64_t n) {
  Reference ref{std::vector<double>(m * n), std::vector<double>(m * n)};
  std::vector<float> wf(k);
  for (int64_t j = 0; j < n; ++j) {
    dequantize_row(type, w.data() + j * row_bytes(type, k), wf.data(), k);
    for (int64_t i = 0; i < m; ++i) {
      const float* xi = x.data() + i * k;
      double dot = 0, mag = 0;
      for (int64_t t = 0; t < k; ++t) {
        dot += static_cast<double>(wf[t]) * xi[t];
        mag += std::fabs(static_cast<double>(wf[t]) * xi[t]);
      }
      ref.y[i * n + j] = dot;
      // The amx path rounds X and the weights to bf16 (matmul_amx_test.cc derives its bound).
      ref.bound[i * n + j] =
          (amx::tile_mode() != amx::TileMode::kOff ? 1.01 * (0x1p-7 + k * 0x1p-24) : 4e-6) * mag +
          1e-7;
    }
  }
  return ref;
}

class MatmulByType : public ::testing::TestWithParam<DType> {};

TEST_P(MatmulByType, MatchesDoubleReferenceForEveryBatchAndThreadCount) {
  const DType type = GetParam();
  auto rng = testing::seeded_rng();
  const int block = std::max(dtype_traits(type).block_elems, 8);
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (int64_t m : {1, 3, 17, 64}) {
      const int64_t k = block * static_cast<int64_t>(1 + rng() % (block >= 256 ? 4 : 24)) +
                        (is_float(type) ? static_cast<int64_t>(rng() % 8) : 0);
      const int64_t n = 1 + static_cast<int64_t>(rng() % 40);
      const auto w = random_weights(type, n, k, rng);
      const auto x = random_x(m, k, rng);
      std::vector<float> y(m * n, NAN);
      matmul(pool, x.data(), m, WeightMatrix{type, w.data(), n, k, 0}, y.data());
      const Reference ref = reference(x, m, k, type, w, n);
      for (int64_t i = 0; i < m * n; ++i) {
        ASSERT_NEAR(y[i], ref.y[i], ref.bound[i])
            << dtype_name(type) << " threads=" << threads << " m=" << m << " n=" << n << " k=" << k
            << " element " << i;
      }
    }
  }
}

TEST_P(MatmulByType, RowIsBitwiseTheSameAloneOrInAnyBatch) {
  const DType type = GetParam();
  auto rng = testing::seeded_rng();
  const int64_t k = dtype_traits(type).block_elems >= 256 ? 512 : 96 + (is_float(type) ? 5 : 0);
  const int64_t n = 37, m = 19;
  const auto w = random_weights(type, n, k, rng);
  const WeightMatrix wm{type, w.data(), n, k, 0};
  // The batch lives in padded rows (strides) to check those too.
  const int64_t xs = k + 3, ys = n + 5;
  std::vector<float> x(m * xs);
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(rng);
  ThreadPool pool4(4), pool1(1);
  std::vector<float> batch(m * ys, NAN);
  matmul(pool4, x.data(), xs, m, wm, batch.data(), ys);
  for (int64_t i = 0; i < m; ++i) {
    std::vector<float> alone(n, NAN);
    matmul(pool1, x.data() + i * xs, xs, 1, wm, alone.data(), n);
    ASSERT_EQ(0, std::memcmp(alone.data(), batch.data() + i * ys, n * sizeof(float)))
        << dtype_name(type) << " row " << i << " differs alone vs in a batch of " << m;
  }
  // A sub-batch starting at an odd row must agree too (tiles of 4 rows shift).
  std::vector<float> sub(5 * ys, NAN);
  matmul(pool4, x.data() + 3 * xs, xs, 5, wm, sub.data(), ys);
  for (int64_t i = 0; i < 5; ++i) {
    ASSERT_EQ(0, std::memcmp(sub.data() + i * ys, batch.data() + (i + 3) * ys, n * sizeof(float)))
        << dtype_name(type) << " sub-batch row " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(AllWeightTypes, MatmulByType,
                         ::testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q8_0,
                                           DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                                           DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K,
                                           DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(MatmulErrors, RowLengthNotAMultipleOfTheBlockIsRejected) {
  ThreadPool pool(1);
  std::vector<uint8_t> w(1024);
  std::vector<float> x(640), y(1);
  EXPECT_THROW(matmul(pool, x.data(), 1, WeightMatrix{DType::Q4_K, w.data(), 1, 640, 0}, y.data()),
               std::invalid_argument);
  EXPECT_THROW(matmul(pool, x.data(), 1, WeightMatrix{DType::Q8_K, w.data(), 1, 256, 0}, y.data()),
               std::invalid_argument);
  EXPECT_THROW(matmul(pool, x.data(), 1, WeightMatrix{DType::Q8_0, w.data(), 1, 64, 10}, y.data()),
               std::invalid_argument);  // stride shorter than a row
}

// A layer's Q/K/V (or gate/up) in one dispatch: each output bitwise what its own matmul gives,
// with mixed types and row counts (Gemma-3's Q5_0 q/k and Q8_0 v), one row and many.
TEST(MatmulSameX, EachOutputIsBitwiseItsOwnMatmul) {
  auto rng = testing::seeded_rng();
  const int64_t k = 256;
  const DType types[] = {DType::Q5_0, DType::Q4_K, DType::Q8_0};
  const int64_t rows[] = {48, 16, 37};
  std::vector<std::vector<uint8_t>> w;
  std::vector<WeightMatrix> wm;
  for (int i = 0; i < 3; ++i) {
    w.push_back(random_weights(types[i], rows[i], k, rng));
    wm.push_back(WeightMatrix{types[i], w.back().data(), rows[i], k, 0});
  }
  std::normal_distribution<float> normal;
  ThreadPool pool(3);
  for (int64_t m : {1, 5, 70}) {
    std::vector<float> x(m * k);
    for (auto& v : x) v = normal(rng);
    std::vector<std::vector<float>> fused(3), alone(3);
    MatmulTarget targets[3];
    for (int i = 0; i < 3; ++i) {
      fused[i].assign(m * rows[i], NAN);
      alone[i].assign(m * rows[i], NAN);
      targets[i] = MatmulTarget{wm[i], fused[i].data()};
      matmul(pool, x.data(), m, wm[i], alone[i].data());
    }
    matmul_same_x(pool, x.data(), m, targets, 3);
    for (int i = 0; i < 3; ++i) {
      ASSERT_FALSE(std::isnan(alone[i][0]));
      ASSERT_EQ(0, std::memcmp(fused[i].data(), alone[i].data(), fused[i].size() * sizeof(float)))
          << dtype_name(types[i]) << " matrix " << i << ", m=" << m;
    }
  }
}

TEST(MatmulSameX, MatricesOfDifferentWidthsAreRejectedByName) {
  ThreadPool pool(1);
  std::vector<uint8_t> w(4096);
  std::vector<float> x(256), y(64);
  const MatmulTarget targets[] = {{WeightMatrix{DType::Q8_0, w.data(), 2, 256, 0}, y.data()},
                                  {WeightMatrix{DType::Q8_0, w.data(), 2, 128, 0}, y.data()}};
  try {
    matmul_same_x(pool, x.data(), 1, targets, 2);
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("matrix 1 has 128 columns"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace kdr::ops
