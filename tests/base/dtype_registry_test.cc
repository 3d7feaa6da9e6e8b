// The dtype registry: every entry's id and block geometry against ggml's own table (typed in
// here from ggml.c's type_traits / ggml-common.h, not derived from the library), names and
// aliases round trip through the one parser, unknown names are refused with the list of valid
// ones, and the conversions base owns round trip within their format's resolution. base_tests
// does not link ops, so the block types have no conversions here (ops/quant_test checks
// that linking ops registers them).
#include "base/dtype_registry.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "seed.h"

namespace kdr {
namespace {

struct GgmlLayout {
  uint32_t id;
  const char* name;
  int block_elems, block_bytes;
  bool quantized;
};
// ggml's values (type_traits[].blck_size / type_size / is_quantized), and the registry's own
// types (ids >= 1000).
constexpr GgmlLayout kExpected[] = {
    {0, "F32", 1, 4, false},         {1, "F16", 1, 2, false},        {2, "Q4_0", 32, 18, true},
    {3, "Q4_1", 32, 20, true},       {6, "Q5_0", 32, 22, true},      {7, "Q5_1", 32, 24, true},
    {8, "Q8_0", 32, 34, true},       {9, "Q8_1", 32, 36, true},      {10, "Q2_K", 256, 84, true},
    {11, "Q3_K", 256, 110, true},    {12, "Q4_K", 256, 144, true},   {13, "Q5_K", 256, 176, true},
    {14, "Q6_K", 256, 210, true},    {15, "Q8_K", 256, 292, true},   {24, "I8", 1, 1, false},
    {25, "I16", 1, 2, false},        {26, "I32", 1, 4, false},       {27, "I64", 1, 8, false},
    {28, "F64", 1, 8, false},        {30, "BF16", 1, 2, false},      {1000, "U8", 1, 1, false},
    {1001, "FP8_E4M3", 1, 1, false}, {1002, "INT8_ROW", 1, 1, true},
};

TEST(DTypeRegistry, EveryEntryHasGgmlsGeometry) {
  ASSERT_EQ(all_dtypes().size(), std::size(kExpected));
  for (size_t i = 0; i < std::size(kExpected); ++i) {
    const GgmlLayout& want = kExpected[i];
    const DTypeTraits& t = all_dtypes()[i];  // in id order
    EXPECT_EQ(static_cast<uint32_t>(t.id), want.id) << want.name;
    EXPECT_STREQ(t.name, want.name);
    EXPECT_EQ(t.block_elems, want.block_elems) << want.name;
    EXPECT_EQ(t.block_bytes, want.block_bytes) << want.name;
    EXPECT_EQ(t.quantized, want.quantized) << want.name;
    EXPECT_EQ(find_dtype(want.id), &t) << want.name;
    EXPECT_EQ(&dtype_traits(t.id), &t) << want.name;
    EXPECT_STREQ(dtype_name(t.id), want.name);
  }
}

TEST(DTypeRegistry, IdsOutsideTheTableAreNotFoundButNamedWhereGgmlHasThem) {
  for (uint32_t id : {4u, 5u, 16u, 23u, 29u, 31u, 39u, 99u, 999u, 1003u})
    EXPECT_EQ(find_dtype(id), nullptr) << id;
  EXPECT_EQ(describe_type_id(12), "12 (Q4_K)");
  EXPECT_EQ(describe_type_id(16), "16 (IQ2_XXS)");
  EXPECT_EQ(describe_type_id(39), "39 (MXFP4)");
  EXPECT_EQ(describe_type_id(4), "4 (Q4_2, removed from ggml)");
  EXPECT_EQ(describe_type_id(77), "77");
}

TEST(DTypeRegistry, NamesAndAliasesRoundTripIgnoringCase) {
  std::set<std::string> seen;
  for (const DTypeTraits& t : all_dtypes()) {
    std::vector<std::string> spellings = {t.name};
    for (const char* a : t.aliases)
      if (a) spellings.emplace_back(a);
    for (const std::string& s : spellings) {
      std::string lower = s, upper = s;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      EXPECT_TRUE(seen.insert(lower).second) << "spelling " << s << " names two types";
      EXPECT_EQ(parse_dtype(s), t.id) << s;
      EXPECT_EQ(parse_dtype(lower), t.id) << lower;
      EXPECT_EQ(parse_dtype(upper), t.id) << upper;
      EXPECT_EQ(find_dtype(s), &t) << s;
    }
  }
}

TEST(DTypeRegistry, AcceptsTheKvCacheSpellings) {
  EXPECT_EQ(parse_dtype("f32"), DType::F32);
  EXPECT_EQ(parse_dtype("float32"), DType::F32);
  EXPECT_EQ(parse_dtype("bf16"), DType::BF16);
  EXPECT_EQ(parse_dtype("bfloat16"), DType::BF16);
  EXPECT_EQ(parse_dtype("f16"), DType::F16);
  EXPECT_EQ(parse_dtype("float16"), DType::F16);
  EXPECT_EQ(parse_dtype("int8"), DType::INT8_ROW);
  EXPECT_EQ(parse_dtype("i8"), DType::I8);  // ggml's plain int8, not the row-scaled KV type
  for (const char* fp8 : {"fp8", "fp8e4m3", "float8_e4m3fn", "FP8_E4M3"})
    EXPECT_EQ(parse_dtype(fp8), DType::FP8_E4M3) << fp8;
  EXPECT_EQ(parse_dtype("q4_k"), DType::Q4_K);
}

TEST(DTypeRegistry, UnknownNamesAreRefusedWithTheValidOnes) {
  for (const char* bad : {"", "q4", "f8", "bf16 ", "Q4_K_M", "float"}) {
    EXPECT_EQ(find_dtype(bad), nullptr) << bad;
    try {
      parse_dtype(bad);
      FAIL() << "parse_dtype accepted '" << bad << "'";
    } catch (const std::invalid_argument& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("unknown dtype '" + std::string(bad) + "'"), std::string::npos) << msg;
      for (const DTypeTraits& t : all_dtypes())
        EXPECT_NE(msg.find(t.name), std::string::npos) << t.name << " missing from: " << msg;
      EXPECT_NE(msg.find("BF16 (bfloat16)"), std::string::npos) << msg;
      EXPECT_NE(msg.find("FP8_E4M3 (fp8, fp8e4m3, float8_e4m3fn)"), std::string::npos) << msg;
    }
  }
}

TEST(DTypeRegistry, RowBytesFollowTheBlockGeometry) {
  EXPECT_EQ(row_bytes(DType::Q8_0, 640), 20u * 34u);
  EXPECT_EQ(row_bytes(DType::Q4_K, 512), 2u * 144u);
  EXPECT_EQ(row_bytes(DType::BF16, 7), 14u);
  EXPECT_EQ(row_bytes(DType::F32, 0), 0u);
  try {
    row_bytes(DType::Q4_K, 640);
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "row of 640 elements is not a multiple of the Q4_K block size 256");
  }
  EXPECT_THROW(row_bytes(DType::F16, -1), std::invalid_argument);
}

// Only base's own conversions exist without ops; the rest stay null until ops registers them.
TEST(DTypeRegistry, BaseOwnsTheElementConversionsOnly) {
  std::set<DType> with_conversions;
  for (const DTypeTraits& t : all_dtypes()) {
    EXPECT_EQ(t.to_f32 == nullptr, t.from_f32 == nullptr) << t.name;
    if (t.to_f32) with_conversions.insert(t.id);
  }
  EXPECT_EQ(with_conversions,
            (std::set<DType>{DType::F32, DType::F16, DType::BF16, DType::FP8_E4M3}));
}

// Round trips through the registry's pointers: bit-exact for codes (decode then encode gives
// the code back), and within half a unit in the last place for values (encode then decode),
// against base/dtype.h's scalar conversions as the reference.
TEST(DTypeRegistry, ElementConversionsRoundTrip) {
  std::mt19937_64 rng(kdr_test::test_seed());
  std::normal_distribution<float> normal(0.0f, 4.0f);
  const int64_t n = 1001;
  std::vector<float> x(n);
  for (auto& v : x) v = normal(rng);
  struct Case {
    DType type;
    double max_rel;  // half an ulp of the format, relative (normal range)
  };
  for (const Case& c : {Case{DType::F32, 0.0}, Case{DType::F16, 0x1p-11}, Case{DType::BF16, 0x1p-8},
                        Case{DType::FP8_E4M3, 0x1p-4}}) {
    const DTypeTraits& t = dtype_traits(c.type);
    std::vector<uint8_t> codes(row_bytes(c.type, n)), again(codes.size());
    std::vector<float> y(n);
    t.from_f32(x.data(), codes.data(), n);
    t.to_f32(codes.data(), y.data(), n);
    t.from_f32(y.data(), again.data(), n);
    EXPECT_EQ(codes, again) << t.name;
    for (int64_t i = 0; i < n; ++i) {
      float want;
      switch (c.type) {
        case DType::F16:
          want = f16_to_f32(f32_to_f16(x[i]));
          break;
        case DType::BF16:
          want = bf16_to_f32(f32_to_bf16(x[i]));
          break;
        case DType::FP8_E4M3:
          want = fp8e4m3_to_f32(f32_to_fp8e4m3(x[i]));
          break;
        default:
          want = x[i];
      }
      ASSERT_EQ(float_bits(y[i]), float_bits(want)) << t.name << " value " << x[i];
      // Subnormals of the narrow formats have an absolute, not relative, resolution.
      const double tol =
          c.max_rel * std::fabs(x[i]) + (c.type == DType::FP8_E4M3 ? 0x1p-10 : 0x1p-25);
      ASSERT_LE(std::fabs(static_cast<double>(y[i]) - x[i]), tol) << t.name << " value " << x[i];
    }
  }
}

TEST(DTypeRegistry, RegisteringConversionsFillsTheTable) {
  const DTypeTraits& q81 = dtype_traits(DType::Q8_1);
  ASSERT_EQ(q81.to_f32, nullptr);
  auto to = [](const void*, float* dst, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i] = 1.0f;
  };
  auto from = [](const float*, void*, int64_t) {};
  register_row_conversions(DType::Q8_1, to, from);
  float y[32] = {};
  q81.to_f32(nullptr, y, 32);
  EXPECT_EQ(y[31], 1.0f);
  register_row_conversions(DType::Q8_1, nullptr, nullptr);  // leave the table as found
  EXPECT_EQ(q81.to_f32, nullptr);
}

}  // namespace
}  // namespace kdr
