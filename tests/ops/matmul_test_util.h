// Random matmul operands shared by the matmul tests (matmul_test, matmul_amx_test): weights of
// every type (quant blocks of random bytes with small finite f16 scales) and Gaussian X.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "base/dtype.h"
#include "ops/quant.h"

namespace kdr::ops::testing {

inline bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// Offsets of the f16 scale fields in each block type (random bytes there could be NaN/huge).
inline std::vector<int> f16_fields(DType t) {
  switch (t) {
    case DType::Q4_0:
    case DType::Q5_0:
    case DType::Q8_0:
      return {0};
    case DType::Q4_1:
    case DType::Q5_1:
    case DType::Q4_K:
    case DType::Q5_K:
      return {0, 2};
    case DType::Q2_K:
      return {80, 82};
    case DType::Q3_K:
      return {108};
    case DType::Q6_K:
      return {208};
    default:
      return {};
  }
}

// Float types from Gaussian values, quant types from random bytes (every bit pattern of quants
// and packed scales) with small finite f16 scales.
inline std::vector<uint8_t> random_weights(DType type, int64_t n, int64_t k, std::mt19937_64& rng) {
  std::vector<uint8_t> w(row_bytes(type, k) * n);
  if (k == 0) return w;  // no row to write (and no empty buffer's null data() to pass on)
  std::normal_distribution<float> normal;
  if (is_float(type)) {
    std::vector<float> row(k);
    for (int64_t r = 0; r < n; ++r) {
      for (auto& v : row) v = normal(rng);
      quantize_row(type, row.data(), w.data() + r * row_bytes(type, k), k);
    }
    return w;
  }
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  const int block_bytes = dtype_traits(type).block_bytes;
  for (size_t b0 = 0; b0 < w.size(); b0 += block_bytes) {
    for (int off : f16_fields(type)) {
      const uint16_t h = f32_to_f16(normal(rng) * 0.01f);
      std::memcpy(&w[b0 + off], &h, 2);
    }
  }
  return w;
}

inline std::vector<float> random_x(int64_t m, int64_t k, std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> x(m * k);
  for (auto& v : x) v = normal(rng);
  return x;
}

}  // namespace kdr::ops::testing
