// Element-wise ops and RMS norm with Highway dynamic dispatch (this file is compiled once per
// SIMD target via foreach_target). Tails shorter than a vector are handled with the same
// vector code on a padded copy, so every element gets the same arithmetic.
#include "ops/activations.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "ops/norm.h"

// SSE4 and AVX2 (plus the scalar baseline) only: AVX-512 machines run the AVX2 code, which
// keeps compile time down and results identical across the x86 servers we run on.
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_AVX3 | HWY_AVX3_DL)
#endif
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/activations.cc"
// clang-format off
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"
// clang-format on

HWY_BEFORE_NAMESPACE();
namespace kdr::ops::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Applies fn(vector of x[, vector of b]) -> vector over n elements.
template <class Fn>
HWY_INLINE void Map2(const float* a, const float* b, float* y, int64_t n, Fn fn) {
  const DF df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    hn::StoreU(fn(hn::LoadU(df, a + i), b ? hn::LoadU(df, b + i) : hn::Zero(df)), df, y + i);
  }
  if (i < n) {
    HWY_ALIGN float ta[64] = {}, tb[64] = {};  // >= lanes of any target
    const size_t rest = static_cast<size_t>(n - i);
    std::memcpy(ta, a + i, rest * 4);
    if (b) std::memcpy(tb, b + i, rest * 4);
    const VF r = fn(hn::Load(df, ta), hn::Load(df, tb));
    hn::Store(r, df, ta);
    std::memcpy(y + i, ta, rest * 4);
  }
}

HWY_INLINE VF Silu(DF df, VF x) {
  const VF one = hn::Set(df, 1.0f);
  return hn::Div(x, hn::Add(one, hn::Exp(df, hn::Neg(x))));
}
HWY_INLINE VF GeluTanh(DF df, VF x) {
  const VF k0 = hn::Set(df, 0.7978845608028654f);  // sqrt(2/pi)
  const VF k1 = hn::Set(df, 0.044715f);
  const VF inner = hn::Mul(k0, hn::MulAdd(hn::Mul(k1, x), hn::Mul(x, x), x));
  const VF half_x = hn::Mul(hn::Set(df, 0.5f), x);
  return hn::MulAdd(half_x, hn::Tanh(df, inner), half_x);
}

// erf(x) = 1 - (a1 t + ... + a5 t^5) exp(-x^2), t = 1 / (1 + p |x|), sign restored.
HWY_INLINE VF GeluErf(DF df, VF x) {
  const VF z = hn::Mul(hn::Abs(x), hn::Set(df, 0.7071067811865476f));  // |x| / sqrt(2)
  const VF t =
      hn::Div(hn::Set(df, 1.0f), hn::MulAdd(hn::Set(df, 0.3275911f), z, hn::Set(df, 1.0f)));
  VF poly = hn::Set(df, 1.061405429f);
  poly = hn::MulAdd(poly, t, hn::Set(df, -1.453152027f));
  poly = hn::MulAdd(poly, t, hn::Set(df, 1.421413741f));
  poly = hn::MulAdd(poly, t, hn::Set(df, -0.284496736f));
  poly = hn::MulAdd(poly, t, hn::Set(df, 0.254829592f));
  poly = hn::Mul(poly, t);
  const VF erf_abs =
      hn::NegMulAdd(poly, hn::Exp(df, hn::Neg(hn::Mul(z, z))), hn::Set(df, 1.0f));  // 1 - p e
  const VF erf = hn::CopySign(erf_abs, x);
  const VF half_x = hn::Mul(hn::Set(df, 0.5f), x);
  return hn::MulAdd(half_x, erf, half_x);
}

void GeluErfRow(const float* x, float* y, int64_t n) {
  Map2(x, nullptr, y, n, [](VF v, VF) { return GeluErf(DF(), v); });
}

void SiluRow(const float* x, float* y, int64_t n) {
  Map2(x, nullptr, y, n, [](VF v, VF) { return Silu(DF(), v); });
}
void GeluTanhRow(const float* x, float* y, int64_t n) {
  Map2(x, nullptr, y, n, [](VF v, VF) { return GeluTanh(DF(), v); });
}
void SwigluRow(const float* gate, const float* up, float* y, int64_t n) {
  Map2(gate, up, y, n, [](VF g, VF u) { return hn::Mul(Silu(DF(), g), u); });
}
void GegluRow(const float* gate, const float* up, float* y, int64_t n) {
  Map2(gate, up, y, n, [](VF g, VF u) { return hn::Mul(GeluTanh(DF(), g), u); });
}
void AddRow(const float* a, const float* b, float* y, int64_t n) {
  Map2(a, b, y, n, [](VF u, VF v) { return hn::Add(u, v); });
}
void ScaleRow(const float* x, float s, float* y, int64_t n) {
  Map2(x, nullptr, y, n, [s](VF v, VF) { return hn::Mul(v, hn::Set(DF(), s)); });
}

// Sum over a row with one vector accumulator; the tail is added in scalar, in order.
template <class Fn>
HWY_INLINE float SumRow(const float* x, int64_t n, Fn fn) {
  const DF df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));
  VF acc = hn::Zero(df);
  int64_t i = 0;
  for (; i + L <= n; i += L) acc = hn::Add(acc, fn(hn::LoadU(df, x + i)));
  float s = hn::GetLane(hn::SumOfLanes(df, acc));
  for (; i < n; ++i) s += hn::GetLane(fn(hn::Set(df, x[i])));
  return s;
}

void SoftmaxRow(float* x, int64_t n) {
  const DF df;
  const int64_t L = static_cast<int64_t>(hn::Lanes(df));
  VF vmax = hn::Set(df, -std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + L <= n; i += L) vmax = hn::Max(vmax, hn::LoadU(df, x + i));
  float mx = hn::GetLane(hn::MaxOfLanes(df, vmax));
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  if (mx == -std::numeric_limits<float>::infinity()) {
    std::fill(x, x + n, 0.0f);
    return;
  }
  const VF vm = hn::Set(df, mx);
  Map2(x, nullptr, x, n, [vm](VF v, VF) { return hn::Exp(DF(), hn::Sub(v, vm)); });
  const float sum = SumRow(x, n, [](VF v) { return v; });
  ScaleRow(x, 1.0f / sum, x, n);
}

void LayerNormRow(const float* x, const float* w, const float* b, float eps, float* y, int64_t n) {
  const float mean = SumRow(x, n, [](VF v) { return v; }) / static_cast<float>(n);
  const VF vm = hn::Set(DF(), mean);
  const float var = SumRow(x, n, [vm](VF v) { return hn::Mul(hn::Sub(v, vm), hn::Sub(v, vm)); }) /
                    static_cast<float>(n);
  const VF inv = hn::Set(DF(), 1.0f / std::sqrt(var + eps));
  Map2(x, w, y, n, [vm, inv](VF v, VF g) { return hn::Mul(hn::Mul(hn::Sub(v, vm), inv), g); });
  AddRow(y, b, y, n);
}

void RmsNormRow(const float* x, const float* w, float eps, float* y, int64_t n) {
  const float ss = SumRow(x, n, [](VF v) { return hn::Mul(v, v); });
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  if (w) {
    Map2(x, w, y, n, [inv](VF v, VF g) { return hn::Mul(hn::Mul(v, hn::Set(DF(), inv)), g); });
  } else {
    ScaleRow(x, inv, y, n);
  }
}

}  // namespace kdr::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kdr::ops {
HWY_EXPORT(SiluRow);
HWY_EXPORT(GeluTanhRow);
HWY_EXPORT(GeluErfRow);
HWY_EXPORT(LayerNormRow);
HWY_EXPORT(SwigluRow);
HWY_EXPORT(GegluRow);
HWY_EXPORT(AddRow);
HWY_EXPORT(ScaleRow);
HWY_EXPORT(SoftmaxRow);
HWY_EXPORT(RmsNormRow);

void silu(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(SiluRow)(x, y, n); }
void gelu_tanh(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(GeluTanhRow)(x, y, n); }
void gelu_erf(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(GeluErfRow)(x, y, n); }
void layer_norm(const float* x, const float* w, const float* b, float eps, float* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(LayerNormRow)(x, w, b, eps, y, n);
}
void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  HWY_DYNAMIC_DISPATCH(SwigluRow)(gate, up, out, n);
}
void geglu_tanh(const float* gate, const float* up, float* out, int64_t n) {
  HWY_DYNAMIC_DISPATCH(GegluRow)(gate, up, out, n);
}
void add(const float* a, const float* b, float* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(AddRow)(a, b, y, n);
}
void scale(const float* x, float s, float* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(ScaleRow)(x, s, y, n);
}
void softmax(float* x, int64_t n) { HWY_DYNAMIC_DISPATCH(SoftmaxRow)(x, n); }
void rms_norm(const float* x, const float* w, float eps, float* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(RmsNormRow)(x, w, eps, y, n);
}
void rms_norm_rows(const float* x, const float* w, float eps, float* y, int64_t rows, int64_t n,
                   int64_t stride) {
  for (int64_t r = 0; r < rows; ++r) rms_norm(x + r * stride, w, eps, y + r * stride, n);
}
}  // namespace kdr::ops
#endif  // HWY_ONCE
