// The bodies of the scalar conversions of base/dtype.h, written once for the host compiler
// and for CUDA device code (src/rpa_cuda writes the KV cache with exactly these roundings).
// Only IEEE-exact operations appear (bit manipulation, nearbyint, ldexp, frexp, one
// multiply or divide), so host and device results agree bit for bit; the device build must
// not use fast-math. Include base/dtype.h on the host; this header is its implementation.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define KDR_HOST_DEVICE __host__ __device__
#else
#define KDR_HOST_DEVICE
#endif

namespace kdr::portable {

KDR_HOST_DEVICE inline uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
#endif
}
KDR_HOST_DEVICE inline float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, 4);
  return x;
#endif
}

KDR_HOST_DEVICE inline uint16_t f32_to_bf16(float x) {
  uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
KDR_HOST_DEVICE inline float bf16_to_f32(uint16_t h) {
  return bits_float(static_cast<uint32_t>(h) << 16);
}

KDR_HOST_DEVICE inline uint16_t f32_to_f16(float x) {
  const uint32_t u = float_bits(x);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: infinity
  if (abs < 0x38800000u) {                        // below the smallest normal half
    if (abs < 0x33000000u) return sign;           // below half the smallest subnormal
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(abs >> 23);  // 14..24
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return sign | static_cast<uint16_t>(h);
  }
  uint32_t h = ((abs >> 13) - (112u << 10));
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return sign | static_cast<uint16_t>(h);
}

KDR_HOST_DEVICE inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);
    const float v = ldexpf(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

KDR_HOST_DEVICE inline uint8_t f32_to_fp8e4m3(float x) {
  const uint32_t u = float_bits(x);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7fu;  // NaN
  const float a = bits_float(abs);
  if (a >= 448.0f) return sign | 0x7eu;  // saturate (also infinities)
  if (a < ldexpf(1.0f, -6)) {
    // Subnormal range: value = m * 2^-9, m in 0..7 (8 rounds up into the smallest normal).
    const float m = nearbyintf(a * 512.0f);  // default rounding mode: nearest even
    return sign | static_cast<uint8_t>(m);
  }
  int e;
  const float frac = frexpf(a, &e);  // a = frac * 2^e, frac in [0.5, 1)
  // a = (1 + m/8) * 2^(e-1); biased exponent = e - 1 + 7.
  float m = nearbyintf((frac * 2.0f - 1.0f) * 8.0f);
  int be = e - 1 + 7;
  if (m >= 8.0f) {
    m = 0.0f;
    ++be;
  }
  const uint8_t v = static_cast<uint8_t>((be << 3) | static_cast<int>(m));
  return sign | (v > 0x7eu ? 0x7eu : v);
}

KDR_HOST_DEVICE inline float fp8e4m3_to_f32(uint8_t v) {
  const bool neg = v & 0x80u;
  const int exp = (v >> 3) & 0xf;
  const int mant = v & 0x7;
  float r;
  if (exp == 0xf && mant == 0x7) {
    r = bits_float(0x7fc00000u);  // the quiet NaN nanf("") returns
  } else if (exp == 0) {
    r = ldexpf(static_cast<float>(mant), -9);
  } else {
    r = ldexpf(1.0f + static_cast<float>(mant) / 8.0f, exp - 7);
  }
  return neg ? -r : r;
}

// int8 row quantization in two steps, so a parallel implementation can find amax = max |x_i|
// (fmax over the row from 0, NaN ignored: the order does not change it) its own way:
// scale = amax / 127 is stored; each value is quantized with inv = 127 / amax.
KDR_HOST_DEVICE inline float int8_row_scale(float amax) { return amax / 127.0f; }
KDR_HOST_DEVICE inline float int8_row_inverse_scale(float amax) { return 127.0f / amax; }
KDR_HOST_DEVICE inline int8_t quantize_int8(float x, float inv) {
  float r = nearbyintf(x * inv);
  r = fminf(127.0f, fmaxf(-127.0f, r));
  return static_cast<int8_t>(r);
}

}  // namespace kdr::portable
