// Row conversions the CPU kernels share: the exact value a new token gets in the cache.
#include <cstring>

#include "base/dtype.h"
#include "rpa/internal.h"

namespace rpa {

void requantize_row(const KvCache& cache, bool is_v, const float* x, float* out) {
  const int d = cache.shape.head_dim;
  switch (cache.shape.dtype) {
    case KvDType::kF32:
      std::memcpy(out, x, d * sizeof(float));
      return;
    case KvDType::kBF16:
      for (int i = 0; i < d; ++i) out[i] = kdr::bf16_to_f32(kdr::f32_to_bf16(x[i]));
      return;
    case KvDType::kF16:
      for (int i = 0; i < d; ++i) out[i] = kdr::f16_to_f32(kdr::f32_to_f16(x[i]));
      return;
    case KvDType::kInt8:
    case KvDType::kFp8E4M3: {
      // Go through store_row/load_row on a one-row cache so the rounding is theirs.
      alignas(64) uint8_t row[256 * 4];
      float row_scale = 0.0f;
      KvCache one;
      one.shape = {1, 1, 1, d, cache.shape.dtype};
      one.k = one.v = row;
      one.k_row_scales = one.v_row_scales = &row_scale;
      one.k_scale = cache.k_scale;
      one.v_scale = cache.v_scale;
      store_row(one, is_v, 0, 0, 0, x);
      load_row(one, is_v, 0, 0, 0, out);
      return;
    }
  }
}

}  // namespace rpa
