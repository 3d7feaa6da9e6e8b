// The ggml block formats' scalar codecs (little endian, byte-exact with ggml). The types, their
// names and block geometry are base/dtype_registry.h's; this file registers the block
// codecs there (the registry's to_f32 / from_f32 of the Q* types). The dequantizers are the
// reference every SIMD path is checked against; the quantizers make activations (Q8_0, Q8_K)
// and test weights for every type.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/dtype_registry.h"

namespace kdr::ops {

// True for the types ops dequantizes and multiplies by: F32, F16, BF16 and the ggml block
// types whose codecs quant.cc holds (not Q8_1, the integer types or the KV-only types).
bool is_supported_type(DType type);

// Writes n floats decoded from a row stored as `type` (n a multiple of the block size).
// Bit-exact with ggml's dequantize_row_* and with the Python `gguf` package. Throws
// std::invalid_argument for a bad n or a type ops does not support.
void dequantize_row(DType type, const void* src, float* dst, int64_t n);

// Encodes n floats as `type`. Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and Q8_K round exactly like ggml's
// reference quantizers; the other K-quants use a simple max-abs scale search (good enough for
// test weights, not for shipping models).
void quantize_row(DType type, const float* src, void* dst, int64_t n);

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
