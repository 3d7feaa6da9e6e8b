// Element-wise ops, RMS norm, RoPE and embedding lookup against scalar double references.
#include "ops/activations.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "ops/matmul.h"
#include "ops/norm.h"
#include "ops/rope.h"
#include "test_seed.h"

namespace kdr::ops {
namespace {

std::vector<float> gaussian(int64_t n, float sigma, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

double silu_ref(double x) { return x / (1 + std::exp(-x)); }
double gelu_ref(double x) {
  return 0.5 * x *
         (1 + std::tanh(std::sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
}

// Lengths with and without a vector tail.
const int64_t kLengths[] = {1, 7, 64, 257, 2048};

void expect_close(const std::vector<float>& y, const std::vector<double>& ref, double rel,
                  double abs, const char* what) {
  for (size_t i = 0; i < y.size(); ++i) {
    ASSERT_NEAR(y[i], ref[i], abs + rel * std::fabs(ref[i]))
        << what << " element " << i << " of " << y.size();
  }
}

TEST(Activations, SiluAndGeluTanhMatchTheirFormulas) {
  auto rng = testing::seeded_rng();
  for (int64_t n : kLengths) {
    auto x = gaussian(n, 4.0f, rng);
    if (n > 3) x[0] = -100.0f, x[1] = 100.0f, x[2] = 0.0f;
    std::vector<float> y(n);
    std::vector<double> ref(n);
    silu(x.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) ref[i] = silu_ref(x[i]);
    expect_close(y, ref, 2e-6, 1e-7, "silu");
    gelu_tanh(x.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) ref[i] = gelu_ref(x[i]);
    expect_close(y, ref, 2e-6, 1e-6, "gelu_tanh");
  }
}

TEST(Activations, GatedFormsMultiplyTheActivatedGateByUp) {
  auto rng = testing::seeded_rng();
  for (int64_t n : kLengths) {
    const auto gate = gaussian(n, 3.0f, rng), up = gaussian(n, 1.0f, rng);
    std::vector<float> y(n);
    std::vector<double> ref(n);
    swiglu(gate.data(), up.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) ref[i] = silu_ref(gate[i]) * up[i];
    expect_close(y, ref, 3e-6, 1e-7, "swiglu");
    std::vector<float> inplace = gate;  // out aliasing gate
    geglu_tanh(inplace.data(), up.data(), inplace.data(), n);
    for (int64_t i = 0; i < n; ++i) ref[i] = gelu_ref(gate[i]) * up[i];
    expect_close(inplace, ref, 3e-6, 1e-6, "geglu_tanh");
  }
}

TEST(Activations, SoftmaxSumsToOneAndMatchesReference) {
  auto rng = testing::seeded_rng();
  for (int64_t n : kLengths) {
    auto x = gaussian(n, 5.0f, rng);
    if (n > 2) x[1] = -std::numeric_limits<float>::infinity();  // masked position
    std::vector<double> ref(n);
    double mx = -INFINITY, sum = 0;
    for (float v : x) mx = std::max(mx, static_cast<double>(v));
    for (int64_t i = 0; i < n; ++i) sum += ref[i] = std::exp(x[i] - mx);
    for (auto& r : ref) r /= sum;
    softmax(x.data(), n);
    expect_close(x, ref, 1e-5, 1e-9, "softmax");
  }
  std::vector<float> masked(5, -std::numeric_limits<float>::infinity());
  softmax(masked.data(), 5);
  for (float v : masked) EXPECT_EQ(v, 0.0f);
}

TEST(Activations, AddAndScale) {
  auto rng = testing::seeded_rng();
  for (int64_t n : kLengths) {
    const auto a = gaussian(n, 1.0f, rng), b = gaussian(n, 1.0f, rng);
    std::vector<float> y(n);
    add(a.data(), b.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], a[i] + b[i]);
    scale(a.data(), 0.125f, y.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], a[i] * 0.125f);
  }
}

TEST(Norm, RmsNormWithAndWithoutWeight) {
  auto rng = testing::seeded_rng();
  for (int64_t n : kLengths) {
    const auto x = gaussian(n, 2.0f, rng), w = gaussian(n, 1.0f, rng);
    double ss = 0;
    for (float v : x) ss += static_cast<double>(v) * v;
    const double inv = 1 / std::sqrt(ss / n + 1e-6);
    std::vector<float> y(n);
    std::vector<double> ref(n);
    rms_norm(x.data(), w.data(), 1e-6f, y.data(), n);
    for (int64_t i = 0; i < n; ++i) ref[i] = x[i] * inv * w[i];
    expect_close(y, ref, 1e-5, 1e-7, "rms_norm");
    rms_norm(x.data(), nullptr, 1e-6f, y.data(), n);
    for (int64_t i = 0; i < n; ++i) ref[i] = x[i] * inv;
    expect_close(y, ref, 1e-5, 1e-7, "rms_norm without weight");
  }
}

TEST(Norm, RowsAreNormalizedIndependently) {
  auto rng = testing::seeded_rng();
  const int64_t n = 33, stride = 40, rows = 3;
  auto x = gaussian(rows * stride, 1.0f, rng);
  const auto w = gaussian(n, 1.0f, rng);
  std::vector<float> y(rows * stride, 7.0f), alone(n);
  rms_norm_rows(x.data(), w.data(), 1e-5f, y.data(), rows, n, stride);
  for (int64_t r = 0; r < rows; ++r) {
    rms_norm(x.data() + r * stride, w.data(), 1e-5f, alone.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[r * stride + i], alone[i]);
    for (int64_t i = n; i < stride; ++i) ASSERT_EQ(y[r * stride + i], 7.0f) << "padding written";
  }
}

// Rotates pair (a, b) of each head by pos * freq in double, and bounds the error a float
// computation may make: the angle rounded to float (half an ulp of pos * freq, plus cos/sin
// and rotation rounding, a few ulps of 1) times the pair's magnitude.
struct RopeReference {
  std::vector<double> y, bound;
};
RopeReference rope_ref(const std::vector<float>& x, int heads, int head_dim, int rot, int64_t pos,
                       RopeStyle style, const std::vector<double>& freq) {
  RopeReference r{std::vector<double>(x.begin(), x.end()), std::vector<double>(x.size(), 0.0)};
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < rot / 2; ++i) {
      const int a = h * head_dim + (style == RopeStyle::kInterleaved ? 2 * i : i);
      const int b = h * head_dim + (style == RopeStyle::kInterleaved ? 2 * i + 1 : i + rot / 2);
      const double t = pos * freq[i];
      r.y[a] = x[a] * std::cos(t) - x[b] * std::sin(t);
      r.y[b] = x[a] * std::sin(t) + x[b] * std::cos(t);
      const double angle_err = t * 0x1p-22 + 0x1p-21;
      r.bound[a] = r.bound[b] = angle_err * (std::fabs(x[a]) + std::fabs(x[b]));
    }
  }
  return r;
}

void expect_within(const std::vector<float>& y, const RopeReference& ref, const char* what) {
  for (size_t i = 0; i < y.size(); ++i)
    ASSERT_NEAR(y[i], ref.y[i], ref.bound[i] + 1e-30) << what << " element " << i;
}

TEST(Rope, BothPairingsRotateByPositionTimesFrequency) {
  auto rng = testing::seeded_rng();
  for (RopeStyle style : {RopeStyle::kInterleaved, RopeStyle::kHalfSplit}) {
    for (int rot : {64, 32}) {  // full and partial rotation of a 64-dim head
      RopeConfig cfg;
      cfg.rot_dim = rot;
      cfg.base = 10000.0f;
      cfg.style = style;
      const RopeTable table(cfg);
      std::vector<double> freq(rot / 2);
      for (int i = 0; i < rot / 2; ++i) {
        freq[i] = std::pow(10000.0, -2.0 * i / rot);
        EXPECT_NEAR(table.inv_freq()[i], freq[i], freq[i] * 0x1p-21) << "pair " << i;
      }
      for (int64_t pos : {int64_t{0}, int64_t{1}, int64_t{37}, int64_t{5000}, int64_t{131071}}) {
        auto x = gaussian(3 * 64, 1.0f, rng);
        const auto ref = rope_ref(x, 3, 64, rot, pos, style, freq);
        table.apply(x.data(), 3, 64, pos);
        expect_within(x, ref, style == RopeStyle::kInterleaved ? "interleaved" : "half-split");
      }
    }
  }
}

// The angles are float arithmetic in transformers' order (inv_freq = 1 / base^(2i/d) in float,
// divided by any per-pair factor; angle = (pos / linear_factor) * inv_freq; cosf, sinf), so
// logits track theirs: bit for bit against that formula written out here.
TEST(Rope, AnglesAreComputedInFloatLikeTransformers) {
  auto rng = testing::seeded_rng();
  std::uniform_real_distribution<float> factor(1.0f, 8.0f);
  for (float base : {10000.0f, 500000.0f, 1e6f}) {
    for (float linear : {1.0f, 2.0f, 8.0f}) {
      RopeConfig cfg;
      cfg.rot_dim = 128;
      cfg.base = base;
      cfg.linear_factor = linear;
      for (int i = 0; i < 64; ++i) cfg.freq_factors.push_back(factor(rng));
      const RopeTable table(cfg);
      std::vector<float> cs(64), sn(64);
      for (int64_t pos : {int64_t{0}, int64_t{3}, int64_t{1000}, int64_t{32767}}) {
        table.angles(pos, cs.data(), sn.data());
        for (int i = 0; i < 64; ++i) {
          float inv = 1.0f / std::pow(base, static_cast<float>(2 * i) / 128.0f);
          inv /= cfg.freq_factors[i];
          const float angle = (static_cast<float>(pos) / linear) * inv;
          ASSERT_EQ(cs[i], std::cos(angle)) << "pair " << i << " pos " << pos;
          ASSERT_EQ(sn[i], std::sin(angle)) << "pair " << i << " pos " << pos;
        }
      }
    }
  }
}

// The forward pass computes a token's angles once and rotates every head with them.
TEST(Rope, AnglesThenRotateIsApply) {
  auto rng = testing::seeded_rng();
  RopeConfig cfg;
  cfg.rot_dim = 64;
  cfg.base = 1e6f;
  const RopeTable table(cfg);
  auto x = gaussian(4 * 64, 1.0f, rng);
  auto y = x;
  std::vector<float> cs(32), sn(32);
  table.angles(4097, cs.data(), sn.data());
  for (int h = 0; h < 4; ++h) table.rotate(y.data() + h * 64, cs.data(), sn.data());
  table.apply(x.data(), 4, 64, 4097);
  EXPECT_EQ(x, y);
}

TEST(Rope, LinearScalingDividesThePosition) {
  RopeConfig plain;
  plain.rot_dim = 16;
  RopeConfig scaled = plain;
  scaled.linear_factor = 4.0f;
  std::vector<float> cs_plain(8), sn_plain(8), cs_scaled(8), sn_scaled(8);
  RopeTable(plain).angles(10, cs_plain.data(), sn_plain.data());
  RopeTable(scaled).angles(40, cs_scaled.data(), sn_scaled.data());
  EXPECT_EQ(cs_plain, cs_scaled);
  EXPECT_EQ(sn_plain, sn_scaled);
}

TEST(Rope, Llama3ScalingMatchesTheReferenceFormula) {
  const Llama3RopeScaling s;  // factor 8, low 1, high 4, original context 8192 (Llama 3.1)
  RopeConfig cfg;
  cfg.rot_dim = 128;
  cfg.base = 500000.0f;
  cfg.freq_factors = llama3_freq_factors(128, 500000.0f, s);
  ASSERT_EQ(cfg.freq_factors.size(), 64u);
  const RopeTable table(cfg);
  const double pi = 3.14159265358979323846;
  for (int i = 0; i < 64; ++i) {
    const double f = std::pow(500000.0, -2.0 * i / 128);
    const double wavelen = 2 * pi / f;
    double want;
    if (wavelen < 8192.0 / 4) {
      want = f;
    } else if (wavelen > 8192.0 / 1) {
      want = f / 8;
    } else {
      const double smooth = (8192.0 / wavelen - 1) / (4 - 1);
      want = (1 - smooth) * f / 8 + smooth * f;
    }
    EXPECT_NEAR(cfg.freq_factors[i], f / want, f / want * 0x1p-23) << "pair " << i;
    EXPECT_NEAR(table.inv_freq()[i], want, want * 0x1p-20) << "pair " << i;
  }
  EXPECT_EQ(cfg.freq_factors[0], 1.0f);   // highest frequency untouched
  EXPECT_EQ(cfg.freq_factors[63], 8.0f);  // lowest slowed by the whole factor
}

TEST(Rope, RejectsBadConfigurations) {
  RopeConfig cfg;
  cfg.rot_dim = 63;
  EXPECT_THROW(RopeTable{cfg}, std::invalid_argument);
  cfg.rot_dim = 64;
  cfg.freq_factors.assign(31, 1.0f);
  EXPECT_THROW(RopeTable{cfg}, std::invalid_argument);
  cfg.freq_factors.assign(32, 1.0f);
  cfg.freq_factors[5] = 0.0f;
  EXPECT_THROW(RopeTable{cfg}, std::invalid_argument);
  cfg.freq_factors.clear();
  cfg.linear_factor = 0.0f;
  EXPECT_THROW(RopeTable{cfg}, std::invalid_argument);
  Llama3RopeScaling s;
  s.high_freq_factor = s.low_freq_factor;
  EXPECT_THROW(llama3_freq_factors(64, 10000.0f, s), std::invalid_argument);
}

TEST(Embedding, RowLookupDequantizesOneRowAndChecksTheId) {
  auto rng = testing::seeded_rng();
  const int64_t rows = 10, cols = 64;
  const auto values = gaussian(rows * cols, 1.0f, rng);
  std::vector<uint8_t> table(row_bytes(DType::Q8_0, cols) * rows);
  for (int64_t r = 0; r < rows; ++r) {
    quantize_row(DType::Q8_0, values.data() + r * cols,
                 table.data() + r * row_bytes(DType::Q8_0, cols), cols);
  }
  const WeightMatrix wm{DType::Q8_0, table.data(), rows, cols, 0};
  std::vector<float> got(cols), want(cols);
  embedding_row(wm, 7, got.data());
  dequantize_row(DType::Q8_0, table.data() + 7 * row_bytes(DType::Q8_0, cols), want.data(), cols);
  EXPECT_EQ(got, want);
  EXPECT_THROW(embedding_row(wm, 10, got.data()), std::out_of_range);
  EXPECT_THROW(embedding_row(wm, -1, got.data()), std::out_of_range);
}

}  // namespace
}  // namespace kdr::ops
