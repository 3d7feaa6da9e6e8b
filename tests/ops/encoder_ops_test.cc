// The ops of BERT encoders against scalar double references on random inputs: erf GELU,
// LayerNorm, and gemm_f32 (with and without bias, any thread count, batch invariant).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ops/activations.h"
#include "ops/gemm.h"
#include "ops/norm.h"
#include "test_seed.h"

namespace kdr::ops {
namespace {

std::vector<float> gaussian(int64_t n, float sigma, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = normal(rng);
  return v;
}

TEST(EncoderOps, GeluErfMatchesTheErfFormula) {
  auto rng = testing::seeded_rng();
  for (int64_t n : {1, 7, 64, 257, 2048}) {
    auto x = gaussian(n, 4.0f, rng);
    if (n > 3) x[0] = -30.0f, x[1] = 30.0f, x[2] = 0.0f;
    std::vector<float> y(static_cast<size_t>(n));
    gelu_erf(x.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double ref = 0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0)));
      ASSERT_NEAR(y[i], ref, 1e-6 + 1e-6 * std::fabs(ref)) << "x = " << x[i];
    }
  }
}

TEST(EncoderOps, LayerNormMatchesMeanAndVariance) {
  auto rng = testing::seeded_rng();
  for (int64_t n : {1, 7, 64, 384, 1000}) {
    auto x = gaussian(n, 3.0f, rng);
    for (auto& v : x) v += 5.0f;  // a mean far from zero
    const auto w = gaussian(n, 1.0f, rng), b = gaussian(n, 1.0f, rng);
    double mean = 0, var = 0;
    for (float v : x) mean += v;
    mean /= static_cast<double>(n);
    for (float v : x) var += (v - mean) * (v - mean);
    var /= static_cast<double>(n);
    std::vector<float> y(static_cast<size_t>(n));
    layer_norm(x.data(), w.data(), b.data(), 1e-12f, y.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double ref = n == 1 ? b[i] : (x[i] - mean) / std::sqrt(var + 1e-12) * w[i] + b[i];
      ASSERT_NEAR(y[i], ref, 1e-5 * (1 + std::fabs(ref))) << "n = " << n << " i = " << i;
    }
  }
}

TEST(EncoderOps, GemmF32MatchesADoubleReference) {
  auto rng = testing::seeded_rng();
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int round = 0; round < 4; ++round) {
      const int64_t m = 1 + static_cast<int64_t>(rng() % 300),
                    n = 1 + static_cast<int64_t>(rng() % 100),
                    k = 1 + static_cast<int64_t>(rng() % 200);
      const auto x = gaussian(m * k, 1.0f, rng), w = gaussian(n * k, 1.0f, rng),
                 bias = gaussian(n, 1.0f, rng);
      const PackedWeights packed(w.data(), n, k);
      std::vector<float> y(static_cast<size_t>(m * n)), yb(static_cast<size_t>(m * n));
      gemm_f32(pool, x.data(), m, packed, nullptr, y.data());
      gemm_f32(pool, x.data(), m, packed, bias.data(), yb.data());
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double ref = 0;
          for (int64_t t = 0; t < k; ++t) ref += static_cast<double>(x[i * k + t]) * w[j * k + t];
          const double tol = 1e-5 * std::sqrt(static_cast<double>(k)) * (1 + std::fabs(ref));
          ASSERT_NEAR(y[i * n + j], ref, tol)
              << m << "x" << n << "x" << k << " at " << i << "," << j;
          ASSERT_NEAR(yb[i * n + j], ref + bias[j], tol) << "with bias at " << i << "," << j;
        }
      // Batch invariance: any row alone gives bitwise the same values.
      const int64_t row = static_cast<int64_t>(rng() % m);
      std::vector<float> alone(static_cast<size_t>(n));
      gemm_f32(pool, &x[row * k], 1, packed, bias.data(), alone.data());
      for (int64_t j = 0; j < n; ++j) ASSERT_EQ(alone[j], yb[row * n + j]) << "row " << row;
    }
  }
}

}  // namespace
}  // namespace kdr::ops
