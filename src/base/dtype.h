// Scalar conversions between float and the storage types of the KV cache and of weights.
// These are the single source of truth: SIMD paths must round exactly like these.
#pragma once

#include <cstdint>
#include <cstring>

#include "base/dtype_portable.h"

namespace kdr {

inline uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// bfloat16: round to nearest even; NaN stays a (quiet) NaN.
inline uint16_t f32_to_bf16(float x) { return portable::f32_to_bf16(x); }
inline float bf16_to_f32(uint16_t h) { return portable::bf16_to_f32(h); }

// IEEE half precision, round to nearest even (same results as F16C's vcvtps2ph with imm 0).
uint16_t f32_to_f16(float x);
float f16_to_f32(uint16_t h);

// fp8 e4m3 "fn" (no infinities, max 448, NaN = 0x7f/0xff); round to nearest even,
// saturating finite values to +-448.
uint8_t f32_to_fp8e4m3(float x);
float fp8e4m3_to_f32(uint8_t v);

// int8 with one scale per row: scale = max|x| / 127, q = round-half-even(x / scale).
// Writes n int8 values and returns the scale (0 for an all-zero row).
float quantize_row_int8(const float* x, int n, int8_t* q);

}  // namespace kdr
