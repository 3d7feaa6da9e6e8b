// The ISA layer of the bf16 kernels on the real instructions: AVX-512F/BW/DQ for the f32
// softmax, AVX-512 BF16 (vdpbf16ps) for the decode dot products, AMX-TILE and AMX-BF16
// (tileloadd, tdpbf16ps, tilestored) for the prefill tiles. Every operation has the same
// result as its scalar emulation in bf16_isa_emulated.h.
//
// Include only from bf16_x86.cc, inside its `#pragma GCC target` region: nothing here may run
// before kdr::cpu::active_path() has said the path runs (and, for tiles, that Linux granted
// the AMX state).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace rpa::bf16 {

struct X86Isa {
  static constexpr const char* kName = "x86";

  using F32x16 = __m512;
  using Bf16x32 = __m512i;

  static F32x16 zero() { return _mm512_setzero_ps(); }
  static F32x16 set1(float x) { return _mm512_set1_ps(x); }
  static F32x16 load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(F32x16 x, float* p) { _mm512_storeu_ps(p, x); }
  static F32x16 add(F32x16 a, F32x16 b) { return _mm512_add_ps(a, b); }
  static F32x16 sub(F32x16 a, F32x16 b) { return _mm512_sub_ps(a, b); }
  static F32x16 mul(F32x16 a, F32x16 b) { return _mm512_mul_ps(a, b); }
  static F32x16 fmadd(F32x16 a, F32x16 b, F32x16 c) { return _mm512_fmadd_ps(a, b, c); }
  static F32x16 max(F32x16 a, F32x16 b) { return _mm512_max_ps(a, b); }
  static F32x16 replace_neg_inf(F32x16 x, float value) {
    const __mmask16 inf = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ);
    return _mm512_mask_mov_ps(x, inf, _mm512_set1_ps(value));
  }
  static F32x16 exp_non_positive(F32x16 x) {
    const __m512 c = _mm512_max_ps(_mm512_set1_ps(-88.0f), x);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(c, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), c);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i e =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
  }
  static float reduce_add(F32x16 x) {
    const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
    const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_shuffle_ps(c, c, 1)));
  }
  static float reduce_max(F32x16 x) {
    const __m256 a = _mm256_max_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
    const __m128 b = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 c = _mm_max_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_max_ss(c, _mm_shuffle_ps(c, c, 1)));
  }

  static Bf16x32 load_bf16(const uint16_t* p, size_t n) {
    if (n >= 32) return _mm512_loadu_si512(p);
    return _mm512_maskz_loadu_epi16(static_cast<__mmask32>((1u << n) - 1), p);
  }
  static Bf16x32 interleave_bf16(const uint16_t* a, const uint16_t* b, size_t n) {
    const __mmask16 m = static_cast<__mmask16>(n >= 16 ? 0xffffu : (1u << n) - 1);
    const __m512i x = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, a));
    const __m512i y = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, b));
    return _mm512_or_si512(x, _mm512_slli_epi32(y, 16));
  }
  static Bf16x32 broadcast_pair(uint16_t even, uint16_t odd) {
    return _mm512_set1_epi32(static_cast<int32_t>(even | (static_cast<uint32_t>(odd) << 16)));
  }
  static F32x16 dot_bf16(F32x16 acc, Bf16x32 a, Bf16x32 b) {
    return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh>(a), reinterpret_cast<__m512bh>(b));
  }
  // Round to nearest even on the bits, NaN kept quiet: kdr::f32_to_bf16 exactly (vcvtne2ps2bf16
  // would flush denormal inputs).
  static __m512i round_bf16_bits(F32x16 x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_srli_epi32(
        _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
    const __m512i abs = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7f800000));
    const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_and_si512(_mm512_mask_mov_epi32(rounded, nan, quiet), _mm512_set1_epi32(0xffff));
  }
  static Bf16x32 zero_bits() { return _mm512_setzero_si512(); }
  static Bf16x32 round_bf16(const float* p, size_t n) {
    const __mmask16 m0 = static_cast<__mmask16>(n >= 16 ? 0xffffu : (1u << n) - 1);
    const __mmask16 m1 = static_cast<__mmask16>(n >= 32   ? 0xffffu
                                                : n <= 16 ? 0u
                                                          : (1u << (n - 16)) - 1);
    const __m256i lo = _mm512_cvtepi32_epi16(round_bf16_bits(_mm512_maskz_loadu_ps(m0, p)));
    const __m256i hi = _mm512_cvtepi32_epi16(round_bf16_bits(_mm512_maskz_loadu_ps(m1, p + 16)));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
  }
  static void store_bf16_pairs(F32x16 a, F32x16 b, uint16_t* dst) {
    const __m512i pairs =
        _mm512_or_si512(round_bf16_bits(a), _mm512_slli_epi32(round_bf16_bits(b), 16));
    _mm512_storeu_si512(dst, pairs);
  }

  static Bf16x32 unpacklo_epi32(Bf16x32 a, Bf16x32 b) { return _mm512_unpacklo_epi32(a, b); }
  static Bf16x32 unpackhi_epi32(Bf16x32 a, Bf16x32 b) { return _mm512_unpackhi_epi32(a, b); }
  static Bf16x32 unpacklo_epi64(Bf16x32 a, Bf16x32 b) { return _mm512_unpacklo_epi64(a, b); }
  static Bf16x32 unpackhi_epi64(Bf16x32 a, Bf16x32 b) { return _mm512_unpackhi_epi64(a, b); }
  template <int kImm>
  static Bf16x32 shuffle_i32x4(Bf16x32 a, Bf16x32 b) {
    return _mm512_shuffle_i32x4(a, b, kImm);
  }
  static void store_bits(Bf16x32 x, uint16_t* dst) { _mm512_storeu_si512(dst, x); }

  // Palette 1, every tile 16 rows x 64 bytes.
  struct alignas(64) TileConfig {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
  };
  static void tile_config() {
    TileConfig c{};
    c.palette_id = 1;
    for (int t = 0; t < 8; ++t) {
      c.colsb[t] = 64;
      c.rows[t] = 16;
    }
    _tile_loadconfig(&c);
  }
  static void tile_release() { _tile_release(); }
  // The tile intrinsics paste their tile number into the assembly text, so it must be a
  // literal: one case per tile.
#define RPA_TILE_CASES(OP)                   \
  if constexpr (T == 0) {                    \
    OP(0);                                   \
  } else if constexpr (T == 1) {             \
    OP(1);                                   \
  } else if constexpr (T == 2) {             \
    OP(2);                                   \
  } else if constexpr (T == 3) {             \
    OP(3);                                   \
  } else if constexpr (T == 4) {             \
    OP(4);                                   \
  } else if constexpr (T == 5) {             \
    OP(5);                                   \
  } else if constexpr (T == 6) {             \
    OP(6);                                   \
  } else {                                   \
    static_assert(T == 7, "tiles are 0..7"); \
    OP(7);                                   \
  }
  template <int T>
  static void tile_zero() {
#define RPA_OP(t) _tile_zero(t)
    RPA_TILE_CASES(RPA_OP)
#undef RPA_OP
  }
  template <int T>
  static void tile_load(const void* base, size_t stride_bytes) {
#define RPA_OP(t) _tile_loadd(t, base, stride_bytes)
    RPA_TILE_CASES(RPA_OP)
#undef RPA_OP
  }
  template <int T>
  static void tile_store(void* base, size_t stride_bytes) {
#define RPA_OP(t) _tile_stored(t, base, stride_bytes)
    RPA_TILE_CASES(RPA_OP)
#undef RPA_OP
  }
#undef RPA_TILE_CASES
  // The four products of a 2 x 2 block (bf16_attention-inl.h, tile_block): C 0-3, A 4-5, B 6-7.
  template <int C, int A, int B>
  static void tile_dp_bf16() {
    if constexpr (C == 0 && A == 4 && B == 6) {
      _tile_dpbf16ps(0, 4, 6);
    } else if constexpr (C == 1 && A == 4 && B == 7) {
      _tile_dpbf16ps(1, 4, 7);
    } else if constexpr (C == 2 && A == 5 && B == 6) {
      _tile_dpbf16ps(2, 5, 6);
    } else {
      static_assert(C == 3 && A == 5 && B == 7, "a product tile_block does not use");
      _tile_dpbf16ps(3, 5, 7);
    }
  }
};

}  // namespace rpa::bf16
