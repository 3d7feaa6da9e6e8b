// Element-wise f32 ops of the transformer block (Highway SIMD, dynamic dispatch). All work on
// one contiguous row; results depend only on that row, so they are batch invariant.
#pragma once

#include <cstdint>

namespace kdr::ops {

// y = x / (1 + exp(-x)).
void silu(const float* x, float* y, int64_t n);
// GELU, tanh approximation (PyTorch gelu(approximate="tanh"), Gemma's gelu_pytorch_tanh):
// y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
void gelu_tanh(const float* x, float* y, int64_t n);
// GELU, erf form (PyTorch gelu(), BERT's "gelu"): y = 0.5 x (1 + erf(x / sqrt(2))), with erf
// to within 2e-7 absolute (Abramowitz and Stegun 7.1.26).
void gelu_erf(const float* x, float* y, int64_t n);
// Gated MLP activations, out[i] = act(gate[i]) * up[i] (out may alias gate or up).
void swiglu(const float* gate, const float* up, float* out, int64_t n);
void geglu_tanh(const float* gate, const float* up, float* out, int64_t n);
// In place: x = exp(x - max) / sum. A row of all -inf becomes all zeros.
void softmax(float* x, int64_t n);
// y = a + b; y = x * s (y may alias the inputs).
void add(const float* a, const float* b, float* y, int64_t n);
void scale(const float* x, float s, float* y, int64_t n);

}  // namespace kdr::ops
