// The attention variants of AttentionParams as small functors (FlashInfer's pattern): which
// keys a query sees (causal, sliding window), the logit transform (soft cap) and the extra
// softmax mass (sinks). The plan's KV ranges (plan.cc), the f32 kernels' masks and sinks
// (cpu_attention.cc) and the bf16 kernels (bf16_attention-inl.h) use them; the f32 kernels'
// soft cap stays vectorised in attention-inl.h (Highway's tanh), and rpa::reference keeps
// its own statement of the contract (it is the oracle).
#pragma once

#include <cmath>
#include <cstdint>

#include "rpa/rpa.h"

namespace rpa {

// The keys a query at absolute position `pos` of a sequence with kv_len positions sees:
// [lo, hi], empty when lo > hi.
struct VisibleRange {
  int32_t lo = 0;
  int32_t hi = -1;
  bool sees(int32_t key) const { return lo <= key && key <= hi; }
};

// Causal and sliding-window masking: a query sees keys t <= pos (causal) or all kv_len keys,
// and with a window w only t > pos - w.
struct KeyMask {
  bool causal = true;
  int32_t window = 0;
  int32_t kv_len = 0;

  static KeyMask of(const AttentionParams& p, int32_t kv_len) {
    return {p.causal, p.sliding_window, kv_len};
  }
  VisibleRange range(int32_t pos) const {
    return {window > 0 ? pos - window + 1 : 0, causal ? pos : kv_len - 1};
  }
};

// logits = cap * tanh(s / cap); cap 0 leaves them as they are. Scalar std::tanh, so every
// instantiation of a kernel (real or emulated) caps the same logits to the same bits.
struct SoftCap {
  float cap = 0.0f;
  bool active() const { return cap > 0.0f; }
  float operator()(float s) const { return cap * std::tanh(s / cap); }
};

// The sink logit of a query head joins the softmax denominator: out = O * c / (l * c +
// exp(sink - m2)) with m2 = max(m, sink), c = exp(m - m2). Returns the factor for O.
struct Sinks {
  const float* logits = nullptr;  // [Hq] or null
  float output_factor(int32_t head, float m, float l) const {
    float c = 1.0f;
    if (logits) {
      const float sink = logits[head];
      const float m2 = std::fmax(m, sink);
      c = m == -INFINITY ? 0.0f : std::exp(m - m2);
      l = l * c + std::exp(sink - m2);
    }
    return l > 0.0f ? c / l : 0.0f;
  }
};

}  // namespace rpa
