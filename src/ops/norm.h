// RMS normalization (Highway SIMD). Plain form y = w * x / rms(x): GGUF converters already
// store Gemma's (1 + w) weights with the 1 added, so no variant is needed here.
#pragma once

#include <cstdint>

namespace kdr::ops {

// y[i] = w[i] * x[i] / sqrt(mean(x^2) + eps) for one row of n; w may be null (no weight).
// y may alias x.
void rms_norm(const float* x, const float* w, float eps, float* y, int64_t n);

// The same for `rows` rows, `stride` floats apart (x and y share the stride).
void rms_norm_rows(const float* x, const float* w, float eps, float* y, int64_t rows, int64_t n,
                   int64_t stride);

// LayerNorm (BERT): y[i] = (x[i] - mean) / sqrt(var + eps) * w[i] + b[i] over one row of n,
// var the biased variance. y may alias x.
void layer_norm(const float* x, const float* w, const float* b, float eps, float* y, int64_t n);

}  // namespace kdr::ops
