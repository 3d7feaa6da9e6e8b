#include "base/dtype_registry.h"

#include <cstring>
#include <stdexcept>

#include "base/dtype.h"

namespace kdr {
namespace {

// --- the conversions base owns: plain element types -----------------------------------------

void f32_to_f32_row(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}
void f32_from_f32_row(const float* src, void* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

// Element types stored as unaligned little-endian codes (GGUF and safetensors data need not be
// aligned), converted one by one with base/dtype.h's roundings.
template <typename Code, float (*Decode)(Code)>
void decode_row(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    Code c;
    std::memcpy(&c, p + i * static_cast<int64_t>(sizeof(Code)), sizeof(Code));
    dst[i] = Decode(c);
  }
}
template <typename Code, Code (*Encode)(float)>
void encode_row(const float* src, void* dst, int64_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const Code c = Encode(src[i]);
    std::memcpy(p + i * static_cast<int64_t>(sizeof(Code)), &c, sizeof(Code));
  }
}

// Block geometry as ggml defines it (ggml-common.h / ggml.c type_traits). Sorted by id.
// Not const: ops fills in the block codecs (register_row_conversions).
DTypeTraits g_table[] = {
    {DType::F32, "F32", {"float32"}, 1, 4, false, f32_to_f32_row, f32_from_f32_row},
    {DType::F16,
     "F16",
     {"float16"},
     1,
     2,
     false,
     decode_row<uint16_t, f16_to_f32>,
     encode_row<uint16_t, f32_to_f16>},
    {DType::Q4_0, "Q4_0", {}, 32, 18, true, nullptr, nullptr},
    {DType::Q4_1, "Q4_1", {}, 32, 20, true, nullptr, nullptr},
    {DType::Q5_0, "Q5_0", {}, 32, 22, true, nullptr, nullptr},
    {DType::Q5_1, "Q5_1", {}, 32, 24, true, nullptr, nullptr},
    {DType::Q8_0, "Q8_0", {}, 32, 34, true, nullptr, nullptr},
    {DType::Q8_1, "Q8_1", {}, 32, 36, true, nullptr, nullptr},
    {DType::Q2_K, "Q2_K", {}, 256, 84, true, nullptr, nullptr},
    {DType::Q3_K, "Q3_K", {}, 256, 110, true, nullptr, nullptr},
    {DType::Q4_K, "Q4_K", {}, 256, 144, true, nullptr, nullptr},
    {DType::Q5_K, "Q5_K", {}, 256, 176, true, nullptr, nullptr},
    {DType::Q6_K, "Q6_K", {}, 256, 210, true, nullptr, nullptr},
    {DType::Q8_K, "Q8_K", {}, 256, 292, true, nullptr, nullptr},
    {DType::I8, "I8", {}, 1, 1, false, nullptr, nullptr},
    {DType::I16, "I16", {}, 1, 2, false, nullptr, nullptr},
    {DType::I32, "I32", {}, 1, 4, false, nullptr, nullptr},
    {DType::I64, "I64", {}, 1, 8, false, nullptr, nullptr},
    {DType::F64, "F64", {"float64"}, 1, 8, false, nullptr, nullptr},
    {DType::BF16,
     "BF16",
     {"bfloat16"},
     1,
     2,
     false,
     decode_row<uint16_t, bf16_to_f32>,
     encode_row<uint16_t, f32_to_bf16>},
    {DType::U8, "U8", {"uint8"}, 1, 1, false, nullptr, nullptr},
    {DType::FP8_E4M3,
     "FP8_E4M3",
     {"fp8", "fp8e4m3", "float8_e4m3fn"},
     1,
     1,
     false,
     decode_row<uint8_t, fp8e4m3_to_f32>,
     encode_row<uint8_t, f32_to_fp8e4m3>},
    // The scale lives outside the row (rpa's KvCache row scales), so no row conversion.
    {DType::INT8_ROW, "INT8_ROW", {"int8"}, 1, 1, true, nullptr, nullptr},
};

// ggml types this engine cannot hold, by id: only to name them in messages.
struct ForeignType {
  uint32_t id;
  const char* name;
};
constexpr ForeignType kForeignTypes[] = {
    {4, "Q4_2, removed from ggml"},
    {5, "Q4_3, removed from ggml"},
    {16, "IQ2_XXS"},
    {17, "IQ2_XS"},
    {18, "IQ3_XXS"},
    {19, "IQ1_S"},
    {20, "IQ4_NL"},
    {21, "IQ3_S"},
    {22, "IQ2_S"},
    {23, "IQ4_XS"},
    {29, "IQ1_M"},
    {31, "Q4_0_4_4, removed from ggml"},
    {32, "Q4_0_4_8, removed from ggml"},
    {33, "Q4_0_8_8, removed from ggml"},
    {34, "TQ1_0"},
    {35, "TQ2_0"},
    {36, "IQ4_NL_4_4, removed from ggml"},
    {37, "IQ4_NL_4_8, removed from ggml"},
    {38, "IQ4_NL_8_8, removed from ggml"},
    {39, "MXFP4"},
    {40, "NVFP4"},
    {41, "Q1_0"},
};

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

DTypeTraits* find_mutable(uint32_t id) {
  for (DTypeTraits& t : g_table)
    if (static_cast<uint32_t>(t.id) == id) return &t;
  return nullptr;
}

}  // namespace

std::span<const DTypeTraits> all_dtypes() { return g_table; }

const DTypeTraits* find_dtype(uint32_t id) { return find_mutable(id); }

const DTypeTraits* find_dtype(std::string_view name) {
  for (const DTypeTraits& t : g_table) {
    if (equal_ignoring_case(name, t.name)) return &t;
    for (const char* alias : t.aliases)
      if (alias && equal_ignoring_case(name, alias)) return &t;
  }
  return nullptr;
}

const DTypeTraits& dtype_traits(DType type) {
  const DTypeTraits* t = find_dtype(static_cast<uint32_t>(type));
  if (!t)
    throw std::logic_error("DType " + std::to_string(static_cast<uint32_t>(type)) +
                           " is not in the registry");
  return *t;
}

std::string dtype_names() {
  std::string s;
  for (const DTypeTraits& t : g_table) {
    if (!s.empty()) s += ", ";
    s += t.name;
    std::string aliases;
    for (const char* alias : t.aliases)
      if (alias) aliases += (aliases.empty() ? "" : ", ") + std::string(alias);
    if (!aliases.empty()) s += " (" + aliases + ")";
  }
  return s;
}

DType parse_dtype(std::string_view name) {
  if (const DTypeTraits* t = find_dtype(name)) return t->id;
  throw std::invalid_argument("unknown dtype '" + std::string(name) + "'; valid: " + dtype_names());
}

std::string describe_type_id(uint32_t id) {
  const std::string number = std::to_string(id);
  if (const DTypeTraits* t = find_dtype(id)) return number + " (" + t->name + ")";
  for (const ForeignType& f : kForeignTypes)
    if (f.id == id) return number + " (" + f.name + ")";
  return number;
}

size_t row_bytes(DType type, int64_t n) {
  const DTypeTraits& t = dtype_traits(type);
  if (n < 0 || n % t.block_elems != 0) {
    throw std::invalid_argument("row of " + std::to_string(n) +
                                " elements is not a multiple of the " + t.name + " block size " +
                                std::to_string(t.block_elems));
  }
  return static_cast<size_t>(n / t.block_elems) * static_cast<size_t>(t.block_bytes);
}

void register_row_conversions(DType type, RowToF32 to_f32, RowFromF32 from_f32) {
  DTypeTraits* t = find_mutable(static_cast<uint32_t>(type));
  if (!t) throw std::logic_error("register_row_conversions: DType not in the registry");
  t->to_f32 = to_f32;
  t->from_f32 = from_f32;
}

}  // namespace kdr
