// Matmul kernels, compiled once per SIMD target (Highway foreach_target). Private to src/ops.
//
// X stays f32; every weight element is dequantized to f32 as (d * sc) * q + offset with one
// rounding and multiplied into an f32 accumulator. Each output element is one accumulator
// vector over K (lane j sums k = j mod L in increasing k) reduced by SumOfLanes at the end.
// Weights reach the accumulators either straight from their blocks (a single X row) or from
// an L1 cache of dequantized rows shared by up to 64 X rows; both produce the same values in
// the same order, so a row's result is bitwise the same whatever M, its position in X, or the
// thread count (batch invariance).

#if defined(KDR_OPS_MATMUL_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KDR_OPS_MATMUL_INL_H_
#undef KDR_OPS_MATMUL_INL_H_
#else
#define KDR_OPS_MATMUL_INL_H_
#endif

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "base/dtype.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "ops/block_layout.h"
#include "ops/matmul_args.h"
#include "ops/quant.h"

HWY_BEFORE_NAMESPACE();
namespace kdr::ops::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using detail::MatmulArgs;

using DF = hn::ScalableTag<float>;
static_assert(!HWY_HAVE_SCALABLE, "matmul kernels assume fixed-width vectors");

#if HWY_TARGET != HWY_SCALAR
using D32 = hn::Rebind<int32_t, DF>;
using VF = hn::Vec<DF>;
using VI = hn::Vec<D32>;
using DU8F = hn::Rebind<uint8_t, D32>;
using DI8F = hn::Rebind<int8_t, D32>;
constexpr size_t kLF = hn::MaxLanes(DF());  // f32 lanes

HWY_INLINE float LoadF16(const uint8_t* p) {
  const hn::CappedTag<float, 1> d1;
  const hn::Rebind<hwy::float16_t, decltype(d1)> dh;
  return hn::GetLane(hn::PromoteTo(d1, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p))));
}

// kLF unsigned / signed bytes widened to int32 lanes.
HWY_INLINE VI U8x(const uint8_t* p) { return hn::PromoteTo(D32(), hn::LoadU(DU8F(), p)); }
HWY_INLINE VI I8x(const uint8_t* p) {
  return hn::PromoteTo(D32(), hn::LoadU(DI8F(), reinterpret_cast<const int8_t*>(p)));
}
// Every cache line of a block `ahead` bytes on (blocks over 64 bytes span several lines).
template <int kBytes>
HWY_INLINE void PrefetchBlock(const uint8_t* p) {
  for (int off = 0; off < kBytes; off += 64) hwy::Prefetch(p + off);
}
// A weight chunk as f32: q * scale + offset with one rounding. Every f32 weight on this path
// is made here, whether it is cached or consumed at once.
HWY_INLINE VF Dq(VI q, VF scale, VF offset) {
  return hn::MulAdd(hn::ConvertTo(DF(), q), scale, offset);
}

// kQ5Bits32[b][j]: 16 when bit j of byte b is set (the fifth bit of Q5_0 / Q5_1 quants), as
// int32 lanes (8 KiB): a plain vector load ORs a chunk's fifth bits in. A table of bytes
// needs a widening load, which on AVX2 takes a shuffle port that the nibble widening already
// keeps busy (ops_bench --hot, one thread: Q5_0 one-row 5.4 -> 6.45 GB/s median of 10).
struct Q5Bits32 {
  alignas(64) uint32_t v[256][8];
  constexpr Q5Bits32() : v{} {
    for (int b = 0; b < 256; ++b) {
      for (int j = 0; j < 8; ++j) v[b][j] = (b >> j) & 1 ? 16u : 0u;
    }
  }
};
alignas(64) static constexpr Q5Bits32 kQ5Bits32{};

// f32 decoders. Rows<NR>(w, nb, ahead, sink) walks NR weight rows (nb blocks each) in K
// order (prefetching `ahead` bytes beyond each block),
// chunk by chunk, calling sink(c, e, v) with row c's elements [e, e + kLF) as floats. The
// rows are interleaved per chunk so NR independent consumers can run side by side; within a
// row the calls always come in increasing e.

// Q4_0, Q4_1, Q5_0, Q5_1: element j < 16 in the low nibble of byte j, element j + 16 in its
// high nibble, Q5 fifth bits in a 32-bit word. Symmetric types use offset -2^(bits-1) * d.
template <int kBits, bool kAffine>
struct LegacyF32 {
  static constexpr int kBlock = 32;
  static constexpr int kQs = 2 + (kAffine ? 2 : 0) + (kBits == 5 ? 4 : 0);
  static constexpr int kBytes = kQs + 16;
  // A kQ5Bits32 entry holds the fifth bits of 8 elements: one chunk of up to 8 lanes. (AVX-512
  // is not compiled for matmul, see matmul.cc; 16 lanes would need two entries per chunk.)
  static_assert(kBits != 5 || kLF <= 8, "Q5 fifth-bit table lookups cover 8 lanes");
  template <int NR, class Sink>
  static HWY_INLINE void Rows(const uint8_t* const* w, int64_t nb, size_t ahead, Sink&& sink) {
    const DF df;
    const VI nib = hn::Set(D32(), 0xF);
    for (int64_t blk = 0; blk < nb; ++blk) {
      const uint8_t* b[NR];
      VF vd[NR], vm[NR];
      uint32_t qh[NR];
      for (int c = 0; c < NR; ++c) {
        b[c] = w[c] + blk * kBytes;
        PrefetchBlock<kBytes>(b[c] + ahead);
        const float d = LoadF16(b[c]);
        const float m = kAffine ? LoadF16(b[c] + 2) : -static_cast<float>(1 << (kBits - 1)) * d;
        vd[c] = hn::Set(df, d);
        vm[c] = hn::Set(df, m);
        qh[c] = 0;
        if (kBits == 5) std::memcpy(&qh[c], b[c] + (kAffine ? 4 : 2), 4);
      }
      for (size_t half = 0; half < 2; ++half) {
        for (size_t e = 0; e < 16; e += kLF) {
          for (int c = 0; c < NR; ++c) {
            const VI v = U8x(b[c] + kQs + e);
            VI q = half ? hn::ShiftRight<4>(v) : hn::And(v, nib);
            if (kBits == 5) {
              const uint32_t bits = (qh[c] >> (16 * half + e)) & 0xFF;
              q = hn::Or(
                  q, hn::BitCast(D32(), hn::Load(hn::Rebind<uint32_t, D32>(), kQ5Bits32.v[bits])));
            }
            sink(c, blk * 32 + 16 * static_cast<int64_t>(half) + static_cast<int64_t>(e),
                 Dq(q, vd[c], vm[c]));
          }
        }
      }
    }
  }
};

struct Q8_0F32 {
  static constexpr int kBlock = 32;
  template <int NR, class Sink>
  static HWY_INLINE void Rows(const uint8_t* const* w, int64_t nb, size_t ahead, Sink&& sink) {
    const DF df;
    const VF zero = hn::Zero(df);
    for (int64_t blk = 0; blk < nb; ++blk) {
      VF vd[NR];
      for (int c = 0; c < NR; ++c) {
        hwy::Prefetch(w[c] + blk * 34 + ahead);
        vd[c] = hn::Set(df, LoadF16(w[c] + blk * 34));
      }
      for (size_t e = 0; e < 32; e += kLF) {
        for (int c = 0; c < NR; ++c) {
          sink(c, blk * 32 + static_cast<int64_t>(e),
               Dq(I8x(w[c] + blk * 34 + 2 + e), vd[c], zero));
        }
      }
    }
  }
};

// Q4_K / Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins, w = (d * sc) * q - dmin * m.
template <int kBits>
struct Q45KF32 {
  static constexpr int kBlock = 256;
  static constexpr int kBytes = kBits == 4 ? 144 : 176;
  static constexpr int kQs = kBits == 4 ? 16 : 48;
  // The 8 sub-block factors of a block: dsc[j] = d * sc_j and negm[j] = -dmin * m_j, the
  // 6-bit sc_j, m_j unpacked from the 12 bytes at s (as scale_min_k4) a vector at a time:
  // one conversion and one multiply per vector instead of two of each per sub-block.
  static HWY_INLINE void Scales(const uint8_t* s, float d, float dmin, float* dsc, float* negm) {
    static_assert(kLF <= 8, "the 8 factors are made in whole vectors");
    const DF df;
    const D32 di;
    const VI m63 = hn::Set(di, 63), m15 = hn::Set(di, 0xF), m48 = hn::Set(di, 0x30);
    for (size_t j0 = 0; j0 < 8; j0 += kLF) {
      const VI a = U8x(s + j0);        // s[j]
      const VI a4 = U8x(s + j0 + 4);   // s[j + 4]
      const VI am4 = U8x(s + j0 - 4);  // s[j - 4] (for j < 4: the block's d, unused)
      // j < 4: sc = s[j] & 63, m = s[j + 4] & 63. j >= 4: the low 4 bits from s[j + 4], the
      // high 2 from the top bits of s[j - 4] (sc) or s[j] (m).
      const auto low = hn::Lt(hn::Iota(di, static_cast<int32_t>(j0)), hn::Set(di, 4));
      const VI sc = hn::IfThenElse(low, hn::And(a, m63),
                                   hn::Or(hn::And(a4, m15), hn::And(hn::ShiftRight<2>(am4), m48)));
      const VI m = hn::IfThenElse(
          low, hn::And(a4, m63), hn::Or(hn::ShiftRight<4>(a4), hn::And(hn::ShiftRight<2>(a), m48)));
      hn::Store(hn::Mul(hn::ConvertTo(df, sc), hn::Set(df, d)), df, dsc + j0);
      hn::Store(hn::Mul(hn::ConvertTo(df, m), hn::Set(df, -dmin)), df, negm + j0);
    }
  }
  // Sub-block kS (32 elements), its nibble and fifth bit known at compile time.
  template <int kS, int NR, class Sink>
  static HWY_INLINE void Sub(const uint8_t* const* b, const float (*dsc)[8], const float (*negm)[8],
                             int64_t e0, Sink& sink) {
    const DF df;
    const VI nib = hn::Set(D32(), 0xF), one = hn::Set(D32(), 1);
    VF vd[NR], vm[NR];
    for (int c = 0; c < NR; ++c) {
      vd[c] = hn::Set(df, dsc[c][kS]);
      vm[c] = hn::Set(df, negm[c][kS]);
    }
    for (size_t l = 0; l < 32; l += kLF) {
      for (int c = 0; c < NR; ++c) {
        VI q = U8x(b[c] + kQs + (kS / 2) * 32 + l);
        if constexpr (kS % 2 != 0) {
          q = hn::ShiftRight<4>(q);
        } else {
          q = hn::And(q, nib);
        }
        if constexpr (kBits == 5) {
          const VI h = hn::And(hn::ShiftRight<kS>(U8x(b[c] + 16 + l)), one);
          q = hn::Or(q, hn::ShiftLeft<4>(h));
        }
        sink(c, e0 + kS * 32 + static_cast<int64_t>(l), Dq(q, vd[c], vm[c]));
      }
    }
  }
  template <int NR, class Sink, int... kS>
  static HWY_INLINE void Block(const uint8_t* const* b, const float (*dsc)[8],
                               const float (*negm)[8], int64_t e0, Sink& sink,
                               std::integer_sequence<int, kS...>) {
    (Sub<kS, NR>(b, dsc, negm, e0, sink), ...);
  }
  template <int NR, class Sink>
  static HWY_INLINE void Rows(const uint8_t* const* w, int64_t nb, size_t ahead, Sink&& sink) {
    for (int64_t blk = 0; blk < nb; ++blk) {
      const uint8_t* b[NR];
      alignas(32) float dsc[NR][8], negm[NR][8];
      for (int c = 0; c < NR; ++c) {
        b[c] = w[c] + blk * kBytes;
        PrefetchBlock<kBytes>(b[c] + ahead);
        Scales(b[c] + 4, LoadF16(b[c]), LoadF16(b[c] + 2), dsc[c], negm[c]);
      }
      Block<NR>(b, dsc, negm, blk * 256, sink, std::make_integer_sequence<int, 8>());
    }
  }
};

// Q6_K: 16 groups of 16 with int8 scales, w = (d * sc) * (q - 32).
struct Q6KF32 {
  static constexpr int kBlock = 256;
  // Group kG (16 elements): low 4 bits from ql, high 2 bits from qh, shifts known at compile
  // time.
  template <size_t kG, int NR, class Sink>
  static HWY_INLINE void Group(const uint8_t* const* b, const float (*dsc)[16],
                               const float (*off)[16], int64_t e0, Sink& sink) {
    const DF df;
    const VI nib = hn::Set(D32(), 0xF), hi2 = hn::Set(D32(), 0x30);
    constexpr size_t n = kG / 8, t = (kG / 2) % 4, e_lo = (kG % 2) * 16;
    VF vd[NR], vo[NR];
    for (int c = 0; c < NR; ++c) {
      vd[c] = hn::Set(df, dsc[c][kG]);
      vo[c] = hn::Set(df, off[c][kG]);
    }
    for (size_t e = e_lo; e < e_lo + 16; e += kLF) {
      for (int c = 0; c < NR; ++c) {
        VI q = U8x(b[c] + n * 64 + (t % 2) * 32 + e);
        if constexpr (t / 2 != 0) {
          q = hn::ShiftRight<4>(q);
        } else {
          q = hn::And(q, nib);
        }
        // Bits 2t, 2t + 1 of the qh byte moved to bits 4, 5 by one shift.
        VI h = U8x(b[c] + 128 + n * 32 + e);
        if constexpr (t < 2) {
          h = hn::ShiftLeft<4 - 2 * t>(h);
        } else if constexpr (t == 3) {
          h = hn::ShiftRight<2>(h);
        }
        sink(c, e0 + static_cast<int64_t>(kG * 16 + e % 16),
             Dq(hn::Or(q, hn::And(h, hi2)), vd[c], vo[c]));
      }
    }
  }
  template <int NR, class Sink, size_t... kG>
  static HWY_INLINE void Block(const uint8_t* const* b, const float (*dsc)[16],
                               const float (*off)[16], int64_t e0, Sink& sink,
                               std::index_sequence<kG...>) {
    (Group<kG, NR>(b, dsc, off, e0, sink), ...);
  }
  template <int NR, class Sink>
  static HWY_INLINE void Rows(const uint8_t* const* w, int64_t nb, size_t ahead, Sink&& sink) {
    const DF df;
    const VF m32 = hn::Set(df, -32.0f);
    for (int64_t blk = 0; blk < nb; ++blk) {
      const uint8_t* b[NR];
      // Per group g: dsc = d * sc_g and off = -32 * dsc (exact), a vector of groups at a time.
      alignas(32) float dsc[NR][16], off[NR][16];
      for (int c = 0; c < NR; ++c) {
        b[c] = w[c] + blk * 210;
        PrefetchBlock<210>(b[c] + ahead);
        const VF d = hn::Set(df, LoadF16(b[c] + 208));
        for (size_t g = 0; g < 16; g += kLF) {
          const VF v = hn::Mul(hn::ConvertTo(df, I8x(b[c] + 192 + g)), d);
          hn::Store(v, df, dsc[c] + g);
          hn::Store(hn::Mul(v, m32), df, off[c] + g);
        }
      }
      Block<NR>(b, dsc, off, blk * 256, sink, std::make_index_sequence<16>());
    }
  }
};

// Q2_K: 16 groups of 16 with 4-bit scales and mins, 2-bit quants, w = (d * sc) * q - dmin * m.
struct Q2KF32 {
  static constexpr int kBlock = 256;
  template <int NR, class Sink>
  static HWY_INLINE void Rows(const uint8_t* const* w, int64_t nb, size_t ahead, Sink&& sink) {
    const DF df;
    const VI three = hn::Set(D32(), 3);
    for (int64_t blk = 0; blk < nb; ++blk) {
      const uint8_t* b[NR];
      float d[NR], dmin[NR];
      for (int c = 0; c < NR; ++c) {
        b[c] = w[c] + blk * 84;
        PrefetchBlock<84>(b[c] + ahead);
        d[c] = LoadF16(b[c] + 80);
        dmin[c] = LoadF16(b[c] + 82);
      }
      for (size_t g = 0; g < 16; ++g) {
        VF vd[NR], vm[NR];
        for (int c = 0; c < NR; ++c) {
          vd[c] = hn::Set(df, d[c] * static_cast<float>(b[c][g] & 0xF));
          vm[c] = hn::Set(df, -dmin[c] * static_cast<float>(b[c][g] >> 4));
        }
        const size_t n = g / 8, j = (g / 2) % 4;
        for (size_t e = (g % 2) * 16; e < (g % 2) * 16 + 16; e += kLF) {
          for (int c = 0; c < NR; ++c) {
            const VI q = hn::And(
                hn::ShiftRightSame(U8x(b[c] + 16 + n * 32 + e), static_cast<int>(2 * j)), three);
            sink(c, blk * 256 + static_cast<int64_t>(g * 16 + e % 16), Dq(q, vd[c], vm[c]));
          }
        }
      }
    }
  }
};

// Q3_K: 16 groups of 16 with signed 6-bit scales, 2 low bits plus a high bit from hmask,
// w = (d * sc) * (q - 4).
struct Q3KF32 {
  static constexpr int kBlock = 256;
  template <int NR, class Sink>
  static HWY_INLINE void Rows(const uint8_t* const* w, int64_t nb, size_t ahead, Sink&& sink) {
    const DF df;
    const VI three = hn::Set(D32(), 3), one = hn::Set(D32(), 1);
    for (int64_t blk = 0; blk < nb; ++blk) {
      const uint8_t* b[NR];
      float d[NR];
      for (int c = 0; c < NR; ++c) {
        b[c] = w[c] + blk * 110;
        PrefetchBlock<110>(b[c] + ahead);
        d[c] = LoadF16(b[c] + 108);
      }
      for (size_t g = 0; g < 16; ++g) {
        VF vd[NR], vo[NR];
        for (int c = 0; c < NR; ++c) {
          const float dg = d[c] * static_cast<float>(scale_q3k(static_cast<int>(g), b[c] + 96));
          vd[c] = hn::Set(df, dg);
          vo[c] = hn::Set(df, -4.0f * dg);
        }
        const size_t n = g / 8, j = (g / 2) % 4;
        for (size_t e = (g % 2) * 16; e < (g % 2) * 16 + 16; e += kLF) {
          for (int c = 0; c < NR; ++c) {
            const VI lo = hn::And(
                hn::ShiftRightSame(U8x(b[c] + 32 + n * 32 + e), static_cast<int>(2 * j)), three);
            const VI hi =
                hn::And(hn::ShiftRightSame(U8x(b[c] + e), static_cast<int>(4 * n + j)), one);
            sink(c, blk * 256 + static_cast<int64_t>(g * 16 + e % 16),
                 Dq(hn::Or(lo, hn::ShiftLeft<2>(hi)), vd[c], vo[c]));
          }
        }
      }
    }
  }
};

template <int MR, int NR>
HWY_INLINE void DotCachedF32(const MatmulArgs& a, int64_t m0, const float* wc, int64_t n0) {
  const DF df;
  const int64_t L = static_cast<int64_t>(kLF);
  const float* xr[MR];
  VF acc[MR][NR];
  for (int r = 0; r < MR; ++r) {
    xr[r] = a.x + (m0 + r) * a.x_stride;
    for (int c = 0; c < NR; ++c) acc[r][c] = hn::Zero(df);
  }
  for (int64_t kk = 0; kk < a.k; kk += L) {
    VF w[NR];
    for (int c = 0; c < NR; ++c) w[c] = hn::LoadU(df, wc + c * a.k + kk);
    for (int r = 0; r < MR; ++r) {
      const VF xv = hn::LoadU(df, xr[r] + kk);
      for (int c = 0; c < NR; ++c) acc[r][c] = hn::MulAdd(w[c], xv, acc[r][c]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < NR; ++c) {
      a.y[(m0 + r) * a.y_stride + n0 + c] = hn::GetLane(hn::SumOfLanes(df, acc[r][c]));
    }
  }
}

template <int NR>
HWY_NOINLINE void CachedRowsF32(const MatmulArgs& a, int64_t m0, int64_t m1, const float* wc,
                                int64_t n0) {
  int64_t m = m0;
  for (; m + 4 <= m1; m += 4) DotCachedF32<4, NR>(a, m, wc, n0);
  switch (m1 - m) {
    case 3:
      return DotCachedF32<3, NR>(a, m, wc, n0);
    case 2:
      return DotCachedF32<2, NR>(a, m, wc, n0);
    case 1:
      return DotCachedF32<1, NR>(a, m, wc, n0);
    default:
      return;
  }
}

// Weight bytes are prefetched this far ahead of the ones being decoded. Weight rows of a tile
// are contiguous, so this runs ahead of the whole stream; one-row decodes of weights that come
// from memory run at ~75% of the read bandwidth 4 rows (~3 KB) ahead and ~90% at 8-16 KB
// (ops_bench, Q8_0 262144 x 640).
constexpr size_t kPrefetchBytes = 12 << 10;
constexpr int kNR = 3;   // weight rows per cached group: 4 x 3 accumulators + 3 + 1 registers
constexpr int kNR1 = 2;  // weight rows decoded side by side for a single X row (4: spills)

// Rows [m0, m1) x columns [n0, n1). With one X row, kNR1 weight rows are decoded side by side
// straight into their accumulators; otherwise kNR rows at a time are dequantized into an
// L1-resident cache and dotted with every X row of the tile. Both make the same weight values
// and add them in the same order, so the result does not depend on which ran.
template <class Dec>
HWY_NOINLINE void TileF32(const MatmulArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const DF df;
  const int64_t nb = a.k / Dec::kBlock;
  int64_t n = n0;
  if (m1 - m0 == 1) {
    const float* x = a.x + m0 * a.x_stride;
    for (; n + kNR1 <= n1; n += kNR1) {
      const uint8_t* w[kNR1];
      VF acc[kNR1];
      for (int c = 0; c < kNR1; ++c) {
        w[c] = a.w + static_cast<size_t>(n + c) * a.w_stride;
        acc[c] = hn::Zero(df);
      }
      Dec::template Rows<kNR1>(w, nb, kPrefetchBytes, [&](int c, int64_t e, VF v) HWY_ATTR {
        acc[c] = hn::MulAdd(v, hn::LoadU(df, x + e), acc[c]);
      });
      for (int c = 0; c < kNR1; ++c) {
        a.y[m0 * a.y_stride + n + c] = hn::GetLane(hn::SumOfLanes(df, acc[c]));
      }
    }
  }
  thread_local std::vector<float> cache;
  cache.resize(static_cast<size_t>(kNR * a.k));
  float* const wc = cache.data();
  for (; n < n1; n += kNR) {
    const int nr = static_cast<int>(std::min<int64_t>(kNR, n1 - n));
    for (int c = 0; c < nr; ++c) {
      const uint8_t* w[1] = {a.w + static_cast<size_t>(n + c) * a.w_stride};
      float* out = wc + c * a.k;
      Dec::template Rows<1>(w, nb, kPrefetchBytes,
                            [&](int, int64_t e, VF v) HWY_ATTR { hn::StoreU(v, df, out + e); });
    }
    switch (nr) {
      case 3:
        CachedRowsF32<3>(a, m0, m1, wc, n);
        break;
      case 2:
        CachedRowsF32<2>(a, m0, m1, wc, n);
        break;
      default:
        CachedRowsF32<1>(a, m0, m1, wc, n);
        break;
    }
  }
}

#endif  // HWY_TARGET != HWY_SCALAR

#if HWY_TARGET == HWY_SCALAR
// No vectors: the reference dequantization and one sequential sum per element.
HWY_NOINLINE void TileScalar(const MatmulArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  thread_local std::vector<float> row;
  row.resize(static_cast<size_t>(a.k));
  for (int64_t n = n0; n < n1; ++n) {
    dequantize_row(a.type, a.w + static_cast<size_t>(n) * a.w_stride, row.data(), a.k);
    for (int64_t m = m0; m < m1; ++m) {
      const float* x = a.x + m * a.x_stride;
      float s = 0;
      for (int64_t t = 0; t < a.k; ++t) s += row[static_cast<size_t>(t)] * x[t];
      a.y[m * a.y_stride + n] = s;
    }
  }
}
#endif

HWY_INLINE float ScalarWeight(const float* w, int64_t i) { return w[i]; }
HWY_INLINE float ScalarWeight(const hwy::float16_t* w, int64_t i) {
  uint16_t h;
  std::memcpy(&h, w + i, 2);
  return kdr::f16_to_f32(h);
}
HWY_INLINE float ScalarWeight(const hwy::bfloat16_t* w, int64_t i) {
  uint16_t h;
  std::memcpy(&h, w + i, 2);
  return kdr::bf16_to_f32(h);
}
template <class DFull>
HWY_INLINE hn::Vec<DFull> LoadWeights(DFull df, const float* w) {
  return hn::LoadU(df, w);
}
template <class DFull, typename T>
HWY_INLINE hn::Vec<DFull> LoadWeights(DFull df, const T* w) {
  return hn::PromoteTo(df, hn::LoadU(hn::Rebind<T, DFull>(), w));
}

// Y[m0..m0+MR)[n] for a float / f16 / bf16 weight row: two FMA chains per element.
template <typename WT, int MR>
HWY_INLINE void DotRowsFloat(const MatmulArgs& a, int64_t m0, int64_t n) {
  const DF df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));
  const WT* w = reinterpret_cast<const WT*>(a.w + static_cast<size_t>(n) * a.w_stride);
  const float* xr[MR];
  hn::Vec<DF> acc0[MR], acc1[MR];
  for (int r = 0; r < MR; ++r) {
    xr[r] = a.x + (m0 + r) * a.x_stride;
    acc0[r] = acc1[r] = hn::Zero(df);
  }
  int64_t k = 0;
  for (; k + 2 * L <= a.k; k += 2 * L) {
    const auto w0 = LoadWeights(df, w + k), w1 = LoadWeights(df, w + k + L);
    for (int r = 0; r < MR; ++r) {
      acc0[r] = hn::MulAdd(w0, hn::LoadU(df, xr[r] + k), acc0[r]);
      acc1[r] = hn::MulAdd(w1, hn::LoadU(df, xr[r] + k + L), acc1[r]);
    }
  }
  for (; k + L <= a.k; k += L) {
    const auto w0 = LoadWeights(df, w + k);
    for (int r = 0; r < MR; ++r) acc0[r] = hn::MulAdd(w0, hn::LoadU(df, xr[r] + k), acc0[r]);
  }
  for (int r = 0; r < MR; ++r) {
    float v = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0[r], acc1[r])));
    for (int64_t t = k; t < a.k; ++t) v += ScalarWeight(w, t) * xr[r][t];
    a.y[(m0 + r) * a.y_stride + n] = v;
  }
}

template <typename WT>
struct FloatKernel {
  template <int MR>
  static HWY_INLINE void Run(const MatmulArgs& a, int64_t m0, int64_t n) {
    DotRowsFloat<WT, MR>(a, m0, n);
  }
};

// Float weights: rows [m0, m1) x columns [n0, n1), each weight row read once per 4 X rows.
template <class Kernel>
HWY_NOINLINE void Tile(const MatmulArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    int64_t m = m0;
    for (; m + 4 <= m1; m += 4) Kernel::template Run<4>(a, m, n);
    switch (m1 - m) {
      case 3:
        Kernel::template Run<3>(a, m, n);
        break;
      case 2:
        Kernel::template Run<2>(a, m, n);
        break;
      case 1:
        Kernel::template Run<1>(a, m, n);
        break;
      default:
        break;
    }
  }
}

void MatmulTile(const MatmulArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  switch (a.type) {
    case DType::F32:
      return Tile<FloatKernel<float>>(a, m0, m1, n0, n1);
    case DType::F16:
      return Tile<FloatKernel<hwy::float16_t>>(a, m0, m1, n0, n1);
    case DType::BF16:
      return Tile<FloatKernel<hwy::bfloat16_t>>(a, m0, m1, n0, n1);
    default:
      break;
  }
#if HWY_TARGET == HWY_SCALAR
  return TileScalar(a, m0, m1, n0, n1);
#else
  switch (a.type) {
    case DType::Q8_0:
      return TileF32<Q8_0F32>(a, m0, m1, n0, n1);
    case DType::Q4_0:
      return TileF32<LegacyF32<4, false>>(a, m0, m1, n0, n1);
    case DType::Q4_1:
      return TileF32<LegacyF32<4, true>>(a, m0, m1, n0, n1);
    case DType::Q5_0:
      return TileF32<LegacyF32<5, false>>(a, m0, m1, n0, n1);
    case DType::Q5_1:
      return TileF32<LegacyF32<5, true>>(a, m0, m1, n0, n1);
    case DType::Q2_K:
      return TileF32<Q2KF32>(a, m0, m1, n0, n1);
    case DType::Q3_K:
      return TileF32<Q3KF32>(a, m0, m1, n0, n1);
    case DType::Q4_K:
      return TileF32<Q45KF32<4>>(a, m0, m1, n0, n1);
    case DType::Q5_K:
      return TileF32<Q45KF32<5>>(a, m0, m1, n0, n1);
    case DType::Q6_K:
      return TileF32<Q6KF32>(a, m0, m1, n0, n1);
    default:
      return;  // float types and Q8_K never come here
  }
#endif
}

}  // namespace kdr::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // KDR_OPS_MATMUL_INL_H_
