// GGUF / ggml tensor element types and their block layouts (little endian, byte-exact with
// ggml). Scalar dequantizers here are the reference every SIMD path is checked against;
// the quantizers make activations (Q8_0, Q8_K) and test weights for every type.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kdr::ops {

// Values are the GGUF tensor type ids.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};

struct TypeInfo {
  const char* name;  // "Q4_K", as ggml spells it
  int block_elems;   // elements per block (1 for F32/F16/BF16)
  int block_bytes;   // bytes per block
};

// True when `raw` (a GGUF type id) is one of the types above.
bool is_supported_type(uint32_t raw);
// Throws std::invalid_argument naming the id when it is not supported.
GgmlType type_from_id(uint32_t raw);
const TypeInfo& type_info(GgmlType type);
inline const char* type_name(GgmlType type) { return type_info(type).name; }
// Bytes of a row of n elements; throws std::invalid_argument when n is not a multiple of the
// block size (the message names the type and n).
size_t row_bytes(GgmlType type, int64_t n);

// Writes n floats decoded from a row stored as `type` (n a multiple of the block size).
// Bit-exact with ggml's dequantize_row_* and with the Python `gguf` package.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);

// Encodes n floats as `type`. Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and Q8_K round exactly like ggml's
// reference quantizers; the other K-quants use a simple max-abs scale search (good enough for
// test weights, not for shipping models).
void quantize_row(GgmlType type, const float* src, void* dst, int64_t n);

// Fixed block sizes, for code that walks blocks itself.
inline constexpr int kQK = 32;     // legacy quant block
inline constexpr int kQK_K = 256;  // K-quant super-block

// Q8_K, the activation format K-quant dot products use: d is a float, bsums are the sums of
// each group of 16 quants.
struct BlockQ8K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];
};
static_assert(sizeof(BlockQ8K) == 292);

}  // namespace kdr::ops
