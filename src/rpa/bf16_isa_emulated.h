// The ISA layer of the bf16 kernels, emulated in scalar C++: every operation of
// bf16_isa_x86.h with the result the instruction defines (Intel SDM pseudo-code), so the
// kernel logic of bf16_attention-inl.h runs, and is tested, on CPUs without AVX-512 BF16 or
// AMX.
//
//   F32x16   a zmm register of 16 f32 lanes
//   Bf16x32  a zmm register of 32 bf16 lanes (raw bits)
//   tiles    the AMX palette 1: 8 registers of 16 rows x 64 bytes, thread-local, valid between
//            tile_config() and tile_release()
//
// VDPBF16PS and TDPBF16PS multiply-add bf16 pairs into f32 with denormal inputs read as zero,
// denormal results flushed to zero and round-to-nearest-even, the odd element of a pair first
// (VDPBF16PS) or the even one first (TDPBF16PS), as the SDM writes them.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "base/dtype.h"

namespace rpa::bf16 {

struct EmulatedIsa {
  static constexpr const char* kName = "emulated";

  struct F32x16 {
    float v[16];
  };
  struct Bf16x32 {
    uint16_t v[32];
  };

  // --- f32 vectors (AVX-512F) ---
  static F32x16 zero() { return set1(0.0f); }
  static F32x16 set1(float x) {
    F32x16 r;
    for (float& e : r.v) e = x;
    return r;
  }
  static F32x16 load(const float* p) {
    F32x16 r;
    std::memcpy(r.v, p, sizeof(r.v));
    return r;
  }
  static void store(F32x16 x, float* p) { std::memcpy(p, x.v, sizeof(x.v)); }
  static F32x16 add(F32x16 a, F32x16 b) {
    for (int i = 0; i < 16; ++i) a.v[i] = a.v[i] + b.v[i];
    return a;
  }
  static F32x16 sub(F32x16 a, F32x16 b) {
    for (int i = 0; i < 16; ++i) a.v[i] = a.v[i] - b.v[i];
    return a;
  }
  static F32x16 mul(F32x16 a, F32x16 b) {
    for (int i = 0; i < 16; ++i) a.v[i] = a.v[i] * b.v[i];
    return a;
  }
  // a * b + c, rounded once.
  static F32x16 fmadd(F32x16 a, F32x16 b, F32x16 c) {
    for (int i = 0; i < 16; ++i) a.v[i] = std::fma(a.v[i], b.v[i], c.v[i]);
    return a;
  }
  // vmaxps: the second operand where either is NaN (or both are zeros).
  static float max1(float a, float b) { return a > b ? a : b; }
  static F32x16 max(F32x16 a, F32x16 b) {
    for (int i = 0; i < 16; ++i) a.v[i] = max1(a.v[i], b.v[i]);
    return a;
  }
  // Lanes equal to -inf replaced by `value`.
  static F32x16 replace_neg_inf(F32x16 x, float value) {
    for (float& e : x.v)
      if (e == -INFINITY) e = value;
    return x;
  }
  // exp(x) for x <= 0 or -inf, as attention-inl.h's ExpNonPositive: n = round(x / ln2),
  // r = x - n ln2 (ln2 in two parts, fused), a degree-6 Taylor polynomial (fused steps) times
  // 2^n from the exponent bits; x clamped to -88 first, where 2^n becomes +0.
  static F32x16 exp_non_positive(F32x16 x) {
    for (float& e : x.v) {
      const float c = max1(-88.0f, e);
      const float n = std::nearbyint(c * 1.44269504088896341f);
      float r = std::fma(-n, 0.693359375f, c);
      r = std::fma(-n, -2.12194440e-4f, r);
      float p = 1.0f / 720;
      p = std::fma(p, r, 1.0f / 120);
      p = std::fma(p, r, 1.0f / 24);
      p = std::fma(p, r, 1.0f / 6);
      p = std::fma(p, r, 0.5f);
      p = std::fma(p, r, 1.0f);
      p = std::fma(p, r, 1.0f);
      // vcvtps2dq gives 0x80000000 for NaN; p is NaN then anyway.
      const int32_t ni = std::isnan(n) ? INT32_MIN : static_cast<int32_t>(n);
      const uint32_t bits = (static_cast<uint32_t>(ni) + 127u) << 23;
      e = p * kdr::bits_float(bits);
    }
    return x;
  }
  // Sums (maxima) by halves: lane i with i + 8, then + 4, + 2, + 1.
  static float reduce_add(F32x16 x) {
    for (int w = 8; w >= 1; w /= 2)
      for (int i = 0; i < w; ++i) x.v[i] = x.v[i] + x.v[i + w];
    return x.v[0];
  }
  static float reduce_max(F32x16 x) {
    for (int w = 8; w >= 1; w /= 2)
      for (int i = 0; i < w; ++i) x.v[i] = max1(x.v[i], x.v[i + w]);
    return x.v[0];
  }

  // --- bf16 vectors (AVX-512 BF16) ---
  // n <= 32 elements from p, the rest zero (a masked load: nothing past p + n is read).
  static Bf16x32 load_bf16(const uint16_t* p, size_t n) {
    Bf16x32 r{};
    std::memcpy(r.v, p, n * sizeof(uint16_t));
    return r;
  }
  // a[0] b[0] a[1] b[1] ... for n <= 16 elements of each, the rest zero: two V rows in the
  // pair layout the dot product multiplies with a broadcast pair of probabilities.
  static Bf16x32 interleave_bf16(const uint16_t* a, const uint16_t* b, size_t n) {
    Bf16x32 r{};
    for (size_t i = 0; i < n; ++i) {
      r.v[2 * i] = a[i];
      r.v[2 * i + 1] = b[i];
    }
    return r;
  }
  static Bf16x32 zero_bits() { return Bf16x32{}; }
  // n <= 32 floats rounded as kdr::f32_to_bf16, the rest zero (nothing past p + n is read).
  static Bf16x32 round_bf16(const float* p, size_t n) {
    Bf16x32 r{};
    for (size_t i = 0; i < n; ++i) r.v[i] = kdr::f32_to_bf16(p[i]);
    return r;
  }
  static Bf16x32 broadcast_pair(uint16_t even, uint16_t odd) {
    Bf16x32 r;
    for (int i = 0; i < 16; ++i) {
      r.v[2 * i] = even;
      r.v[2 * i + 1] = odd;
    }
    return r;
  }
  // Denormals to zero of their sign, on the bits (branch-free, so the loops vectorise).
  static float daz(float x) {
    const uint32_t u = kdr::float_bits(x);
    return kdr::bits_float((u & 0x7f800000u) == 0 ? u & 0x80000000u : u);
  }
  static float bf16_in(uint16_t h) {
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    return kdr::bits_float((u & 0x7f800000u) == 0 ? u & 0x80000000u : u);
  }
  // One step of the instructions' "FP32 FMA with DAZ, FTZ, RNE" (bf16 inputs come through
  // bf16_in; their product is exact in f32).
  static float fma_daz_ftz(float a, float b, float c) { return daz(std::fma(a, b, daz(c))); }
  // VDPBF16PS: acc[i] += a[2i+1] b[2i+1], then += a[2i] b[2i].
  static F32x16 dot_bf16(F32x16 acc, Bf16x32 a, Bf16x32 b) {
    for (int i = 0; i < 16; ++i) {
      float c = fma_daz_ftz(bf16_in(a.v[2 * i + 1]), bf16_in(b.v[2 * i + 1]), acc.v[i]);
      acc.v[i] = fma_daz_ftz(bf16_in(a.v[2 * i]), bf16_in(b.v[2 * i]), c);
    }
    return acc;
  }
  // dst[2i] = bf16(a[i]), dst[2i + 1] = bf16(b[i]), rounded as kdr::f32_to_bf16.
  static void store_bf16_pairs(F32x16 a, F32x16 b, uint16_t* dst) {
    for (int i = 0; i < 16; ++i) {
      dst[2 * i] = kdr::f32_to_bf16(a.v[i]);
      dst[2 * i + 1] = kdr::f32_to_bf16(b.v[i]);
    }
  }

  // --- 512-bit integer shuffles (AVX-512F), on Bf16x32 as 16 u32 lanes in 4 lanes of 128 ---
  static uint32_t u32(const Bf16x32& x, int i) {
    return x.v[2 * i] | static_cast<uint32_t>(x.v[2 * i + 1]) << 16;
  }
  static void set_u32(Bf16x32& x, int i, uint32_t u) {
    x.v[2 * i] = static_cast<uint16_t>(u);
    x.v[2 * i + 1] = static_cast<uint16_t>(u >> 16);
  }
  // vpunpckldq / vpunpckhdq: per 128-bit lane, a0 b0 a1 b1 / a2 b2 a3 b3.
  static Bf16x32 unpacklo_epi32(Bf16x32 a, Bf16x32 b) {
    Bf16x32 r;
    for (int l = 0; l < 4; ++l)
      for (int i = 0; i < 2; ++i) {
        set_u32(r, 4 * l + 2 * i, u32(a, 4 * l + i));
        set_u32(r, 4 * l + 2 * i + 1, u32(b, 4 * l + i));
      }
    return r;
  }
  static Bf16x32 unpackhi_epi32(Bf16x32 a, Bf16x32 b) {
    Bf16x32 r;
    for (int l = 0; l < 4; ++l)
      for (int i = 0; i < 2; ++i) {
        set_u32(r, 4 * l + 2 * i, u32(a, 4 * l + 2 + i));
        set_u32(r, 4 * l + 2 * i + 1, u32(b, 4 * l + 2 + i));
      }
    return r;
  }
  // vpunpcklqdq / vpunpckhqdq: per 128-bit lane, a.q0 b.q0 / a.q1 b.q1 (64-bit halves).
  static Bf16x32 unpacklo_epi64(Bf16x32 a, Bf16x32 b) {
    Bf16x32 r;
    for (int l = 0; l < 4; ++l) {
      std::memcpy(&r.v[8 * l], &a.v[8 * l], 8);
      std::memcpy(&r.v[8 * l + 4], &b.v[8 * l], 8);
    }
    return r;
  }
  static Bf16x32 unpackhi_epi64(Bf16x32 a, Bf16x32 b) {
    Bf16x32 r;
    for (int l = 0; l < 4; ++l) {
      std::memcpy(&r.v[8 * l], &a.v[8 * l + 4], 8);
      std::memcpy(&r.v[8 * l + 4], &b.v[8 * l + 4], 8);
    }
    return r;
  }
  // vshufi32x4: 128-bit lanes a[imm 1:0], a[imm 3:2], b[imm 5:4], b[imm 7:6].
  template <int kImm>
  static Bf16x32 shuffle_i32x4(Bf16x32 a, Bf16x32 b) {
    Bf16x32 r;
    for (int l = 0; l < 4; ++l) {
      const int src = (kImm >> (2 * l)) & 3;
      std::memcpy(&r.v[8 * l], &(l < 2 ? a : b).v[8 * src], 16);
    }
    return r;
  }
  static void store_bits(Bf16x32 x, uint16_t* dst) { std::memcpy(dst, x.v, sizeof(x.v)); }

  // --- AMX tiles, palette 1 ---
  struct TileFile {
    alignas(64) uint8_t t[8][16][64];
    bool configured = false;
  };
  static TileFile& tiles() {
    static thread_local TileFile file;
    return file;
  }
  static void check() {
    if (!tiles().configured) throw std::logic_error("rpa bf16: tile used without tile_config");
  }
  // Every tile 16 rows x 64 bytes: f32 accumulators of 16 x 16, bf16 operands of 16 x 32.
  static void tile_config() {
    std::memset(tiles().t, 0, sizeof(tiles().t));
    tiles().configured = true;
  }
  static void tile_release() { tiles().configured = false; }
  template <int T>
  static void tile_zero() {
    static_assert(T >= 0 && T < 8);
    check();
    std::memset(tiles().t[T], 0, sizeof(tiles().t[T]));
  }
  template <int T>
  static void tile_load(const void* base, size_t stride_bytes) {
    static_assert(T >= 0 && T < 8);
    check();
    for (int r = 0; r < 16; ++r)
      std::memcpy(tiles().t[T][r], static_cast<const uint8_t*>(base) + r * stride_bytes, 64);
  }
  template <int T>
  static void tile_store(void* base, size_t stride_bytes) {
    static_assert(T >= 0 && T < 8);
    check();
    for (int r = 0; r < 16; ++r)
      std::memcpy(static_cast<uint8_t*>(base) + r * stride_bytes, tiles().t[T][r], 64);
  }
  // TDPBF16PS C, A, B: C[m][n] += A[m][2k] B[k][2n], then += A[m][2k+1] B[k][2n+1], k < 16.
  template <int C, int A, int B>
  static void tile_dp_bf16() {
    static_assert(C != A && C != B && A != B && C < 8 && A < 8 && B < 8);
    check();
    TileFile& f = tiles();
    for (int m = 0; m < 16; ++m) {
      float acc[16];
      uint16_t a[32];
      std::memcpy(acc, f.t[C][m], 64);
      std::memcpy(a, f.t[A][m], 64);
      for (int k = 0; k < 16; ++k) {
        uint16_t b[32];
        std::memcpy(b, f.t[B][k], 64);
        const float a0 = bf16_in(a[2 * k]), a1 = bf16_in(a[2 * k + 1]);
        for (int n = 0; n < 16; ++n) {
          const float c = fma_daz_ftz(a0, bf16_in(b[2 * n]), acc[n]);
          acc[n] = fma_daz_ftz(a1, bf16_in(b[2 * n + 1]), c);
        }
      }
      std::memcpy(f.t[C][m], acc, 64);
    }
  }
};

}  // namespace rpa::bf16
