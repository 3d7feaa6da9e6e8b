// Block codecs: bit-exact against the Python gguf package (committed fixtures made by
// scripts/gen_quant_fixtures.py), and round trips of our quantizers.
#include "ops/quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "test_seed.h"

namespace kdr::ops {
namespace {

struct Fixture {
  GgmlType type;
  int64_t n = 0;
  std::vector<uint8_t> blocks;
  std::vector<float> dequantized;
  std::vector<float> src;  // empty when gguf could not quantize this type
};

Fixture load_fixture(const std::string& name) {
  const std::string path = std::string(KDR_QUANT_FIXTURE_DIR) + "/" + name + ".bin";
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open fixture " + path);
  char magic[4];
  uint32_t hdr[3];
  f.read(magic, 4);
  f.read(reinterpret_cast<char*>(hdr), sizeof hdr);
  if (std::memcmp(magic, "KQF1", 4) != 0) throw std::runtime_error("bad magic in " + path);
  Fixture fx;
  fx.type = type_from_id(hdr[0]);
  fx.n = hdr[1];
  fx.blocks.resize(row_bytes(fx.type, fx.n));
  fx.dequantized.resize(static_cast<size_t>(fx.n));
  f.read(reinterpret_cast<char*>(fx.blocks.data()), static_cast<std::streamsize>(fx.blocks.size()));
  f.read(reinterpret_cast<char*>(fx.dequantized.data()), fx.n * 4);
  if (hdr[2]) {
    fx.src.resize(static_cast<size_t>(fx.n));
    f.read(reinterpret_cast<char*>(fx.src.data()), fx.n * 4);
  }
  if (!f) throw std::runtime_error("truncated fixture " + path);
  return fx;
}

class GgufFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufFixture, DequantizeIsBitExact) {
  const Fixture fx = load_fixture(GetParam());
  EXPECT_STREQ(type_name(fx.type), GetParam());
  std::vector<float> out(static_cast<size_t>(fx.n));
  dequantize_row(fx.type, fx.blocks.data(), out.data(), fx.n);
  for (int64_t i = 0; i < fx.n; ++i) {
    ASSERT_EQ(kdr::float_bits(out[i]), kdr::float_bits(fx.dequantized[i]))
        << GetParam() << " element " << i << ": ours " << out[i] << " gguf " << fx.dequantized[i];
  }
}

// Only the types the gguf package can quantize; K-quant quantizers are covered by the
// round-trip error bounds below.
class GgufQuantizeFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufQuantizeFixture, QuantizeMatchesGgufReference) {
  const Fixture fx = load_fixture(GetParam());
  ASSERT_FALSE(fx.src.empty()) << "the fixture of " << GetParam() << " has no source row";
  std::vector<uint8_t> ours(fx.blocks.size());
  quantize_row(fx.type, fx.src.data(), ours.data(), fx.n);
  for (size_t i = 0; i < ours.size(); ++i) {
    ASSERT_EQ(ours[i], fx.blocks[i]) << GetParam() << " byte " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, GgufFixture,
                         ::testing::Values("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                                           "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"));
INSTANTIATE_TEST_SUITE_P(ReferenceQuantizers, GgufQuantizeFixture,
                         ::testing::Values("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                                           "Q8_0"));

// Relative RMS error of quantize -> dequantize on Gaussian data, per type.
struct RoundTrip {
  GgmlType type;
  double max_rel_rms;
};

class QuantRoundTrip : public ::testing::TestWithParam<RoundTrip> {};

TEST_P(QuantRoundTrip, ErrorIsWithinTheFormatsResolution) {
  auto rng = testing::seeded_rng();
  std::normal_distribution<float> normal;
  const GgmlType type = GetParam().type;
  const int64_t n = 256 * 8;
  std::vector<float> x(n), y(n);
  for (auto& v : x) v = normal(rng);
  std::vector<uint8_t> q(row_bytes(type, n));
  quantize_row(type, x.data(), q.data(), n);
  dequantize_row(type, q.data(), y.data(), n);
  double err = 0, ref = 0;
  for (int64_t i = 0; i < n; ++i) {
    err += (x[i] - y[i]) * (x[i] - y[i]);
    ref += x[i] * x[i];
  }
  EXPECT_LT(std::sqrt(err / ref), GetParam().max_rel_rms) << type_name(type);
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, QuantRoundTrip,
    ::testing::Values(RoundTrip{GgmlType::F32, 1e-9}, RoundTrip{GgmlType::F16, 1e-3},
                      RoundTrip{GgmlType::BF16, 4e-3}, RoundTrip{GgmlType::Q8_0, 0.01},
                      RoundTrip{GgmlType::Q8_K, 0.01}, RoundTrip{GgmlType::Q6_K, 0.04},
                      RoundTrip{GgmlType::Q5_0, 0.06}, RoundTrip{GgmlType::Q5_1, 0.06},
                      RoundTrip{GgmlType::Q5_K, 0.06}, RoundTrip{GgmlType::Q4_0, 0.12},
                      RoundTrip{GgmlType::Q4_1, 0.12}, RoundTrip{GgmlType::Q4_K, 0.12},
                      RoundTrip{GgmlType::Q3_K, 0.25}, RoundTrip{GgmlType::Q2_K, 0.5}),
    [](const auto& info) { return std::string(type_name(info.param.type)); });

TEST(QuantQ8K, BlockSumsAndScaleMatchTheQuants) {
  auto rng = testing::seeded_rng();
  std::normal_distribution<float> normal;
  std::vector<float> x(512);
  for (auto& v : x) v = normal(rng) * 3;
  std::vector<BlockQ8K> blocks(2);
  quantize_row(GgmlType::Q8_K, x.data(), blocks.data(), 512);
  for (int b = 0; b < 2; ++b) {
    float amax = 0;
    for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(x[b * 256 + j]));
    EXPECT_NEAR(std::fabs(blocks[b].d) * 127, amax, amax * 1e-6);
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += blocks[b].qs[g * 16 + l];
      EXPECT_EQ(blocks[b].bsums[g], s);
    }
  }
}

TEST(QuantErrors, RowLengthNotAMultipleOfTheBlockIsRejected) {
  try {
    row_bytes(GgmlType::Q4_K, 640);
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("Q4_K"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("640"), std::string::npos) << e.what();
  }
  EXPECT_EQ(row_bytes(GgmlType::Q8_0, 640), 20u * 34u);
}

TEST(QuantErrors, UnknownTypeIdIsRejected) {
  EXPECT_THROW(type_from_id(4), std::invalid_argument);  // Q4_2, removed from ggml
  EXPECT_THROW(type_from_id(99), std::invalid_argument);
  EXPECT_EQ(type_from_id(12), GgmlType::Q4_K);
}

}  // namespace
}  // namespace kdr::ops
