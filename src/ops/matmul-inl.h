// Matmul kernels, compiled once per SIMD target (Highway foreach_target). Private to src/ops.
//
// Every output element is produced by one "row dot": a loop over K in a fixed order whose
// per-element arithmetic does not depend on how many X rows (MR) share the decoded weights.
// That is what makes matmul batch invariant.

#ifndef KDR_OPS_MATMUL_ARGS_H_
#define KDR_OPS_MATMUL_ARGS_H_
#include <cstddef>
#include <cstdint>

#include "ops/quant.h"

namespace kdr::ops::detail {

// X after quantization to 8-bit blocks (values kept as int16 so the kernels can feed them to
// 16-bit multiply-adds without widening per use).
struct QuantizedActs {
  const int16_t* q = nullptr;      // [m][k] quants, |q| <= 127
  const float* d = nullptr;        // [m][k/block] scale of each block
  const float* dsum = nullptr;     // [m][k/block] d * sum(q) of each block (legacy types)
  const int16_t* bsums = nullptr;  // [m][k/16] sums of groups of 16 quants (K-quants)
};

struct MatmulArgs {
  GgmlType type;
  const uint8_t* w;  // weight rows
  size_t w_stride;   // bytes between weight rows
  int64_t k;
  const float* x;  // float weights: X itself
  int64_t x_stride;
  QuantizedActs acts;  // quantized weights: X quantized
  float* y;
  int64_t y_stride;
};

}  // namespace kdr::ops::detail
#endif  // KDR_OPS_MATMUL_ARGS_H_

#if defined(KDR_OPS_MATMUL_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KDR_OPS_MATMUL_INL_H_
#undef KDR_OPS_MATMUL_INL_H_
#else
#define KDR_OPS_MATMUL_INL_H_
#endif

#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/dtype.h"
#include "hwy/highway.h"
#include "ops/block_layout.h"

HWY_BEFORE_NAMESPACE();
namespace kdr::ops::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using detail::MatmulArgs;
// At most 16 int16 lanes: block layouts repeat every 16 elements, so chunks never straddle.
using D16 = hn::CappedTag<int16_t, 16>;
using D32 = hn::Repartition<int32_t, D16>;
using DF = hn::Repartition<float, D16>;
using DU8 = hn::Rebind<uint8_t, D16>;
using DI8 = hn::Rebind<int8_t, D16>;
using V16 = hn::Vec<D16>;

HWY_INLINE float LoadF16(const uint8_t* p) {
  const hn::CappedTag<float, 1> d1;
  const hn::Rebind<hwy::float16_t, decltype(d1)> dh;
  return hn::GetLane(hn::PromoteTo(d1, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p))));
}

// Lanes per int16 chunk; fixed at compile time so chunk offsets and shifts are constants.
static_assert(!HWY_HAVE_SCALABLE, "matmul kernels assume fixed-width vectors");
constexpr size_t kL = hn::MaxLanes(D16());

// Unsigned bytes [p, p+L) widened to int16 lanes.
HWY_INLINE V16 Bytes(const uint8_t* p) { return hn::PromoteTo(D16(), hn::LoadU(DU8(), p)); }
template <int kShift, int kMask>
HWY_INLINE V16 Bits(V16 v) {
  return hn::And(hn::ShiftRight<kShift>(v), hn::Set(D16(), static_cast<int16_t>(kMask)));
}

// Lane i holds 1 << i: tests bit (e0 + i) of a Q5 high-bit word.
alignas(64) static constexpr int16_t kLaneBit[16] = {
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, -32768};

// High bits (value 16) of elements [e0, e0+L) of a Q5_0 / Q5_1 block.
HWY_INLINE V16 Q5High(uint32_t qh, size_t e0) {
  const D16 d16;
  const auto word = hn::Set(d16, static_cast<int16_t>(static_cast<uint16_t>(qh >> e0)));
  const auto bit = hn::Load(d16, kLaneBit);
  return hn::IfThenElseZero(hn::TestBit(word, bit), hn::Set(d16, 16));
}

// --- weight block decoders -----------------------------------------------------------------
// Begin() reads a block's scales; Chunk<e0>() returns elements [e0, e0+L) as int16, already
// multiplied by their sub-block scale for K-quants. kMin1: legacy min (x = d*q + m);
// kMinK: K-quant mins (x = d*sc*q - dmin*m per 16-group).

struct DecQ8_0 {
  static constexpr int kBlock = 32, kBytes = 34;
  static constexpr bool kMin1 = false, kMinK = false;
  const uint8_t* b;
  float d;
  HWY_INLINE void Begin(const uint8_t* blk) {
    b = blk;
    d = LoadF16(blk);
  }
  template <size_t kE0>
  HWY_INLINE V16 Chunk() const {
    return hn::PromoteTo(D16(), hn::LoadU(DI8(), reinterpret_cast<const int8_t*>(b + 2 + kE0)));
  }
};

// kQ5Lut[b][j]: 16 when bit j of byte b is set (the fifth bit of Q5_0 / Q5_1 quants).
struct Q5Lut {
  alignas(64) int16_t v[256][8];
  constexpr Q5Lut() : v{} {
    for (int b = 0; b < 256; ++b) {
      for (int j = 0; j < 8; ++j) v[b][j] = static_cast<int16_t>((b >> j) & 1 ? 16 : 0);
    }
  }
};
alignas(64) static constexpr Q5Lut kQ5Lut{};

// The same as Q5High from two table rows: fewer vector instructions per chunk.
HWY_INLINE V16 Q5HighLut(uint32_t qh, size_t e0) {
#if HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128
  return Q5High(qh, e0);
#else
  if constexpr (kL == 16) {
    const hn::Half<D16> dh;
    const auto lo = hn::Load(dh, kQ5Lut.v[(qh >> e0) & 0xFF]);
    const auto hi = hn::Load(dh, kQ5Lut.v[(qh >> (e0 + 8)) & 0xFF]);
    return hn::Combine(D16(), hi, lo);
  } else if constexpr (kL == 8) {
    return hn::Load(D16(), kQ5Lut.v[(qh >> e0) & 0xFF]);
  } else {
    return Q5High(qh, e0);
  }
#endif
}

// The symmetric types (Q4_0, Q5_0: x = d * (q - 2^(bits-1))) are decoded as affine ones with
// m = -2^(bits-1) * d, so the offset is paid once per block (m * d_x * sum(q_x)) rather than
// subtracted from every weight.
template <int kBits, bool kAffine>
struct DecLegacy {  // Q4_0, Q4_1, Q5_0, Q5_1
  static constexpr int kBlock = 32;
  static constexpr int kQs = 2 + (kAffine ? 2 : 0) + (kBits == 5 ? 4 : 0);
  static constexpr int kBytes = kQs + 16;
  static constexpr bool kMin1 = true, kMinK = false;
  const uint8_t* b;
  float d, m = 0;
  uint32_t qh = 0;
  HWY_INLINE void Begin(const uint8_t* blk) {
    b = blk;
    d = LoadF16(blk);
    m = kAffine ? LoadF16(blk + 2) : -static_cast<float>(1 << (kBits - 1)) * d;
    if (kBits == 5) std::memcpy(&qh, blk + (kAffine ? 4 : 2), 4);
  }
  template <size_t kE0>
  HWY_INLINE V16 Chunk() const {
    V16 q = Bits < kE0 < 16 ? 0 : 4, 0xF > (Bytes(b + kQs + kE0 % 16));
    if (kBits == 5) q = hn::Or(q, Q5HighLut(qh, kE0));
    return q;
  }
};

struct DecKBase {
  static constexpr int kBlock = 256;
  const uint8_t* b;
  float d, dmin = 0;
  alignas(32) int16_t sc16[16];  // scale of each group of 16
  alignas(32) int16_t m16[16];   // min of each group of 16
  template <size_t kE0>
  HWY_INLINE V16 Scaled(V16 q) const {
    return hn::Mul(q, hn::Set(D16(), sc16[kE0 / 16]));
  }
};

struct DecQ2_K : DecKBase {
  static constexpr int kBytes = 84;
  static constexpr bool kMin1 = false, kMinK = true;
  HWY_INLINE void Begin(const uint8_t* blk) {
    b = blk;
    for (int g = 0; g < 16; ++g) {
      sc16[g] = static_cast<int16_t>(blk[g] & 0xF);
      m16[g] = static_cast<int16_t>(blk[g] >> 4);
    }
    d = LoadF16(blk + 80);
    dmin = LoadF16(blk + 82);
  }
  template <size_t kE0>
  HWY_INLINE V16 Chunk() const {
    constexpr size_t n = kE0 / 128, j = (kE0 / 32) % 4, l = kE0 % 32;
    return Scaled<kE0>(Bits<2 * j, 3>(Bytes(b + 16 + n * 32 + l)));
  }
};

struct DecQ3_K : DecKBase {
  static constexpr int kBytes = 110;
  static constexpr bool kMin1 = false, kMinK = false;
  HWY_INLINE void Begin(const uint8_t* blk) {
    b = blk;
    for (int g = 0; g < 16; ++g) sc16[g] = static_cast<int16_t>(scale_q3k(g, blk + 96));
    d = LoadF16(blk + 108);
  }
  template <size_t kE0>
  HWY_INLINE V16 Chunk() const {
    constexpr size_t n = kE0 / 128, j = (kE0 / 32) % 4, l = kE0 % 32;
    const V16 lo = Bits<2 * j, 3>(Bytes(b + 32 + n * 32 + l));
    const V16 hi = hn::ShiftLeft<2>(Bits<4 * n + j, 1>(Bytes(b + l)));
    return Scaled<kE0>(hn::Sub(hn::Or(lo, hi), hn::Set(D16(), 4)));
  }
};

template <int kBits>
struct DecQ45_K : DecKBase {  // Q4_K, Q5_K
  static constexpr int kBytes = kBits == 4 ? 144 : 176;
  static constexpr bool kMin1 = false, kMinK = true;
  HWY_INLINE void Begin(const uint8_t* blk) {
    b = blk;
    d = LoadF16(blk);
    dmin = LoadF16(blk + 2);
    for (int s = 0; s < 8; ++s) {
      int sc, m;
      scale_min_k4(s, blk + 4, &sc, &m);
      sc16[2 * s] = sc16[2 * s + 1] = static_cast<int16_t>(sc);
      m16[2 * s] = m16[2 * s + 1] = static_cast<int16_t>(m);
    }
  }
  template <size_t kE0>
  HWY_INLINE V16 Chunk() const {
    constexpr size_t s = kE0 / 32, l = kE0 % 32;
    V16 q = Bits<4 * (s % 2), 0xF>(Bytes(b + (kBits == 4 ? 16 : 48) + (s / 2) * 32 + l));
    if (kBits == 5) q = hn::Or(q, hn::ShiftLeft<4>(Bits<s, 1>(Bytes(b + 16 + l))));
    return Scaled<kE0>(q);
  }
};

struct DecQ6_K : DecKBase {
  static constexpr int kBytes = 210;
  static constexpr bool kMin1 = false, kMinK = false;
  HWY_INLINE void Begin(const uint8_t* blk) {
    b = blk;
    for (int g = 0; g < 16; ++g) sc16[g] = static_cast<int8_t>(blk[192 + g]);
    d = LoadF16(blk + 208);
  }
  template <size_t kE0>
  HWY_INLINE V16 Chunk() const {
    constexpr size_t n = kE0 / 128, t = (kE0 / 32) % 4, l = kE0 % 32;
    const V16 lo = Bits<4 * (t / 2), 0xF>(Bytes(b + n * 64 + (t % 2) * 32 + l));
    const V16 hi = hn::ShiftLeft<4>(Bits<2 * t, 3>(Bytes(b + 128 + n * 32 + l)));
    return Scaled<kE0>(hn::Sub(hn::Or(lo, hi), hn::Set(D16(), 32)));
  }
};

// --- row dots --------------------------------------------------------------------------------

// isum[r] += the integer dot of one decoded weight block with X row r's quants at x0.
template <class Dec, int MR, size_t... kC>
HWY_INLINE void BlockDot(const Dec& dec, const int16_t* const* xq, int64_t x0, hn::Vec<D32>* isum,
                         hn::Vec<D32>* isum1, std::index_sequence<kC...>) {
  const D16 d16;
  const D32 d32;
  const auto step = [&](auto chunk) {
    constexpr size_t e = decltype(chunk)::value * kL;
    const V16 q = dec.template Chunk<e>();
    for (int r = 0; r < MR; ++r) {
      const V16 y = hn::LoadU(d16, xq[r] + x0 + static_cast<int64_t>(e));
      isum[r] = hn::ReorderWidenMulAccumulate(d32, q, y, isum[r], isum1[r]);
    }
  };
  (step(std::integral_constant<size_t, kC>()), ...);
}

// Y[m0..m0+MR)[n] for a quantized weight row n.
template <class Dec, int MR>
HWY_INLINE void DotRowsQuant(const MatmulArgs& a, int64_t m0, int64_t n) {
  const D16 d16;
  const D32 d32;
  const DF df;
  constexpr int kB = Dec::kBlock;
  const int64_t nb = a.k / kB;
  const uint8_t* wrow = a.w + static_cast<size_t>(n) * a.w_stride;
  const int16_t* xq[MR];
  const float* xd[MR];
  hn::Vec<DF> acc[MR], accm[MR];
  float acc1[MR];
  for (int r = 0; r < MR; ++r) {
    xq[r] = a.acts.q + (m0 + r) * a.k;
    xd[r] = a.acts.d + (m0 + r) * nb;
    acc[r] = hn::Zero(df);
    accm[r] = hn::Zero(df);
    acc1[r] = 0;
  }
  Dec dec;
  for (int64_t blk = 0; blk < nb; ++blk) {
    dec.Begin(wrow + blk * Dec::kBytes);
    hn::Vec<D32> isum[MR], isum1[MR];
    for (int r = 0; r < MR; ++r) isum[r] = isum1[r] = hn::Zero(d32);
    BlockDot<Dec, MR>(dec, xq, blk * kB, isum, isum1, std::make_index_sequence<kB / kL>());
    for (int r = 0; r < MR; ++r) {
      const float dy = xd[r][blk];
      const auto total = hn::RearrangeToOddPlusEven(isum[r], isum1[r]);
      acc[r] = hn::MulAdd(hn::ConvertTo(df, total), hn::Set(df, dec.d * dy), acc[r]);
      if constexpr (Dec::kMinK) {
        const int16_t* bs = a.acts.bsums + (m0 + r) * (a.k / 16) + blk * 16;
        auto im = hn::Zero(d32), im1 = hn::Zero(d32);
        for (size_t g = 0; g < 16; g += kL) {
          im = hn::ReorderWidenMulAccumulate(d32, hn::Load(d16, dec.m16 + g),
                                             hn::LoadU(d16, bs + g), im, im1);
        }
        im = hn::RearrangeToOddPlusEven(im, im1);
        accm[r] = hn::MulAdd(hn::ConvertTo(df, im), hn::Set(df, dec.dmin * dy), accm[r]);
      }
      if constexpr (Dec::kMin1) acc1[r] += dec.m * a.acts.dsum[(m0 + r) * nb + blk];
    }
  }
  for (int r = 0; r < MR; ++r) {
    float v = hn::GetLane(hn::SumOfLanes(df, acc[r]));
    if constexpr (Dec::kMinK) v -= hn::GetLane(hn::SumOfLanes(df, accm[r]));
    if constexpr (Dec::kMin1) v += acc1[r];
    a.y[(m0 + r) * a.y_stride + n] = v;
  }
}

// --- decoded-row cache ------------------------------------------------------------------
// With more than 4 X rows, decoding a weight row again for every group of 4 rows costs more
// than the dot products. So each weight row is decoded once into blocks of int16 values plus
// their scales (one row: k int16, L1-resident) and DecCached reads it back through the same
// Begin/Chunk interface. The values and the arithmetic per output element are unchanged, so
// results are bitwise identical to the direct path (batch invariance holds).
template <class Dec>
struct alignas(32) CachedBlock {
  int16_t q[Dec::kBlock];
  int16_t m16[16];  // K-quant mins (kMinK)
  float d, m, dmin;
};

template <class Dec>
struct DecCached {
  static constexpr int kBlock = Dec::kBlock;
  static constexpr int kBytes = sizeof(CachedBlock<Dec>);
  static constexpr bool kMin1 = Dec::kMin1, kMinK = Dec::kMinK;
  const CachedBlock<Dec>* c;
  float d, m, dmin;
  const int16_t* m16;
  HWY_INLINE void Begin(const uint8_t* p) {
    c = reinterpret_cast<const CachedBlock<Dec>*>(p);
    d = c->d;
    m = c->m;
    dmin = c->dmin;
    m16 = c->m16;
  }
  template <size_t kE0>
  HWY_INLINE V16 Chunk() const {
    return hn::Load(D16(), c->q + kE0);
  }
};

template <class Dec, size_t... kC>
HWY_INLINE void DecodeBlock(const uint8_t* blk, CachedBlock<Dec>* out, std::index_sequence<kC...>) {
  Dec dec;
  dec.Begin(blk);
  (hn::Store(dec.template Chunk<kC * kL>(), D16(), out->q + kC * kL), ...);
  out->d = dec.d;
  out->m = 0;
  out->dmin = 0;
  if constexpr (Dec::kMin1) out->m = dec.m;
  if constexpr (Dec::kMinK) {
    out->dmin = dec.dmin;
    std::memcpy(out->m16, dec.m16, sizeof out->m16);
  }
}

template <class Dec>
struct QuantKernel {
  template <int MR>
  static HWY_INLINE void Run(const MatmulArgs& a, int64_t m0, int64_t n) {
    DotRowsQuant<Dec, MR>(a, m0, n);
  }
};

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

// Rows [m0, m1) x columns [n0, n1): each weight row is decoded once per group of 4 X rows.
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

// A quantized tile: weight rows decoded per group of 4 X rows when there are at most 4 (or
// the type is Q8_0), else once into the row cache.
template <class Dec>
HWY_NOINLINE void TileQuant(const MatmulArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  // Q8_0 decodes with one widening load, as cheap as reading the cache back.
  if (m1 - m0 <= 4 || std::is_same_v<Dec, DecQ8_0>) {
    return Tile<QuantKernel<Dec>>(a, m0, m1, n0, n1);
  }
  thread_local std::vector<CachedBlock<Dec>> cache;
  const int64_t nb = a.k / Dec::kBlock;
  cache.resize(static_cast<size_t>(nb));
  MatmulArgs c = a;
  c.w = reinterpret_cast<const uint8_t*>(cache.data());
  c.w_stride = 0;  // every n reads the one cached row
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* wrow = a.w + static_cast<size_t>(n) * a.w_stride;
    for (int64_t blk = 0; blk < nb; ++blk) {
      DecodeBlock<Dec>(wrow + blk * Dec::kBytes, &cache[static_cast<size_t>(blk)],
                       std::make_index_sequence<Dec::kBlock / kL>());
    }
    Tile<QuantKernel<DecCached<Dec>>>(c, m0, m1, n, n + 1);
  }
}

void MatmulTile(const MatmulArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  switch (a.type) {
    case GgmlType::F32:
      return Tile<FloatKernel<float>>(a, m0, m1, n0, n1);
    case GgmlType::F16:
      return Tile<FloatKernel<hwy::float16_t>>(a, m0, m1, n0, n1);
    case GgmlType::BF16:
      return Tile<FloatKernel<hwy::bfloat16_t>>(a, m0, m1, n0, n1);
    case GgmlType::Q8_0:
      return TileQuant<DecQ8_0>(a, m0, m1, n0, n1);
    case GgmlType::Q4_0:
      return TileQuant<DecLegacy<4, false>>(a, m0, m1, n0, n1);
    case GgmlType::Q4_1:
      return TileQuant<DecLegacy<4, true>>(a, m0, m1, n0, n1);
    case GgmlType::Q5_0:
      return TileQuant<DecLegacy<5, false>>(a, m0, m1, n0, n1);
    case GgmlType::Q5_1:
      return TileQuant<DecLegacy<5, true>>(a, m0, m1, n0, n1);
    case GgmlType::Q2_K:
      return TileQuant<DecQ2_K>(a, m0, m1, n0, n1);
    case GgmlType::Q3_K:
      return TileQuant<DecQ3_K>(a, m0, m1, n0, n1);
    case GgmlType::Q4_K:
      return TileQuant<DecQ45_K<4>>(a, m0, m1, n0, n1);
    case GgmlType::Q5_K:
      return TileQuant<DecQ45_K<5>>(a, m0, m1, n0, n1);
    case GgmlType::Q6_K:
      return TileQuant<DecQ6_K>(a, m0, m1, n0, n1);
    case GgmlType::Q8_K:
      break;  // activation format only; rejected before dispatch
  }
}

// Quantizes one X row to blocks of `block` (32 or 256): d = max|x|/127, q = round(x/d).
// Writes q[k], d[k/block], dsum[k/block] (d * sum q) and, for 256-blocks, bsums[k/16].
void QuantizeActRow(const float* x, int64_t k, int block, int16_t* q, float* d, float* dsum,
                    int16_t* bsums) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<int16_t, decltype(df)> dh;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t b0 = 0, bi = 0; b0 < k; b0 += block, ++bi) {
    auto vmax = hn::Zero(df);
    int64_t i = 0;
    for (; i + L <= block; i += L) vmax = hn::Max(vmax, hn::Abs(hn::LoadU(df, x + b0 + i)));
    float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
    for (; i < block; ++i) amax = std::max(amax, std::fabs(x[b0 + i]));
    const float scale = amax / 127.0f;
    const float inv = amax > 0 ? 127.0f / amax : 0.0f;
    const auto vinv = hn::Set(df, inv);
    i = 0;
    for (; i + L <= block; i += L) {
      const auto qi = hn::NearestInt(hn::Mul(hn::LoadU(df, x + b0 + i), vinv));
      hn::StoreU(hn::DemoteTo(dh, qi), dh, q + b0 + i);
    }
    for (; i < block; ++i) q[b0 + i] = static_cast<int16_t>(std::nearbyint(x[b0 + i] * inv));
    int sum = 0;
    for (int g = 0; g < block; g += 16) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += q[b0 + g + l];
      if (bsums) bsums[(b0 + g) / 16] = static_cast<int16_t>(s);
      sum += s;
    }
    d[bi] = scale;
    dsum[bi] = scale * static_cast<float>(sum);
  }
}

}  // namespace kdr::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // KDR_OPS_MATMUL_INL_H_
