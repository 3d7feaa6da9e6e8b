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
  DType type;
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
  const DTypeTraits* traits = find_dtype(hdr[0]);
  if (!traits) throw std::runtime_error("unknown type id in " + path);
  fx.type = traits->id;
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
  EXPECT_STREQ(dtype_name(fx.type), GetParam());
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
  DType type;
  double max_rel_rms;
};

class QuantRoundTrip : public ::testing::TestWithParam<RoundTrip> {};

TEST_P(QuantRoundTrip, ErrorIsWithinTheFormatsResolution) {
  auto rng = testing::seeded_rng();
  std::normal_distribution<float> normal;
  const DType type = GetParam().type;
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
  EXPECT_LT(std::sqrt(err / ref), GetParam().max_rel_rms) << dtype_name(type);
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, QuantRoundTrip,
    ::testing::Values(RoundTrip{DType::F32, 1e-9}, RoundTrip{DType::F16, 1e-3},
                      RoundTrip{DType::BF16, 4e-3}, RoundTrip{DType::Q8_0, 0.01},
                      RoundTrip{DType::Q8_K, 0.01}, RoundTrip{DType::Q6_K, 0.04},
                      RoundTrip{DType::Q5_0, 0.06}, RoundTrip{DType::Q5_1, 0.06},
                      RoundTrip{DType::Q5_K, 0.06}, RoundTrip{DType::Q4_0, 0.12},
                      RoundTrip{DType::Q4_1, 0.12}, RoundTrip{DType::Q4_K, 0.12},
                      RoundTrip{DType::Q3_K, 0.25}, RoundTrip{DType::Q2_K, 0.5}),
    [](const auto& info) { return std::string(dtype_name(info.param.type)); });

TEST(QuantQ8K, BlockSumsAndScaleMatchTheQuants) {
  auto rng = testing::seeded_rng();
  std::normal_distribution<float> normal;
  std::vector<float> x(512);
  for (auto& v : x) v = normal(rng) * 3;
  std::vector<BlockQ8K> blocks(2);
  quantize_row(DType::Q8_K, x.data(), blocks.data(), 512);
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
    row_bytes(DType::Q4_K, 640);
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("Q4_K"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("640"), std::string::npos) << e.what();
  }
  EXPECT_EQ(row_bytes(DType::Q8_0, 640), 20u * 34u);
}

TEST(QuantErrors, TypesWithoutACodecAreRejected) {
  std::vector<float> y(32);
  const std::vector<uint8_t> raw(64);
  for (DType type : {DType::Q8_1, DType::I8, DType::I32, DType::F64, DType::U8, DType::INT8_ROW}) {
    EXPECT_FALSE(is_supported_type(type)) << dtype_name(type);
    try {
      dequantize_row(type, raw.data(), y.data(), 32);
      FAIL() << "expected an exception for " << dtype_name(type);
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(dtype_name(type)), std::string::npos) << e.what();
    }
  }
}

// Linking ops completes the registry: every type ops supports has both row conversions
// there, and they are the ones dequantize_row / quantize_row use (same bits).
TEST(QuantRegistry, OpsRegistersACodecForEverySupportedType) {
  auto rng = testing::seeded_rng();
  std::normal_distribution<float> normal;
  int supported = 0;
  for (const DTypeTraits& t : all_dtypes()) {
    if (!is_supported_type(t.id)) continue;
    ++supported;
    ASSERT_NE(t.to_f32, nullptr) << t.name;
    ASSERT_NE(t.from_f32, nullptr) << t.name;
    const int64_t n = 512;
    std::vector<float> x(n), via_ops(n), via_registry(n);
    for (auto& v : x) v = normal(rng);
    std::vector<uint8_t> q_ops(row_bytes(t.id, n)), q_registry(row_bytes(t.id, n));
    quantize_row(t.id, x.data(), q_ops.data(), n);
    t.from_f32(x.data(), q_registry.data(), n);
    EXPECT_EQ(q_ops, q_registry) << t.name;
    dequantize_row(t.id, q_ops.data(), via_ops.data(), n);
    t.to_f32(q_ops.data(), via_registry.data(), n);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(float_bits(via_ops[i]), float_bits(via_registry[i])) << t.name << " value " << i;
  }
  EXPECT_EQ(supported, 14);  // F32, F16, BF16 and 11 ggml block types
}

}  // namespace
}  // namespace kdr::ops
