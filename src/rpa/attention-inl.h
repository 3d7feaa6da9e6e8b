// SIMD building blocks of the CPU ragged paged attention, compiled once per Highway target
// (included from cpu_attention.cc through hwy/foreach_target.h).
//
// Tiles are f32, row-major with a row stride of `dp` floats (head_dim rounded up to the
// vector length, zero padded):
//   Q [rows][dp]   query rows of a work item, pre-scaled by sm_scale
//   K [kv][dp]     keys of a KV block, converted from the cache dtype once per tile
//   KT [dp][sp]    the same keys transposed, for the outer-product QK of prefill tiles
//   V [kv][dp]     values, likewise
//   S [rows][sp]   logits, then probabilities, of the KV block
//   O [rows][dp]   unnormalised output accumulator of the online softmax

#if defined(RPA_ATTENTION_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef RPA_ATTENTION_INL_H_
#undef RPA_ATTENTION_INL_H_
#else
#define RPA_ATTENTION_INL_H_
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "rpa/rpa.h"

HWY_BEFORE_NAMESPACE();
namespace rpa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;

// Sums of four vectors' lanes, written to out[0..3].
template <class D>
HWY_INLINE void Sum4(D df, hn::Vec<D> a, hn::Vec<D> b, hn::Vec<D> c, hn::Vec<D> d,
                     float* HWY_RESTRICT out) {
#if HWY_TARGET == HWY_AVX2
  // Pairwise adds within 128-bit halves, then fold the halves: 4 sums in 6 instructions
  // instead of 4 full reductions.
  (void)df;
  const __m256 ab = _mm256_hadd_ps(a.raw, b.raw);
  const __m256 cd = _mm256_hadd_ps(c.raw, d.raw);
  const __m256 abcd = _mm256_hadd_ps(ab, cd);
  const __m128 sum = _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
  _mm_storeu_ps(out, sum);
#else
  out[0] = hn::GetLane(hn::SumOfLanes(df, a));
  out[1] = hn::GetLane(hn::SumOfLanes(df, b));
  out[2] = hn::GetLane(hn::SumOfLanes(df, c));
  out[3] = hn::GetLane(hn::SumOfLanes(df, d));
#endif
}

// S[r][t] = Q[r] . K[t] for R query rows and t < kvt (a multiple of 2N, N = Lanes(DF)), from
// K transposed (kt[x][t], row stride ldk): an outer-product register block of R rows x 2N
// keys (2R accumulators, each K vector used by R rows, each Q element broadcast once per
// 2N keys), so no horizontal sums are needed.
template <size_t R>
HWY_INLINE void ScoresQKTBlock(const float* HWY_RESTRICT q, const float* HWY_RESTRICT kt,
                               float* HWY_RESTRICT s, size_t kvt, size_t d, size_t dp, size_t sp,
                               size_t ldk) {
  const DF df;
  const size_t nl = hn::Lanes(df);
  for (size_t t = 0; t < kvt; t += 2 * nl) {
    hn::Vec<DF> a0[R], a1[R];
    for (size_t i = 0; i < R; ++i) {
      a0[i] = hn::Zero(df);
      a1[i] = hn::Zero(df);
    }
    const float* kp = kt + t;
    for (size_t x = 0; x < d; ++x, kp += ldk) {
      const auto b0 = hn::LoadU(df, kp);
      const auto b1 = hn::LoadU(df, kp + nl);
      for (size_t i = 0; i < R; ++i) {
        const auto w = hn::Set(df, q[i * dp + x]);
        a0[i] = hn::MulAdd(w, b0, a0[i]);
        a1[i] = hn::MulAdd(w, b1, a1[i]);
      }
    }
    for (size_t i = 0; i < R; ++i) {
      hn::StoreU(a0[i], df, s + i * sp + t);
      hn::StoreU(a1[i], df, s + i * sp + t + nl);
    }
  }
}

// dst[x][t] = src[t][x] for t < n, x < d (src rows `ld` floats apart, dst rows `ldt` apart),
// and dst[x][t] = 0 for t in [n, nt): K transposed for ScoresQKT. On AVX2 and up, 8 x 8
// blocks are transposed in registers (unpack, shuffle, 128-bit permute); the rest element
// by element (a scalar loop over the whole tile took ~6% of a 2048-token prefill).
HWY_INLINE void TransposeRows(const float* HWY_RESTRICT src, size_t ld, size_t n, size_t d,
                              float* HWY_RESTRICT dst, size_t ldt, size_t nt) {
  size_t t0 = 0;  // rows [0, t0) done for x < d8
  size_t d8 = 0;
#if HWY_TARGET <= HWY_AVX2
  d8 = d / 8 * 8;
  for (; t0 + 8 <= n; t0 += 8) {
    for (size_t x0 = 0; x0 < d8; x0 += 8) {
      __m256 r[8];
      for (size_t i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + (t0 + i) * ld + x0);
      __m256 u[8];
      for (size_t i = 0; i < 8; i += 2) {
        u[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);      // a0 b0 a1 b1 | a4 b4 a5 b5
        u[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);  // a2 b2 a3 b3 | a6 b6 a7 b7
      }
      for (size_t i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(u[i], u[i + 2], 0x44);      // a0 b0 c0 d0 | a4 ..
        r[i + 1] = _mm256_shuffle_ps(u[i], u[i + 2], 0xEE);  // a1 b1 c1 d1 | a5 ..
        r[i + 2] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0xEE);
      }
      for (size_t i = 0; i < 4; ++i) {
        _mm256_storeu_ps(dst + (x0 + i) * ldt + t0, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(dst + (x0 + i + 4) * ldt + t0,
                         _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
      }
    }
  }
#endif
  for (size_t x = 0; x < d; ++x) {
    float* row = dst + x * ldt;
    for (size_t t = x < d8 ? t0 : 0; t < n; ++t) row[t] = src[t * ld + x];
    for (size_t t = n; t < nt; ++t) row[t] = 0.0f;
  }
}

// S[r][t] = Q[r] . K[t] for r < rows (a multiple of 2), t < kvt (a multiple of 2N), K
// transposed: blocks of 6 rows (12 accumulators), then 4 and 2 for the rest.
HWY_NOINLINE void ScoresQKT(const float* HWY_RESTRICT q, const float* HWY_RESTRICT kt,
                            float* HWY_RESTRICT s, size_t rows, size_t kvt, size_t d, size_t dp,
                            size_t sp, size_t ldk) {
  size_t r = 0;
  for (; r + 6 <= rows; r += 6) ScoresQKTBlock<6>(q + r * dp, kt, s + r * sp, kvt, d, dp, sp, ldk);
  if (r + 4 <= rows) {
    ScoresQKTBlock<4>(q + r * dp, kt, s + r * sp, kvt, d, dp, sp, ldk);
    r += 4;
  }
  if (r + 2 <= rows) ScoresQKTBlock<2>(q + r * dp, kt, s + r * sp, kvt, d, dp, sp, ldk);
}

// O[r] += sum_t P[r][t] V[t] for R rows, t < kv: register block of R rows x 2 vectors of
// the head dim (2R accumulators); V rows stream from L1.
template <size_t R>
HWY_INLINE void AccumulatePVBlock(const float* HWY_RESTRICT p, const float* HWY_RESTRICT v,
                                  float* HWY_RESTRICT o, size_t kv, size_t dp, size_t sp) {
  const DF df;
  const size_t nl = hn::Lanes(df);
  size_t x = 0;
  for (; x + 2 * nl <= dp; x += 2 * nl) {
    hn::Vec<DF> c0[R], c1[R];
    for (size_t i = 0; i < R; ++i) {
      c0[i] = hn::LoadU(df, o + i * dp + x);
      c1[i] = hn::LoadU(df, o + i * dp + x + nl);
    }
    const float* vt = v + x;
    for (size_t t = 0; t < kv; ++t, vt += dp) {
      const auto v0 = hn::LoadU(df, vt);
      const auto v1 = hn::LoadU(df, vt + nl);
      for (size_t i = 0; i < R; ++i) {
        const auto w = hn::Set(df, p[i * sp + t]);
        c0[i] = hn::MulAdd(w, v0, c0[i]);
        c1[i] = hn::MulAdd(w, v1, c1[i]);
      }
    }
    for (size_t i = 0; i < R; ++i) {
      hn::StoreU(c0[i], df, o + i * dp + x);
      hn::StoreU(c1[i], df, o + i * dp + x + nl);
    }
  }
  for (; x < dp; x += nl) {
    hn::Vec<DF> c0[R];
    for (size_t i = 0; i < R; ++i) c0[i] = hn::LoadU(df, o + i * dp + x);
    const float* vt = v + x;
    for (size_t t = 0; t < kv; ++t, vt += dp) {
      const auto v0 = hn::LoadU(df, vt);
      for (size_t i = 0; i < R; ++i) c0[i] = hn::MulAdd(hn::Set(df, p[i * sp + t]), v0, c0[i]);
    }
    for (size_t i = 0; i < R; ++i) hn::StoreU(c0[i], df, o + i * dp + x);
  }
}

// O[r] += sum_t P[r][t] V[t] for r < rows (a multiple of 2), t < kv: blocks of 6 rows (12
// accumulators), then 4 and 2 for the rest.
HWY_NOINLINE void AccumulatePV(const float* HWY_RESTRICT p, const float* HWY_RESTRICT v,
                               float* HWY_RESTRICT o, size_t rows, size_t kv, size_t dp,
                               size_t sp) {
  size_t r = 0;
  for (; r + 6 <= rows; r += 6) AccumulatePVBlock<6>(p + r * sp, v, o + r * dp, kv, dp, sp);
  if (r + 4 <= rows) {
    AccumulatePVBlock<4>(p + r * sp, v, o + r * dp, kv, dp, sp);
    r += 4;
  }
  if (r + 2 <= rows) AccumulatePVBlock<2>(p + r * sp, v, o + r * dp, kv, dp, sp);
}

// s[0..n) = cap * tanh(s / cap).
HWY_INLINE void SoftCap(float* HWY_RESTRICT s, size_t n, float cap) {
  const DF df;
  const size_t nl = hn::Lanes(df);
  const auto vcap = hn::Set(df, cap);
  const auto vinv = hn::Set(df, 1.0f / cap);
  for (size_t i = 0; i < n; i += nl) {  // rows are padded to a multiple of the vector
    const auto x = hn::LoadU(df, s + i);
    hn::StoreU(hn::Mul(vcap, hn::Tanh(df, hn::Mul(x, vinv))), df, s + i);
  }
}

// exp(x) for x <= 0 (and -inf), for the softmax, whose logits minus their maximum are never
// positive: x = n ln2 + r with n = round(x / ln2), |r| <= ln2 / 2, exp(r) by its Taylor
// polynomial of degree 6 (truncation below 1.3e-7 relative), times 2^n built in the exponent
// bits. x is first clamped to -88, where n = -127 gives the bit pattern of +0: so exp(-inf)
// and everything below ~-87.7 come out exactly 0 without a compare; NaN stays NaN. About half
// the instructions of the general hn::Exp (~6% of the decode's time went to it).
template <class D>
HWY_INLINE hn::Vec<D> ExpNonPositive(D df, hn::Vec<D> x) {
  const hn::RebindToSigned<D> di;
  x = hn::Max(hn::Set(df, -88.0f), x);  // x86 max returns its second operand for NaN: kept
  const auto n = hn::Round(hn::Mul(x, hn::Set(df, 1.44269504088896341f)));
  // r = x - n ln2 with ln2 split in two (the high part exact in n * hi for |n| < 2^11).
  auto r = hn::NegMulAdd(n, hn::Set(df, 0.693359375f), x);
  r = hn::NegMulAdd(n, hn::Set(df, -2.12194440e-4f), r);
  auto p = hn::Set(df, 1.0f / 720);
  p = hn::MulAdd(p, r, hn::Set(df, 1.0f / 120));
  p = hn::MulAdd(p, r, hn::Set(df, 1.0f / 24));
  p = hn::MulAdd(p, r, hn::Set(df, 1.0f / 6));
  p = hn::MulAdd(p, r, hn::Set(df, 0.5f));
  p = hn::MulAdd(p, r, hn::Set(df, 1.0f));
  p = hn::MulAdd(p, r, hn::Set(df, 1.0f));
  const auto scale =
      hn::BitCast(df, hn::ShiftLeft<23>(hn::Add(hn::ConvertTo(di, n), hn::Set(di, 127))));
  return hn::Mul(p, scale);
}

// Online softmax update of one row for the logits s[0..n) of a KV block (masked logits are
// -inf; n is padded to the vector length with -inf). Turns s into probabilities, returns the
// factor by which the row's accumulator must be rescaled, and updates m and l.
HWY_INLINE float SoftmaxRow(float* HWY_RESTRICT s, size_t n, float& m, float& l) {
  const DF df;
  const size_t nl = hn::Lanes(df);
  auto vmax = hn::Set(df, -INFINITY);
  for (size_t i = 0; i < n; i += nl) vmax = hn::Max(vmax, hn::LoadU(df, s + i));
  const float block_max = hn::GetLane(hn::MaxOfLanes(df, vmax));
  const float m_new = std::fmax(m, block_max);
  if (m_new == -INFINITY) {  // nothing visible yet: keep the row empty, never exp(nan)
    for (size_t i = 0; i < n; i += nl) hn::StoreU(hn::Zero(df), df, s + i);
    return 1.0f;
  }
  const auto vm = hn::Set(df, m_new);
  auto vsum = hn::Zero(df);
  for (size_t i = 0; i < n; i += nl) {
    const auto e = ExpNonPositive(df, hn::Sub(hn::LoadU(df, s + i), vm));  // exp(-inf) = 0
    vsum = hn::Add(vsum, e);
    hn::StoreU(e, df, s + i);
  }
  // exp(0) is exactly 1: a row whose max did not move (most blocks after the first few)
  // skips the call.
  const float alpha = m == -INFINITY ? 0.0f : m == m_new ? 1.0f : std::exp(m - m_new);
  l = l * alpha + hn::GetLane(hn::SumOfLanes(df, vsum));
  m = m_new;
  return alpha;
}

HWY_INLINE void ScaleRow(float* HWY_RESTRICT x, size_t n, float f) {
  const DF df;
  const size_t nl = hn::Lanes(df);
  const auto vf = hn::Set(df, f);
  for (size_t i = 0; i < n; i += nl) hn::StoreU(hn::Mul(hn::LoadU(df, x + i), vf), df, x + i);
}

// Converts n stored elements of a cache row to f32 (times `scale` for int8/fp8).
// Conversions use at most 8 lanes: head_dim is a multiple of 8, not of every vector length.
using DF8 = hn::CappedTag<float, 8>;

HWY_INLINE void RowToF32(const float* HWY_RESTRICT src, size_t n, float* HWY_RESTRICT dst) {
  const DF8 df;
  const size_t nl = hn::Lanes(df);
  for (size_t i = 0; i < n; i += nl) hn::StoreU(hn::LoadU(df, src + i), df, dst + i);
}
HWY_INLINE void RowToF32(const hwy::bfloat16_t* HWY_RESTRICT src, size_t n,
                         float* HWY_RESTRICT dst) {
  const DF8 df;
  const hn::Rebind<hwy::bfloat16_t, DF8> dbf;
  const size_t nl = hn::Lanes(df);
  for (size_t i = 0; i < n; i += nl)
    hn::StoreU(hn::PromoteTo(df, hn::LoadU(dbf, src + i)), df, dst + i);
}
HWY_INLINE void RowToF32(const hwy::float16_t* HWY_RESTRICT src, size_t n,
                         float* HWY_RESTRICT dst) {
  const DF8 df;
  const hn::Rebind<hwy::float16_t, DF8> dh;
  const size_t nl = hn::Lanes(df);
  for (size_t i = 0; i < n; i += nl)
    hn::StoreU(hn::PromoteTo(df, hn::LoadU(dh, src + i)), df, dst + i);
}
HWY_INLINE void RowToF32(const int8_t* HWY_RESTRICT src, size_t n, float scale,
                         float* HWY_RESTRICT dst) {
  const DF8 df;
  const hn::RebindToSigned<DF8> di;
  const hn::Rebind<int8_t, DF8> d8;
  const size_t nl = hn::Lanes(df);
  const auto vs = hn::Set(df, scale);
  for (size_t i = 0; i < n; i += nl) {
    const auto x = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, src + i)));
    hn::StoreU(hn::Mul(x, vs), df, dst + i);
  }
}

// fp8 e4m3fn codes to the f16 bits of their value times 2^-8, exactly. Sign-extended to 16 bits
// and shifted left by 7, a code puts its sign at bit 15 (with a copy at bit 14, cleared), its 4
// exponent bits at 10..13 and its 3 mantissa bits at 7..9: the f16 exponent (bias 15) is then
// the e4m3 one (bias 7) minus 8, for normals and subnormals alike. The NaN codes (0x7f, 0xff:
// exponent and mantissa all ones) become an f16 NaN. 3 integer operations per lane plus 3 for
// the NaNs, where the table lookup it replaces is one scalar load per element.
template <class D16>
HWY_INLINE hn::Vec<D16> Fp8ToF16Bits(D16 d16, const uint8_t* HWY_RESTRICT src) {
  const hn::Rebind<int8_t, D16> d8;
  const auto x =
      hn::ShiftLeft<7>(hn::PromoteTo(d16, hn::LoadU(d8, reinterpret_cast<const int8_t*>(src))));
  const auto nan_bits = hn::Set(d16, int16_t{0x3f80});
  const auto is_nan = hn::Eq(hn::And(x, nan_bits), nan_bits);
  return hn::IfThenElse(is_nan, hn::Set(d16, int16_t{-1}),
                        hn::And(x, hn::Set(d16, static_cast<int16_t>(0xbfff))));
}

// dst[0..n) = the f16 bits of fp8 codes src[0..n) times 2^-8 (Fp8ToF16Bits); n a multiple of 8.
// Whole vectors of int16 lanes (16 on AVX2: half the instructions of 8-lane steps, which took
// a third of an fp8 decode), then at most 8 lanes at a time.
HWY_INLINE void Fp8RowToF16Scaled(const uint8_t* HWY_RESTRICT src, size_t n,
                                  uint16_t* HWY_RESTRICT dst) {
  int16_t* out = reinterpret_cast<int16_t*>(dst);
  const hn::ScalableTag<int16_t> d16;
  const size_t nl = hn::Lanes(d16);
  size_t i = 0;
  for (; i + nl <= n; i += nl) hn::StoreU(Fp8ToF16Bits(d16, src + i), d16, out + i);
  const hn::CappedTag<int16_t, 8> d8l;
  for (; i < n; i += hn::Lanes(d8l)) hn::StoreU(Fp8ToF16Bits(d8l, src + i), d8l, out + i);
}

// dst[0..n) = fp8 codes src[0..n) as f32 times scale, bit-exact with
// kdr::fp8e4m3_to_f32(code) * scale (the code's value is exact in f16 times 2^8, and
// x * (256 * scale) rounds the same product as (256 * x) * scale); n a multiple of 8.
HWY_INLINE void Fp8RowToF32(const uint8_t* HWY_RESTRICT src, size_t n, float scale,
                            float* HWY_RESTRICT dst) {
  const DF8 df;
  const hn::Rebind<int16_t, DF8> d16;
  const hn::Rebind<hwy::float16_t, DF8> dh;
  const size_t nl = hn::Lanes(df);
  const auto vs = hn::Set(df, scale * 256.0f);
  for (size_t i = 0; i < n; i += nl) {
    const auto h = hn::BitCast(dh, Fp8ToF16Bits(d16, src + i));
    hn::StoreU(hn::Mul(hn::PromoteTo(df, h), vs), df, dst + i);
  }
}

// Decode kernels reading K/V rows straight from the pages (bf16, f16, f32 or int8): no f32
// tile is written and each K/V vector is widened once in registers and used by all query
// rows. A row is read in chunks of 2N elements (N = Lanes(DF8)), each widened to two f32
// vectors (lo, hi). bf16 widens a chunk with one load, a shift and a mask of its 32-bit
// lanes: lo = the chunk's even elements, hi = its odd ones, so on bf16 caches Q and O are
// kept in that permuted order (PermuteChunk / UnpermuteChunk). int8 rows are widened
// without their row scale, which is applied to the score (K) and to the probability (V).
// A tail of N elements (head_dim % 2N == N) is widened in natural order.
HWY_INLINE hn::Vec<DF8> LoadF32(DF8 df, const float* HWY_RESTRICT p) { return hn::LoadU(df, p); }
HWY_INLINE hn::Vec<DF8> LoadF32(DF8 df, const hwy::bfloat16_t* HWY_RESTRICT p) {
  return hn::PromoteTo(df, hn::LoadU(hn::Rebind<hwy::bfloat16_t, DF8>(), p));
}
HWY_INLINE hn::Vec<DF8> LoadF32(DF8 df, const hwy::float16_t* HWY_RESTRICT p) {
  return hn::PromoteTo(df, hn::LoadU(hn::Rebind<hwy::float16_t, DF8>(), p));
}
HWY_INLINE hn::Vec<DF8> LoadF32(DF8 df, const int8_t* HWY_RESTRICT p) {
  const hn::RebindToSigned<DF8> di;
  return hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(hn::Rebind<int8_t, DF8>(), p)));
}

template <typename T>
HWY_INLINE void Widen2(DF8 df, const T* HWY_RESTRICT p, hn::Vec<DF8>& lo, hn::Vec<DF8>& hi) {
  const size_t nl = hn::Lanes(df);
  lo = LoadF32(df, p);
  hi = LoadF32(df, p + nl);
}
HWY_INLINE void Widen2(DF8 df, const hwy::bfloat16_t* HWY_RESTRICT p, hn::Vec<DF8>& lo,
                       hn::Vec<DF8>& hi) {
  const hn::RebindToUnsigned<DF8> du;
  const auto u = hn::LoadU(du, reinterpret_cast<const uint32_t*>(p));
  lo = hn::BitCast(df, hn::ShiftLeft<16>(u));
  hi = hn::BitCast(df, hn::And(u, hn::Set(du, 0xffff0000u)));
}

// Whether Q and O use the even/odd order within each chunk of 2N elements.
template <typename T>
constexpr bool kPermutedChunks = false;
template <>
constexpr bool kPermutedChunks<hwy::bfloat16_t> = true;

// dst[0..d) = src[0..d) * scale, each full chunk of 2N elements in even/odd order.
HWY_INLINE void PermuteRow(const float* HWY_RESTRICT src, size_t d, float scale,
                           float* HWY_RESTRICT dst) {
  const size_t nl = hn::Lanes(DF8());
  size_t x = 0;
  for (; x + 2 * nl <= d; x += 2 * nl) {
    for (size_t j = 0; j < nl; ++j) {
      dst[x + j] = src[x + 2 * j] * scale;
      dst[x + nl + j] = src[x + 2 * j + 1] * scale;
    }
  }
  for (; x < d; ++x) dst[x] = src[x] * scale;
}
HWY_INLINE void UnpermuteRow(const float* HWY_RESTRICT src, size_t d, float* HWY_RESTRICT dst) {
  const size_t nl = hn::Lanes(DF8());
  size_t x = 0;
  for (; x + 2 * nl <= d; x += 2 * nl) {
    for (size_t j = 0; j < nl; ++j) {
      dst[x + 2 * j] = src[x + j];
      dst[x + 2 * j + 1] = src[x + nl + j];
    }
  }
  for (; x < d; ++x) dst[x] = src[x];
}

// Address ranges to prefetch (to L2) a cache line at a time: the decode kernels take a few
// lines of a later block per step of their loops, so that its misses overlap their FMAs.
struct PrefetchRun {
  const char* begin;  // 64-byte aligned
  size_t bytes;       // > 0
};
struct LineCursor {
  const PrefetchRun* run = nullptr;
  const PrefetchRun* end = nullptr;
  size_t off = 0;
  // Prefetches the next `lines` lines (fewer where the ranges end).
  HWY_INLINE void Fetch(size_t lines) {
    for (; lines > 0 && run != end; --lines) {
      __builtin_prefetch(run->begin + off, 0, 2);
      off += 64;
      if (off >= run->bytes) {
        ++run;
        off = 0;
      }
    }
  }
};

// The low and high f32 vectors of a chunk of 2N stored elements (bf16: even and odd
// elements, see Widen2), each loaded on its own so that the load folds into the widening.
template <typename T>
HWY_INLINE hn::Vec<DF8> WidenLo(DF8 df, const T* HWY_RESTRICT p) {
  return LoadF32(df, p);
}
template <typename T>
HWY_INLINE hn::Vec<DF8> WidenHi(DF8 df, const T* HWY_RESTRICT p) {
  return LoadF32(df, p + hn::Lanes(df));
}
template <>
HWY_INLINE hn::Vec<DF8> WidenLo(DF8 df, const hwy::bfloat16_t* HWY_RESTRICT p) {
  const hn::RebindToUnsigned<DF8> du;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::LoadU(du, reinterpret_cast<const uint32_t*>(p))));
}
template <>
HWY_INLINE hn::Vec<DF8> WidenHi(DF8 df, const hwy::bfloat16_t* HWY_RESTRICT p) {
  const hn::RebindToUnsigned<DF8> du;
  return hn::BitCast(
      df, hn::And(hn::LoadU(du, reinterpret_cast<const uint32_t*>(p)), hn::Set(du, 0xffff0000u)));
}

// a0[i] += x0 * y_i and a1[i] += x1 * y_i for the 4 keys' vectors y_i = widen(k_i): one step
// of ScoresQKRows's 2 x 4 register block (the accumulators stay in registers once inlined).
template <typename T, class Widen>
HWY_INLINE void MulAdd2x4(hn::Vec<DF8> x0, hn::Vec<DF8> x1, hn::Vec<DF8> (&a0)[4],
                          hn::Vec<DF8> (&a1)[4], const Widen& widen, const T* k0, const T* k1,
                          const T* k2, const T* k3) {
  auto y = widen(k0);
  a0[0] = hn::MulAdd(x0, y, a0[0]);
  a1[0] = hn::MulAdd(x1, y, a1[0]);
  y = widen(k1);
  a0[1] = hn::MulAdd(x0, y, a0[1]);
  a1[1] = hn::MulAdd(x1, y, a1[1]);
  y = widen(k2);
  a0[2] = hn::MulAdd(x0, y, a0[2]);
  a1[2] = hn::MulAdd(x1, y, a1[2]);
  y = widen(k3);
  a0[3] = hn::MulAdd(x0, y, a0[3]);
  a1[3] = hn::MulAdd(x1, y, a1[3]);
}

// Prefetches (to L2) every cache line of [begin, begin + bytes).
HWY_INLINE void PrefetchLines(const void* begin, size_t bytes) {
  const uintptr_t b = reinterpret_cast<uintptr_t>(begin);
  for (uintptr_t line = b & ~uintptr_t{63}; line < b + bytes; line += 64) {
    __builtin_prefetch(reinterpret_cast<const void*>(line), 0, 2);
  }
}

// Prefetches (to L2) the lines of rows [k0, k1) of `rows`, each `bytes` long, taken `delta`
// bytes past them (the next KV head's rows): whole rows in row order, so that the requests
// stream. (A line of every key in turn, a column strided by the row size, measured slower.)
template <typename T>
HWY_INLINE void PrefetchRows(const T* const* rows, size_t k0, size_t k1, size_t bytes,
                             ptrdiff_t delta) {
  for (size_t i = k0; i < k1; ++i) {
    PrefetchLines(reinterpret_cast<const char*>(rows[i]) + delta, bytes);
  }
}

// Rounds rows [0, rows) of q (d elements each, dp apart) to int16, one scale per row:
// q[r] ~ i16[r] * scale[r], scale = max |q[r]| / 32767 (0 for a zero row); elements [d, dp)
// are zero. A row holding inf or NaN gets a NaN scale: its scores come out NaN, as its f32
// products would. With |K| <= 127 and head_dim <= 256 the int32 sums cannot overflow.
HWY_INLINE void QuantizeRowsI16(const float* HWY_RESTRICT q, size_t rows, size_t d, size_t dp,
                                int16_t* HWY_RESTRICT i16, float* HWY_RESTRICT scale) {
  const DF8 df;
  const hn::Rebind<int16_t, DF8> d16;
  const size_t nl = hn::Lanes(df);
  for (size_t r = 0; r < rows; ++r) {
    const float* src = q + r * dp;
    int16_t* dst = i16 + r * dp;
    auto amax = hn::Zero(df);
    auto nonfinite = hn::Zero(df);  // stays 0 unless some x * 0 is NaN (x inf or NaN)
    for (size_t x = 0; x < d; x += nl) {
      const auto v = hn::LoadU(df, src + x);
      amax = hn::Max(amax, hn::Abs(v));
      nonfinite = hn::MulAdd(v, hn::Zero(df), nonfinite);
    }
    const float m = hn::GetLane(hn::MaxOfLanes(df, amax));
    const bool finite = hn::GetLane(hn::SumOfLanes(df, nonfinite)) == 0.0f;
    scale[r] = finite ? m / 32767.0f : NAN;
    const auto inv = hn::Set(df, finite && m > 0.0f ? 32767.0f / m : 0.0f);
    for (size_t x = 0; x < d; x += nl)
      hn::StoreU(hn::DemoteTo(d16, hn::NearestInt(hn::Mul(hn::LoadU(df, src + x), inv))), d16,
                 dst + x);
    std::fill(dst + d, dst + dp, int16_t{0});
  }
}

// The query rows QK reads, dp elements apart: f32, and on int8 caches int16 copies with a
// scale per row (QuantizeRowsI16), so that the scores' dot products run in integers.
struct QRows {
  const float* f32;
  const int16_t* i16 = nullptr;
  const float* scale = nullptr;
};

// ScoresQKRows's 2 x 4 block in integers, for int8 K and the int16 Q of QRows: each chunk
// of 2N keys' elements is widened to int16 and multiplied into int32 pair sums
// (ReorderWidenMulAccumulate: vpmaddwd on x86, whose second sums stay zero). kOn = false:
// the f32 path (all types but int8, and the scalar target, which has no 2N-lane vectors).
template <typename T>
struct IntDot2x4 {
  static constexpr bool kOn = false;
  void Reset(const QRows&, size_t, size_t) {}
  void Chunk(const T*, const T*, const T*, const T*, size_t) {}
  void Tail(const T*, const T*, const T*, const T*, size_t) {}
  void ToF32(hn::Vec<DF8> (&)[4], hn::Vec<DF8> (&)[4]) {}
};
#if HWY_TARGET != HWY_SCALAR
template <>
struct IntDot2x4<int8_t> {
  static constexpr bool kOn = true;
  using D32 = hn::RebindToSigned<DF8>;
  using D16 = hn::Repartition<int16_t, DF8>;  // 2N lanes: one chunk
  using V32 = hn::Vec<D32>;
  V32 s0[4], s1[4], t0[4], t1[4];  // rows 0 and 1 against the 4 keys; t: second sums
  const int16_t* q0;
  const int16_t* q1;

  HWY_INLINE void Reset(const QRows& q, size_t r, size_t dp) {
    for (size_t i = 0; i < 4; ++i) s0[i] = s1[i] = t0[i] = t1[i] = hn::Zero(D32());
    q0 = q.i16 + r * dp;
    q1 = q0 + dp;
  }
  HWY_INLINE void Chunk(const int8_t* k0, const int8_t* k1, const int8_t* k2, const int8_t* k3,
                        size_t x) {
    const D32 d32;
    const D16 d16;
    const hn::Rebind<int8_t, D16> d8;
    const auto x0 = hn::LoadU(d16, q0 + x);
    const auto x1 = hn::LoadU(d16, q1 + x);
    const int8_t* k[4] = {k0, k1, k2, k3};
    for (size_t i = 0; i < 4; ++i) {
      const auto y = hn::PromoteTo(d16, hn::LoadU(d8, k[i] + x));
      s0[i] = hn::ReorderWidenMulAccumulate(d32, x0, y, s0[i], t0[i]);
      s1[i] = hn::ReorderWidenMulAccumulate(d32, x1, y, s1[i], t1[i]);
    }
  }
  // The last N elements (head_dim % 2N == N), in half vectors.
  HWY_INLINE void Tail(const int8_t* k0, const int8_t* k1, const int8_t* k2, const int8_t* k3,
                       size_t x) {
    const D32 d32;
    const hn::Half<D16> h16;
    const hn::Half<D32> h32;
    const hn::Rebind<int8_t, decltype(h16)> h8;
    const auto x0 = hn::LoadU(h16, q0 + x);
    const auto x1 = hn::LoadU(h16, q1 + x);
    const int8_t* k[4] = {k0, k1, k2, k3};
    for (size_t i = 0; i < 4; ++i) {
      const auto y = hn::PromoteTo(h16, hn::LoadU(h8, k[i] + x));
      auto u0 = hn::Zero(h32), u1 = hn::Zero(h32);
      const auto v0 = hn::ReorderWidenMulAccumulate(h32, x0, y, hn::Zero(h32), u0);
      const auto v1 = hn::ReorderWidenMulAccumulate(h32, x1, y, hn::Zero(h32), u1);
      s0[i] = hn::Add(s0[i], hn::ZeroExtendVector(d32, hn::RearrangeToOddPlusEven(v0, u0)));
      s1[i] = hn::Add(s1[i], hn::ZeroExtendVector(d32, hn::RearrangeToOddPlusEven(v1, u1)));
    }
  }
  HWY_INLINE void ToF32(hn::Vec<DF8> (&a0)[4], hn::Vec<DF8> (&a1)[4]) {
    const DF8 df;
    for (size_t i = 0; i < 4; ++i) {
      a0[i] = hn::ConvertTo(df, hn::RearrangeToOddPlusEven(s0[i], t0[i]));
      a1[i] = hn::ConvertTo(df, hn::RearrangeToOddPlusEven(s1[i], t1[i]));
    }
  }
};
#endif

// S[r][t] = (Q[r] . K[t]) * (kscale ? kscale[t] : 1) for r < 2 * pairs, t < kv
// (a multiple of 4); K row t at krows[t] with d elements. On int8 (T = int8_t) the products
// are integer: Q[r] = q.i16[r] * q.scale[r] (QRows), widened K times the int16 Q summed in
// pairs to int32 (one multiply-add per 2N elements per key and row, where the f32 path needs a
// widening, a conversion and an FMA per N), exact up to the one rounding of Q to int16. The caller
// pairs an odd last row with a zero row: MHA computes 2 rows per KV head, not the 4 of a padded
// 4-row block (a lone row in 1 x 8 blocks computed less but made MHA decode 10-20% slower: its next
// head's prefetches came too fast for the memory). Register block: 2 query rows x 4 keys, so that
// each Q vector loaded serves 4 keys (4 rows x 2 keys load one Q vector per 2 FMAs: with the K
// loads, more than the two load ports take per FMA pair); the row pairs of a key quad run one after
// the other while its K rows are in L1. While it runs it prefetches the next `npf` lines of `pf`,
// spread evenly over the (quad, row pair) steps; with pf_delta, also the line pf_delta bytes past
// each line of K it starts to read (the same rows of the next KV head), each key's in one of the
// quad's row-pair steps, at the rate the memory takes: 4 keys' lines in the first step only made
// the decode 10-20% slower. kWholeRows: one pair with pf_delta (a separate instance, so that the
// test stays out of the other's chunk loop, which has no register to spare for it).
template <typename T, bool kWholeRows>
HWY_NOINLINE void ScoresQKRowsImpl(const QRows& q, const void* const* krows, const float* kscale,
                                   float* HWY_RESTRICT s, size_t pairs, size_t kv, size_t d,
                                   size_t dp, size_t sp, LineCursor& pf, size_t npf,
                                   ptrdiff_t pf_delta) {
  constexpr bool kIntDot = IntDot2x4<T>::kOn;
  const DF8 df;
  const size_t nl = hn::Lanes(df);
  const size_t chunk_bytes = 2 * nl * sizeof(T);
  const size_t rows = 2 * pairs;
  const size_t passes = pairs;  // row pairs per key quad
  const size_t steps = passes * (kv / 4);
  const size_t pf_per_step = steps ? (npf + steps - 1) / steps : 0;
  size_t left = npf;
  for (size_t t = 0; t < kv; t += 4) {
    const T* k0 = static_cast<const T*>(krows[t]);
    const T* k1 = static_cast<const T*>(krows[t + 1]);
    const T* k2 = static_cast<const T*>(krows[t + 2]);
    const T* k3 = static_cast<const T*>(krows[t + 3]);
    for (size_t r = 0; r < rows; r += 2) {
      if (left > 0) {
        const size_t lines = std::min(pf_per_step, left);
        pf.Fetch(lines);
        left -= lines;
      }
      // Keys [pk0, pk1) of the quad (at most 2: two pairs or more) have their next head's
      // lines prefetched in this step; a single pair (MHA, GQA 2) asks for the 4 rows whole,
      // one after the other along its chunks (keys 0 and 1 line by line as it reads them and
      // keys 2 and 3 up front made GQA-2 decode 20-40% slower).
      const size_t pass = r / 2;
      const size_t pk0 = (4 * pass + passes - 1) / passes;
      const size_t pk1 = (4 * (pass + 1) + passes - 1) / passes;
      const char* pfa = nullptr;
      const char* pfb = nullptr;
      if (pf_delta != 0 && pk0 < pk1 && !kWholeRows) {
        pfa = static_cast<const char*>(krows[t + pk0]) + pf_delta;
        if (pk0 + 1 < pk1) pfb = static_cast<const char*>(krows[t + pk0 + 1]) + pf_delta;
      }
      if (kWholeRows && d < 2 * nl) {
        const T* k[4] = {k0, k1, k2, k3};
        PrefetchRows(k, 0, 4, d * sizeof(T), pf_delta);
      }
      const float* q0 = q.f32 + r * dp;
      const float* q1 = q0 + dp;
      hn::Vec<DF8> a0[4], a1[4];  // row 0 and row 1 against keys t..t+3
      for (size_t i = 0; i < 4; ++i) a0[i] = a1[i] = hn::Zero(df);
      [[maybe_unused]] IntDot2x4<T> idot;  // int8: the integer sums
      if constexpr (kIntDot) idot.Reset(q, r, dp);
      size_t x = 0;
      for (; x + 2 * nl <= d; x += 2 * nl) {
        if (pfa && (x * sizeof(T)) % 64 < chunk_bytes) {
          __builtin_prefetch(pfa + x * sizeof(T), 0, 2);
          if (pfb) __builtin_prefetch(pfb + x * sizeof(T), 0, 2);
        }
        if constexpr (kWholeRows) {  // keys [4c / chunks, 4(c + 1) / chunks) at chunk c
          const T* k[4] = {k0, k1, k2, k3};
          const size_t c = x / (2 * nl), chunks = d / (2 * nl);
          PrefetchRows(k, 4 * c / chunks, 4 * (c + 1) / chunks, d * sizeof(T), pf_delta);
        }
        if constexpr (kIntDot) {
          idot.Chunk(k0, k1, k2, k3, x);
        } else {
          MulAdd2x4(
              hn::LoadU(df, q0 + x), hn::LoadU(df, q1 + x), a0, a1,
              [&](const T* k) HWY_ATTR { return WidenLo(df, k + x); }, k0, k1, k2, k3);
          MulAdd2x4(
              hn::LoadU(df, q0 + x + nl), hn::LoadU(df, q1 + x + nl), a0, a1,
              [&](const T* k) HWY_ATTR { return WidenHi(df, k + x); }, k0, k1, k2, k3);
        }
      }
      if constexpr (kIntDot) {
        if (x < d) idot.Tail(k0, k1, k2, k3, x);
        idot.ToF32(a0, a1);
      } else {
        for (; x < d; x += nl) {
          MulAdd2x4(
              hn::LoadU(df, q0 + x), hn::LoadU(df, q1 + x), a0, a1,
              [&](const T* k) HWY_ATTR { return LoadF32(df, k + x); }, k0, k1, k2, k3);
        }
      }
      // Row scales: the keys' (int8) times the query rows' (int16 Q).
      const float qs0 = kIntDot ? q.scale[r] : 1.0f;
      const float qs1 = kIntDot ? q.scale[r + 1] : 1.0f;
      float* dst = s + r * sp + t;
#if HWY_TARGET == HWY_AVX2
      // Pairwise adds within 128-bit halves, then the halves folded: each row's 4 scores
      // come out side by side, as S holds them.
      const __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(a0[0].raw, a0[1].raw),
                                       _mm256_hadd_ps(a0[2].raw, a0[3].raw));
      const __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(a1[0].raw, a1[1].raw),
                                       _mm256_hadd_ps(a1[2].raw, a1[3].raw));
      __m128 s0 = _mm_add_ps(_mm256_castps256_ps128(h0), _mm256_extractf128_ps(h0, 1));
      __m128 s1 = _mm_add_ps(_mm256_castps256_ps128(h1), _mm256_extractf128_ps(h1, 1));
      if (kscale) {
        const __m128 f = _mm_loadu_ps(kscale + t);
        s0 = _mm_mul_ps(s0, _mm_mul_ps(f, _mm_set1_ps(qs0)));
        s1 = _mm_mul_ps(s1, _mm_mul_ps(f, _mm_set1_ps(qs1)));
      }
      _mm_storeu_ps(dst, s0);
      _mm_storeu_ps(dst + sp, s1);
#else
      HWY_ALIGN float sums[4];
      Sum4(df, a0[0], a0[1], a0[2], a0[3], sums);
      for (size_t i = 0; i < 4; ++i) dst[i] = sums[i] * ((kscale ? kscale[t + i] : 1.0f) * qs0);
      Sum4(df, a1[0], a1[1], a1[2], a1[3], sums);
      for (size_t i = 0; i < 4; ++i)
        dst[sp + i] = sums[i] * ((kscale ? kscale[t + i] : 1.0f) * qs1);
#endif
    }
  }
  pf.Fetch(left);  // kv == 0 or rounding: nothing is left unfetched
}

template <typename T>
HWY_INLINE void ScoresQKRows(const QRows& q, const void* const* krows, const float* kscale,
                             float* HWY_RESTRICT s, size_t pairs, size_t kv, size_t d, size_t dp,
                             size_t sp, LineCursor& pf, size_t npf, ptrdiff_t pf_delta) {
  if (pairs == 1 && pf_delta != 0) {
    ScoresQKRowsImpl<T, true>(q, krows, kscale, s, pairs, kv, d, dp, sp, pf, npf, pf_delta);
  } else {
    ScoresQKRowsImpl<T, false>(q, krows, kscale, s, pairs, kv, d, dp, sp, pf, npf, pf_delta);
  }
}

// c[i][2j, 2j + 1] += P[i][t] * (the two vectors of chunk j of V row t) for i < R, j < C.
template <size_t R, size_t C, typename T>
HWY_INLINE void PVStep(DF8 df, hn::Vec<DF8> (&c)[R][2 * C], const float* HWY_RESTRICT p, size_t sp,
                       const T* HWY_RESTRICT v, size_t t) {
  const size_t nl = hn::Lanes(df);
  hn::Vec<DF8> w[R];
#pragma GCC unroll 4
  for (size_t i = 0; i < R; ++i) w[i] = hn::Set(df, p[i * sp + t]);
#pragma GCC unroll 4
  for (size_t j = 0; j < C; ++j) {
    hn::Vec<DF8> v0, v1;
    Widen2(df, v + 2 * nl * j, v0, v1);
#pragma GCC unroll 4
    for (size_t i = 0; i < R; ++i) {
      c[i][2 * j] = hn::MulAdd(w[i], v0, c[i][2 * j]);
      c[i][2 * j + 1] = hn::MulAdd(w[i], v1, c[i][2 * j + 1]);
    }
  }
}

// O[i][x, x + 2NC) += sum_t P[i][t] V[t][x, x + 2NC) for i < R: one register block of R rows
// x C chunks of 2N elements (2RC <= 8 accumulators), keys in order (the sums of a row's
// element are the same in every block shape). `prefetch(keys)` runs before each 4 keys
// (before each of the last kv % 4).
template <size_t R, size_t C, typename T, class Prefetch>
HWY_INLINE void PVBlock(DF8 df, const float* HWY_RESTRICT p, const void* const* vrows,
                        float* HWY_RESTRICT o, size_t kv, size_t x, size_t dp, size_t sp,
                        const Prefetch& prefetch) {
  const size_t nl = hn::Lanes(df);
  hn::Vec<DF8> c[R][2 * C];
#pragma GCC unroll 4
  for (size_t i = 0; i < R; ++i) {
#pragma GCC unroll 8
    for (size_t j = 0; j < 2 * C; ++j) c[i][j] = hn::LoadU(df, o + i * dp + x + j * nl);
  }
  size_t t = 0;
  for (; t + 4 <= kv; t += 4) {
    prefetch(4);
    PVStep<R, C>(df, c, p, sp, static_cast<const T*>(vrows[t]) + x, t);
    PVStep<R, C>(df, c, p, sp, static_cast<const T*>(vrows[t + 1]) + x, t + 1);
    PVStep<R, C>(df, c, p, sp, static_cast<const T*>(vrows[t + 2]) + x, t + 2);
    PVStep<R, C>(df, c, p, sp, static_cast<const T*>(vrows[t + 3]) + x, t + 3);
  }
  for (; t < kv; ++t) {
    prefetch(1);
    PVStep<R, C>(df, c, p, sp, static_cast<const T*>(vrows[t]) + x, t);
  }
#pragma GCC unroll 4
  for (size_t i = 0; i < R; ++i) {
#pragma GCC unroll 8
    for (size_t j = 0; j < 2 * C; ++j) hn::StoreU(c[i][j], df, o + i * dp + x + j * nl);
  }
}

// AccumulatePVRows for the last 1 to 3 rows (rows < 4): a pair in blocks of 2 rows x 2 chunks,
// then an odd row in blocks of 1 row x 4 chunks (8 accumulators each, as the 4-row blocks'),
// narrower blocks for the last chunks of the row, the tail of N elements in natural order.
// Takes over the prefetching where no 4-row block ran: `left` lines of `pf` spread over its
// blocks, one per key, and with pf_delta the next head's V lines in row order, as many per
// key as its block's chunks start lines.
template <typename T>
HWY_NOINLINE void AccumulatePVRemainder(const float* HWY_RESTRICT p, const void* const* vrows,
                                        float* HWY_RESTRICT o, size_t rows, size_t kv, size_t d,
                                        size_t dp, size_t sp, LineCursor& pf, size_t& left,
                                        ptrdiff_t pf_delta) {
  const DF8 df;
  const size_t nl = hn::Lanes(df);
  const size_t row_lines = (d * sizeof(T) + 63) / 64;
  const size_t full = d / (2 * nl) * (2 * nl);  // elements in whole chunks
  // The blocks in order: fn(r, nr, x, chunks) covers rows [r, r + nr) x [x, x + 2N chunks).
  const auto for_each_block = [&](const auto& fn) {
    for (size_t r = 0; r < rows;) {
      const size_t nr = rows - r >= 2 ? 2 : 1;
      const size_t widest = nr == 2 ? 2 : 4;
      size_t x = 0;
      for (; x + 2 * nl * widest <= d; x += 2 * nl * widest) fn(r, nr, x, widest);
      for (size_t c = widest / 2; c > 0; c /= 2) {  // at most one of each narrower width
        if (x + 2 * nl * c <= d) {
          fn(r, nr, x, c);
          x += 2 * nl * c;
        }
      }
      r += nr;
    }
  };
  size_t nb = 0;
  for_each_block([&](size_t, size_t, size_t, size_t) { ++nb; });
  const size_t per_block = nb ? (left + nb - 1) / nb : 0;
  size_t pf_row = 0, pf_line = 0;  // the next V line of the next head (pf_delta)
  for_each_block([&](size_t r, size_t nr, size_t x, size_t chunks) HWY_ATTR {
    // Lines of `pf` for this block: any beyond one per key at its start.
    size_t quota = std::min(per_block, left);
    if (quota > kv) {
      pf.Fetch(quota - kv);
      left -= quota - kv;
      quota = kv;
    }
    // Next-head lines per key: the lines this block's chunks start, over the first row's
    // blocks (whose last also takes the tail's).
    size_t delta_lines = 0;
    if (pf_delta != 0 && r == 0) {
      const size_t x_end = x + 2 * nl * chunks;
      const size_t end = (x_end == full ? d : x_end) * sizeof(T);
      delta_lines = (end + 63) / 64 - (x * sizeof(T) + 63) / 64;
    }
    // The cursors in locals while the block runs, so that they stay in registers.
    size_t row = pf_row, line = pf_line, lines_left = left;
    const auto prefetch = [&](size_t keys) {
      const size_t lines = std::min(keys, quota);
      if (lines > 0) {
        pf.Fetch(lines);
        lines_left -= lines;
        quota -= lines;
      }
      for (size_t i = keys * delta_lines; i > 0 && row < kv; --i) {
        __builtin_prefetch(static_cast<const char*>(vrows[row]) + line * 64 + pf_delta, 0, 2);
        if (++line == row_lines) {
          line = 0;
          ++row;
        }
      }
    };
    const float* pr = p + r * sp;
    float* orow = o + r * dp;
    if (nr == 2) {
      if (chunks == 2) {
        PVBlock<2, 2, T>(df, pr, vrows, orow, kv, x, dp, sp, prefetch);
      } else {
        PVBlock<2, 1, T>(df, pr, vrows, orow, kv, x, dp, sp, prefetch);
      }
    } else if (chunks == 4) {
      PVBlock<1, 4, T>(df, pr, vrows, orow, kv, x, dp, sp, prefetch);
    } else if (chunks == 2) {
      PVBlock<1, 2, T>(df, pr, vrows, orow, kv, x, dp, sp, prefetch);
    } else {
      PVBlock<1, 1, T>(df, pr, vrows, orow, kv, x, dp, sp, prefetch);
    }
    pf_row = row;
    pf_line = line;
    left = lines_left;
  });
  // The tail of N elements (head_dim % 2N == N), in natural order.
  if (full < d) {
    const size_t x = full;
    for (size_t r = 0; r < rows; ++r) {
      auto c0 = hn::LoadU(df, o + r * dp + x);
      for (size_t t = 0; t < kv; ++t) {
        c0 = hn::MulAdd(hn::Set(df, p[r * sp + t]),
                        LoadF32(df, static_cast<const T*>(vrows[t]) + x), c0);
      }
      hn::StoreU(c0, df, o + r * dp + x);
    }
  }
}

// O[r] += sum_t P[r][t] V[t] for r < rows, t < kv; V row t at vrows[t]
// (int8: P already carries the V row scale). O in the order of the widened chunks. While it
// runs it prefetches the next `npf` lines of `pf`: one per key of each chunk of the first 4
// rows, any more at the start of each chunk, so that the memory keeps working while this
// half of the block computes too. With pf_delta it prefetches instead the lines pf_delta
// bytes past its V rows (the next KV head's): one per key of each chunk that starts a line,
// taken in row order so that the requests stream: the line each key reads (a column,
// strided by the row size) made the decode slower than even the list did (65.7 against
// 53-55 ms; the hardware prefetcher following that stride, most likely).
template <typename T>
HWY_NOINLINE void AccumulatePVRows(const float* HWY_RESTRICT p, const void* const* vrows,
                                   float* HWY_RESTRICT o, size_t rows, size_t kv, size_t d,
                                   size_t dp, size_t sp, LineCursor& pf, size_t npf,
                                   ptrdiff_t pf_delta) {
  const DF8 df;
  const size_t nl = hn::Lanes(df);
  const size_t chunk_bytes = 2 * nl * sizeof(T);
  const size_t row_lines = (d * sizeof(T) + 63) / 64;
  size_t pf_row = 0, pf_line = 0;  // the next V line to prefetch with pf_delta
  const size_t chunks = d / (2 * nl);
  const size_t per_key = chunks * kv;  // lines one per key of the chunks cover
  const size_t extra_per_chunk =
      chunks && npf > per_key ? (npf - per_key + chunks - 1) / chunks : 0;
  size_t left = npf;
  size_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float* p0 = p + r * sp;
    const float* p1 = p0 + sp;
    const float* p2 = p1 + sp;
    const float* p3 = p2 + sp;
    float* o0 = o + r * dp;
    float* o1 = o0 + dp;
    float* o2 = o1 + dp;
    float* o3 = o2 + dp;
    size_t x = 0;
    for (; x + 2 * nl <= d; x += 2 * nl) {
      const ptrdiff_t delta = r == 0 && (x * sizeof(T)) % 64 < chunk_bytes ? pf_delta : 0;
      auto c00 = hn::LoadU(df, o0 + x), c01 = hn::LoadU(df, o0 + x + nl);
      auto c10 = hn::LoadU(df, o1 + x), c11 = hn::LoadU(df, o1 + x + nl);
      auto c20 = hn::LoadU(df, o2 + x), c21 = hn::LoadU(df, o2 + x + nl);
      auto c30 = hn::LoadU(df, o3 + x), c31 = hn::LoadU(df, o3 + x + nl);
      if (left > 0) {
        const size_t lines = std::min(extra_per_chunk, left);
        pf.Fetch(lines);
        left -= lines;
      }
      const auto step = [&](size_t t) HWY_ATTR {
        hn::Vec<DF8> v0, v1;
        Widen2(df, static_cast<const T*>(vrows[t]) + x, v0, v1);
        const auto w0 = hn::Set(df, p0[t]);
        c00 = hn::MulAdd(w0, v0, c00);
        c01 = hn::MulAdd(w0, v1, c01);
        const auto w1 = hn::Set(df, p1[t]);
        c10 = hn::MulAdd(w1, v0, c10);
        c11 = hn::MulAdd(w1, v1, c11);
        const auto w2 = hn::Set(df, p2[t]);
        c20 = hn::MulAdd(w2, v0, c20);
        c21 = hn::MulAdd(w2, v1, c21);
        const auto w3 = hn::Set(df, p3[t]);
        c30 = hn::MulAdd(w3, v0, c30);
        c31 = hn::MulAdd(w3, v1, c31);
      };
      // The prefetches of `keys` keys (one line each), issued together.
      const auto prefetch = [&](size_t keys) {
        if (left > 0) {
          const size_t lines = std::min(keys, left);
          pf.Fetch(lines);
          left -= lines;
        }
        for (size_t i = 0; delta != 0 && i < keys && pf_row < kv; ++i) {
          __builtin_prefetch(static_cast<const char*>(vrows[pf_row]) + pf_line * 64 + delta, 0, 2);
          if (++pf_line == row_lines) {
            pf_line = 0;
            ++pf_row;
          }
        }
      };
      // Keys 4 at a time with their prefetches hoisted: one key per iteration with the
      // prefetch tests inside left the 8 FMA chains short of work (10% slower in L2).
      size_t t = 0;
      for (; t + 4 <= kv; t += 4) {
        prefetch(4);
        step(t);
        step(t + 1);
        step(t + 2);
        step(t + 3);
      }
      for (; t < kv; ++t) {
        prefetch(1);
        step(t);
      }
      hn::StoreU(c00, df, o0 + x);
      hn::StoreU(c01, df, o0 + x + nl);
      hn::StoreU(c10, df, o1 + x);
      hn::StoreU(c11, df, o1 + x + nl);
      hn::StoreU(c20, df, o2 + x);
      hn::StoreU(c21, df, o2 + x + nl);
      hn::StoreU(c30, df, o3 + x);
      hn::StoreU(c31, df, o3 + x + nl);
    }
    for (; x < d; x += nl) {
      auto c0 = hn::LoadU(df, o0 + x), c1 = hn::LoadU(df, o1 + x);
      auto c2 = hn::LoadU(df, o2 + x), c3 = hn::LoadU(df, o3 + x);
      for (size_t t = 0; t < kv; ++t) {
        const auto v0 = LoadF32(df, static_cast<const T*>(vrows[t]) + x);
        c0 = hn::MulAdd(hn::Set(df, p0[t]), v0, c0);
        c1 = hn::MulAdd(hn::Set(df, p1[t]), v0, c1);
        c2 = hn::MulAdd(hn::Set(df, p2[t]), v0, c2);
        c3 = hn::MulAdd(hn::Set(df, p3[t]), v0, c3);
      }
      hn::StoreU(c0, df, o0 + x);
      hn::StoreU(c1, df, o1 + x);
      hn::StoreU(c2, df, o2 + x);
      hn::StoreU(c3, df, o3 + x);
    }
  }
  if (r < rows) {  // 1 to 3 rows left: MHA, GQA 2 or 3, or a group not a multiple of 4
    AccumulatePVRemainder<T>(p + r * sp, vrows, o + r * dp, rows - r, kv, d, dp, sp, pf, left,
                             r == 0 ? pf_delta : 0);
  }
  pf.Fetch(left);  // d < 2N: no chunk ran
}

// out = the f32 value a new token's row has once stored in the cache (store_row then
// load_row, bit-exact), computed in registers; int8 mirrors kdr::quantize_row_int8.
// Returns false where this target has no exact SIMD version (the caller falls back).
HWY_INLINE bool RequantizeRowSimd(KvDType dtype, const float* HWY_RESTRICT x, size_t n,
                                  float* HWY_RESTRICT out) {
  const DF8 df;
  const hn::RebindToUnsigned<DF8> du;
  const size_t nl = hn::Lanes(df);
  switch (dtype) {
    case KvDType::kF32:
      RowToF32(x, n, out);
      return true;
    case KvDType::kBF16: {
      // Round to nearest even on the bits, as kdr::f32_to_bf16; NaN stays a quiet NaN.
      const auto one = hn::Set(du, 1u);
      const auto bias = hn::Set(du, 0x7fffu);
      const auto hi = hn::Set(du, 0xffff0000u);
      const auto abs_mask = hn::Set(du, 0x7fffffffu);
      const auto inf = hn::Set(du, 0x7f800000u);
      const auto quiet = hn::Set(du, 0x00400000u);
      for (size_t i = 0; i < n; i += nl) {
        const auto u = hn::BitCast(du, hn::LoadU(df, x + i));
        const auto rounded =
            hn::And(hn::Add(hn::Add(u, bias), hn::And(hn::ShiftRight<16>(u), one)), hi);
        const auto nan = hn::Gt(hn::And(u, abs_mask), inf);
        const auto r = hn::IfThenElse(nan, hn::And(hn::Or(u, quiet), hi), rounded);
        hn::StoreU(hn::BitCast(df, r), df, out + i);
      }
      return true;
    }
    case KvDType::kF16: {
#if HWY_TARGET <= HWY_AVX2 && !defined(HWY_DISABLE_F16C)
      // vcvtps2ph rounds to nearest even, exactly as kdr::f32_to_f16.
      const hn::Rebind<hwy::float16_t, DF8> dh;
      for (size_t i = 0; i < n; i += nl)
        hn::StoreU(hn::PromoteTo(df, hn::DemoteTo(dh, hn::LoadU(df, x + i))), df, out + i);
      return true;
#else
      return false;
#endif
    }
    case KvDType::kInt8: {
      auto vmax = hn::Zero(df);
      for (size_t i = 0; i < n; i += nl) vmax = hn::Max(vmax, hn::Abs(hn::LoadU(df, x + i)));
      const float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
      if (!(amax > 0.0f) || !std::isfinite(amax)) return false;  // rare: exact scalar path
      const auto scale = hn::Set(df, amax / 127.0f);
      const auto inv = hn::Set(df, 127.0f / amax);
      const auto lim = hn::Set(df, 127.0f);
      for (size_t i = 0; i < n; i += nl) {
        const auto r = hn::Round(hn::Mul(hn::LoadU(df, x + i), inv));
        // + 0 turns -0 into +0, as the int8 round trip does.
        const auto q = hn::Add(hn::Min(lim, hn::Max(hn::Neg(lim), r)), hn::Zero(df));
        hn::StoreU(hn::Mul(q, scale), df, out + i);
      }
      return true;
    }
    case KvDType::kFp8E4M3:
      return false;
  }
  return false;
}

}  // namespace HWY_NAMESPACE
}  // namespace rpa
HWY_AFTER_NAMESPACE();

#endif  // RPA_ATTENTION_INL_H_
