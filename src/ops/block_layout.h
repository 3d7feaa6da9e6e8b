// Bit-packing helpers of the K-quant block scales, shared by the scalar codecs and the SIMD
// matmul so both read the same bits the same way. Private to src/ops.
#pragma once

#include <cstdint>

namespace kdr::ops {

// 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block, packed in 12 bytes.
inline void scale_min_k4(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Signed 6-bit scale i (0..15) of a Q3_K block, packed in 12 bytes.
inline int scale_q3k(int i, const uint8_t* s) {
  const int lo = (i < 8 ? s[i] : s[i - 8] >> 4) & 0xF;
  const int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}

}  // namespace kdr::ops
