#include "base/dtype.h"

#include <cmath>

#include "base/dtype_portable.h"

namespace kdr {

// The conversions are written once in dtype_portable.h, shared with the CUDA kernels.
uint16_t f32_to_f16(float x) { return portable::f32_to_f16(x); }
float f16_to_f32(uint16_t h) { return portable::f16_to_f32(h); }
uint8_t f32_to_fp8e4m3(float x) { return portable::f32_to_fp8e4m3(x); }
float fp8e4m3_to_f32(uint8_t v) { return portable::fp8e4m3_to_f32(v); }

float quantize_row_int8(const float* x, int n, int8_t* q) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(x[i]));
  if (amax == 0.0f) {
    for (int i = 0; i < n; ++i) q[i] = 0;
    return 0.0f;
  }
  const float inv = portable::int8_row_inverse_scale(amax);
  for (int i = 0; i < n; ++i) q[i] = portable::quantize_int8(x[i], inv);
  return portable::int8_row_scale(amax);
}

}  // namespace kdr
